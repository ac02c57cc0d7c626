"""The report's "Audit" section: per audited stage, precision with its Wilson 95 % interval, the
estimated wrong samples in the build, the wrong-reasons, reviewer agreement and thumbnails of
the samples judged wrong. Every value from OUT is escaped (answer files may be crafted)."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

MAX_THUMBS = 12  # per stage and status: the page stays small on a big audit
STYLE = (
    "<style>#audit .audit-wrong{gap:6px}#audit figure{margin:0;font-size:11px;color:#555}"
    "#audit figure img{height:110px;display:block}#audit .question{color:#555;margin:2px 0}</style>"
)


def _e(value: Any) -> str:
    return html.escape(str(value))


def _kappa(k: float | None) -> str:
    return "undefined (one label only)" if k is None else f"{k:.3f}"


def _pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.1f} %"


def summary_line(stage: str, s: dict[str, Any]) -> str:
    """One line per audited stage for ``hoiforge stats``."""
    parts = []
    for status, what in (("kept", "precision"), ("dropped", "right drops")):
        f = s.get(status)
        if f and f["reviewed"]:
            lo, hi = f["wilson95"]
            parts.append(
                f"{what} {_pct(f['precision'])} [{_pct(lo)}, {_pct(hi)}] of {f['reviewed']} {status} "
                f"(est. {f['estimated_wrong']} wrong of {f['population']})"
            )
    return f"audit {stage}: " + ("; ".join(parts) or "nothing judged yet")


def render(audit: dict[str, Any], out: str | Path) -> str:
    if not audit:
        return (
            '<section id="audit"><h2>Audit: how many annotations are right</h2><p class="absent">No audit answers under '
            "OUT/audit: run <code>hoiforge audit OUT --stage STAGE</code> and mark a sample.</p></section>"
        )
    viewer = _viewer(out)
    body = [
        "<p>Precision = correct / judged, over a seeded random sample reviewed by a person (skips left out); the interval is "
        "Wilson's 95 % score interval; the estimated number of wrong samples is the build's count times the wrong fraction. "
        "For drops (<code>--dropped</code>) the same figures read as: how many of the stage's drops were right.</p>"
    ]
    for stage, s in audit.items():
        body.append(f'<h3 id="audit-{_e(stage)}">{_e(stage)}</h3><p class="question">{_e(s.get("question", ""))}</p>')
        rows = []
        for status in ("kept", "dropped"):
            f = s.get(status)
            if not f:
                continue
            ci = f"{_pct(f['wilson95'][0])} – {_pct(f['wilson95'][1])}" if f["wilson95"] else ""
            est = f"{f['estimated_wrong']} ({f['estimated_wrong95'][0]} – {f['estimated_wrong95'][1]})" if f["wilson95"] else ""
            prec = "" if f["precision"] is None else f"{f['precision']:.4f}"
            rows.append(
                f'<tr data-stage="{_e(stage)}" data-status="{status}"><td>{status}</td><td class="reviewed">{f["reviewed"]}</td>'
                f"<td>{f['skipped']}</td><td>{f['correct']}</td><td>{f['wrong']}</td>"
                f'<td class="precision" data-value="{prec}">{_pct(f["precision"])}</td><td>{ci}</td>'
                f"<td>{f['population']}</td><td>{_e(est)}</td><td>{_e(', '.join(f['reviewers']))}</td></tr>"
            )
        head = "".join(
            f"<th>{h}</th>"
            for h in (
                "samples",
                "judged",
                "skipped",
                "correct",
                "wrong",
                "precision",
                "Wilson 95 %",
                "in build",
                "est. wrong in build (95 %)",
                "reviewers",
            )
        )
        body.append(f'<table class="audit"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>')
        for status in ("kept", "dropped"):
            f = s.get(status)
            if not f:
                continue
            if f["reasons"]:
                reasons = "".join(f"<tr><td>{_e(r)}</td><td>{n}</td></tr>" for r, n in f["reasons"].items())
                body.append(
                    f'<table class="audit-reasons"><thead><tr><th>{status}: wrong because</th><th>marks</th></tr></thead><tbody>{reasons}</tbody></table>'
                )
            if f["agreement"]:
                pairs = "".join(
                    f"<tr><td>{_e(' / '.join(p['reviewers']))}</td><td>{p['both_answered']}</td><td>{_pct(p['agreement'])}</td>"
                    f'<td class="kappa">{_kappa(p["kappa"])}</td></tr>'
                    for p in f["agreement"]
                )
                body.append(
                    f'<table class="audit-kappa"><thead><tr><th>{status}: reviewers</th><th>both answered</th><th>agreement</th>'
                    f"<th>Cohen's kappa</th></tr></thead><tbody>{pairs}</tbody></table>"
                )
            thumbs = [_thumb(viewer, i, status) for i in f["wrong_indices"][:MAX_THUMBS]]
            if thumbs:
                more = len(f["wrong_indices"]) - MAX_THUMBS
                body.append(f'<div class="row audit-wrong">{"".join(thumbs)}</div>' + (f"<p>(+{more} more)</p>" if more > 0 else ""))
        ignored = s.get("ignored", {})
        if any(ignored.values()):
            body.append(
                f'<p class="absent">Ignored: {ignored.get("lines", 0)} malformed answer line(s), {ignored.get("files", 0)} unreadable '
                f"file(s), {ignored.get('stale', 0)} answer(s) for samples no longer in this build.</p>"
            )
    return f'<section id="audit"><h2>Audit: how many annotations are right</h2>{STYLE}{"".join(body)}</section>'


def _viewer(out: str | Path):
    try:
        from hoiforge.report.viewer import Viewer

        return Viewer(out)
    except Exception:  # noqa: BLE001 - no thumbnails is better than no report
        return None


def _thumb(viewer, index: int, status: str) -> str:
    label = f"#{index} ({status})"
    if viewer is not None:
        try:
            data, _ = viewer.thumb(index)
            src = "data:image/jpeg;base64," + base64.b64encode(data).decode()
            return f'<figure><img alt="" src="{src}"><figcaption>{_e(label)}</figcaption></figure>'
        except Exception:  # noqa: BLE001 - a dropped row's source may be gone: say so instead
            pass
    return f"<figure><figcaption>{_e(label)}: no image readable</figcaption></figure>"
