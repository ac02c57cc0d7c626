"""The viewer's audit mode: one review session (stage, seed, reviewer) behind ``/audit``.

Routes (the viewer's handler hands every ``/api/audit`` request here):

    GET  /api/audit                      the sample, this reviewer's answers so far, the stage's
                                         question and wrong-reasons, and the live figures
    POST /api/audit/answer               {"index": i, "status": "kept"|"dropped", "verdict": ..., "reason": ...}
    GET  /api/audit/layer/<index>/<name> shoemask | wear as a transparent colour PNG

A mark is accepted only for an item of the drawn sample; the only file written is the answer
file under OUT/audit (audit.AnswerStore). POSTs must be JSON from the page's own origin: a web
page elsewhere can neither send a JSON body to us without a CORS preflight we never grant, nor
forge our Origin.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from pathlib import Path
from typing import Any

from hoiforge.report.audit import STAGES, AnswerStore, AuditError, Rows, draw_sample, latest, read_answers, stage_summary

LAYERS = {"shoemask": "shoemask.png", "wear": "wear.png"}
MAX_BODY = 4096


class AuditSession:
    def __init__(
        self,
        out: str | Path,
        stage: str,
        n: int = 100,
        seed: int = 0,
        split: str | None = None,
        dropped: bool = False,
        reviewer: str = "reviewer",
    ):
        self.out = Path(out)
        self.sample = draw_sample(out, stage, n=n, seed=seed, split=split, dropped=dropped)
        self.store = AnswerStore(out, stage, seed, reviewer)
        self.stage, self.spec = stage, STAGES[stage]
        self.items = {(it["index"], it["status"]): it for it in self.sample["items"]}
        self.rows = Rows(out, stage)  # the manifest does not change during a review: read it once

    def document(self) -> dict[str, Any]:
        answers, _ = read_answers(self.out, self.stage)
        mine = {
            f"{i}:{s}": {"verdict": a["verdict"], "reason": a["reason"]}
            for (i, s, r), a in latest(answers).items()
            if r == self.store.reviewer and (i, s) in self.items
        }
        return {
            **{k: v for k, v in self.sample.items() if k != "items"},
            "items": [{k: it[k] for k in ("index", "status", "stratum", "split")} for it in self.sample["items"]],
            "reviewer": self.store.reviewer,
            "question": self.spec.question,
            "drop_question": self.spec.drop_question,
            "layers": list(self.spec.layers),
            "reasons": list(self.spec.reasons),
            "answers": mine,
            "answers_file": f"audit/{self.store.path.name}",
            "summary": stage_summary(self.out, self.stage, self.rows),
        }

    def answer(self, body: bytes) -> dict[str, Any]:
        from hoiforge.report.http_error import HttpError

        try:
            doc = json.loads(body) if len(body) <= MAX_BODY else None
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            raise HttpError(HTTPStatus.BAD_REQUEST, "the answer must be a small JSON object")
        index, status = doc.get("index"), doc.get("status")
        item = self.items.get((index, status)) if isinstance(index, int) and isinstance(status, str) else None
        if item is None:
            raise HttpError(HTTPStatus.BAD_REQUEST, "not a sample of this audit")
        reason = doc.get("reason") or None
        try:
            record = self.store.mark(item, str(doc.get("verdict")), reason if isinstance(reason, str) else None)
        except AuditError as e:
            raise HttpError(HTTPStatus.BAD_REQUEST, str(e)) from None
        return {"saved": record, "summary": stage_summary(self.out, self.stage, self.rows)}


def route(viewer, method: str, path: str, body: bytes | None) -> tuple[bytes, str]:
    """Answer one /api/audit request of ``viewer`` (a report.viewer.Viewer with an audit session)."""
    from hoiforge.report.http_error import HttpError
    from hoiforge.report.overlays import overlay_png

    session: AuditSession | None = getattr(viewer, "audit", None)
    if session is None:
        raise HttpError(HTTPStatus.NOT_FOUND, "not in audit mode: start it with `hoiforge audit OUT`")
    if method == "GET" and path == "/api/audit":
        return json.dumps(session.document(), default=str).encode(), "application/json"
    if method == "POST" and path == "/api/audit/answer":
        return json.dumps(session.answer(body or b""), default=str).encode(), "application/json"
    parts = path.split("/")
    if method == "GET" and len(parts) == 6 and parts[3] == "layer" and parts[4].isdigit() and parts[5] in LAYERS:
        data, _ = viewer.member(int(parts[4]), LAYERS[parts[5]])
        try:
            return overlay_png("mask", data, viewer.limits["max_pixels"]), "image/png"
        except ValueError as e:
            raise HttpError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, str(e)) from None
    raise HttpError(HTTPStatus.NOT_FOUND, f"{path}: no such page")
