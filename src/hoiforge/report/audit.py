"""``hoiforge audit``: how many annotations are right, from a seeded sample a person reviews.

Three parts, none of them HTTP (the viewer serves them, the report draws them):

- **Sampling.** A seeded random sample of the kept samples (and, with ``--dropped``, of the
  samples the stage dropped), drawn again identically on every start, so a review resumes.
  Where a stage has a count metric (products, persons, shoes, removed text) the draw is
  stratified by it with proportional allocation (ours: every count level appears in about its
  share, and the plain proportion stays an unbiased estimate: no weights needed).
- **Answers.** One JSON line per mark appended to ``OUT/audit/<stage>-<seed>.jsonl`` (flushed and
  fsynced before the page is told it is saved); never inside shards. Read back as untrusted:
  only files named so, only regular files, bounded size, every field checked; anything else is
  counted as ignored, never trusted.
- **Statistics.** Per stage: samples reviewed, precision with a Wilson 95 % interval, the
  estimated number of wrong samples in the whole build, reasons' counts, and Cohen's kappa per
  pair of reviewers over the samples both answered.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from hoiforge.datasets.layout import OutLayout
from hoiforge.errors import HoiforgeError

Z95 = 1.959963984540054  # two-sided 95 % normal quantile
VERDICTS = ("correct", "wrong", "skip")
REVIEWER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,39}$")
MAX_ANSWER_FILE = 64 * 1024 * 1024  # a received OUT's answer file is read only up to this size
MAX_LINE = 4096
MAX_STRATA = 6  # count levels 0..4 and "5 or more": more levels would leave strata of one sample


class AuditError(HoiforgeError):
    """An audit cannot be started as asked (no such stage in this build, nothing to sample, bad reviewer name)."""


@dataclass(frozen=True)
class StageAudit:
    """What a reviewer judges for one stage: the question, the overlays shown, the wrong-reasons."""

    question: str
    drop_question: str
    layers: tuple[str, ...]  # what the page draws: mask, pose, edge, persons, products, text, source, caption, shoes, wear
    reasons: tuple[str, ...]
    stratum: str | None = None  # manifest column counted per sample (None: a plain random sample)
    recipe_stages: tuple[str, ...] = field(default=())  # the build's stage names this audit needs (default: its own)


STAGES: dict[str, StageAudit] = {
    "products": StageAudit(
        "Is every product mask on a product, is every product in the image masked, and is each label right?",
        "Was the image rightly dropped for having no product?",
        ("mask", "products"),
        ("mask on a non-product", "product missed", "mask leaks / cuts the object", "wrong label", "duplicate mask"),
        "m.products",
    ),
    "person": StageAudit(
        "Is every person boxed once, and only persons?",
        "Was the image rightly dropped for its person count?",
        ("persons",),
        ("person missed", "box on a non-person", "one person boxed twice", "box off the person", "wrong count"),
        "m.persons",
    ),
    "pose": StageAudit(
        "Do the skeletons follow the bodies (joints on the right places, left/right not swapped)?",
        "Was the image rightly dropped at pose?",
        ("pose", "persons"),
        ("joints off the body", "left/right swapped", "person without skeleton", "skeleton on no person", "hands / face wrong"),
        "m.persons",
    ),
    "cleanup": StageAudit(
        "Is the overlay text (watermarks, banners) removed, text on products and clothes kept, and the fill clean?",
        "Was the image rightly dropped for too much text?",
        ("text", "source"),
        ("overlay text left", "product / clothing text removed", "visible inpainting smear", "text missed by OCR", "product lost"),
        "m.text_removed",
    ),
    "caption": StageAudit(
        "Is everything the caption says true of the image, and does it name the persons and products?",
        "Was the image rightly dropped at caption?",
        ("caption",),
        ("says something false", "misses the product", "misses a person", "wrong count", "unreadable / truncated"),
    ),
    "shoes": StageAudit(
        "Is every shoe boxed and masked, only shoes, with the right side (left/right) and person?",
        "Was the image rightly dropped at shoes?",
        ("shoes",),
        ("not a shoe", "shoe missed", "left/right wrong", "mask off the shoe", "pair as one shoe"),
        "m.shoes",
    ),
    "wear_labels": StageAudit(
        "Do the wearable-area labels cover the right parts (wearable / not wearable / background)?",
        "Was the image rightly dropped at wear_labels?",
        ("wear",),
        ("wearable area missed", "background labelled wearable", "body labelled as shoe", "labels shifted"),
    ),
}


def answers_path(out: str | Path, stage: str, seed: int) -> Path:
    return OutLayout(out).root / "audit" / f"{stage}-{int(seed)}.jsonl"


def check_reviewer(name: str) -> str:
    if not REVIEWER.match(name or ""):
        raise AuditError(f"reviewer name {name!r} must be 1-40 letters, digits, '.', '_', '@' or '-'")
    return name


def default_reviewer() -> str:
    import getpass

    try:
        name = re.sub(r"[^A-Za-z0-9._@-]", "", getpass.getuser())[:40]
    except Exception:  # noqa: BLE001 - no login name (containers): fall back
        name = ""
    return name if REVIEWER.match(name) else "reviewer"


# ---------------------------------------------------------------------------------- sampling


def _stage_names(out: Path) -> list[str] | None:
    try:
        recipe = json.loads((OutLayout(out).recipe).read_text())
        return [str(s.get("stage")) for s in recipe.get("stages", []) if isinstance(s, dict)]
    except (OSError, ValueError, AttributeError):
        return None


def draw_sample(
    out: str | Path, stage: str, n: int = 100, seed: int = 0, split: str | None = None, dropped: bool = False
) -> dict[str, Any]:
    """The audit sample: ``items`` (index, id, status, stratum) in review order, and how it was drawn.

    The same arguments on the same manifest give the same items, so a review resumes where it
    stopped. Kept and dropped draws use separate generators: adding ``--dropped`` later leaves the
    kept sample as it was.
    """
    if stage not in STAGES:
        raise AuditError(f"unknown audit stage {stage!r}: one of {', '.join(STAGES)}")
    if n < 1:
        raise AuditError("--n must be at least 1")
    spec = STAGES[stage]
    layout = OutLayout(out)
    if not layout.manifest.exists():
        raise AuditError(f"{out}: no manifest.parquet (not a finished build)")
    stages = _stage_names(Path(out))
    needed = spec.recipe_stages or (stage,)
    if stages is not None and not all(s in stages for s in needed):
        raise AuditError(f"{out} was built without the {stage} stage (its stages: {', '.join(stages)}): nothing of it to audit")
    names = pq.read_schema(layout.manifest).names
    cols = [c for c in ("index", "id", "status", "stage", "split", spec.stratum) if c and c in names]
    table = pq.read_table(layout.manifest, columns=cols)
    status = table.column("status").to_pylist()
    index = table.column("index").to_pylist()
    ids = table.column("id").to_pylist() if "id" in cols else [None] * len(index)
    splits = table.column("split").to_pylist() if "split" in cols else [None] * len(index)
    stages_col = table.column("stage").to_pylist() if "stage" in cols else [None] * len(index)
    counts = _strata(table, spec.stratum)

    def pick(rows: list[int], salt: int) -> list[dict[str, Any]]:
        rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, salt])
        chosen = _stratified(rows, [counts[r] for r in rows], n, rng)
        return [{"index": int(index[r]), "id": ids[r], "status": status[r], "stratum": counts[r], "split": splits[r]} for r in chosen]

    kept_rows = [r for r in range(len(index)) if status[r] == "kept" and (not split or splits[r] == split)]
    items = pick(kept_rows, 1)
    population = {"kept": len(kept_rows)}
    if dropped:
        # Drops of this stage have no split (they never reached the writer): --split does not narrow them.
        drop_rows = [r for r in range(len(index)) if status[r] == "dropped" and stages_col[r] == stage]
        drops = pick(drop_rows, 2)
        population["dropped"] = len(drop_rows)
        items = _interleave(items, drops)
    if not items:
        where = f" in split {split!r}" if split else ""
        raise AuditError(f"{out}: no kept{' or dropped' if dropped else ''} samples{where} to audit")
    stratified = spec.stratum in cols if spec.stratum else False
    return {
        "stage": stage,
        "seed": int(seed),
        "n": n,
        "split": split or "",
        "dropped": dropped,
        "items": items,
        "population": population,
        "stratified_by": spec.stratum.removeprefix("m.") if stratified else None,
        "how": _how(spec, stratified),
    }


def _how(spec: StageAudit, stratified: bool) -> str:
    if not stratified:
        return "A plain seeded random sample (this stage has no count to stratify by)."
    name = spec.stratum.removeprefix("m.")
    return (
        f"A seeded random sample stratified by {name} per image (0, 1, ..., {MAX_STRATA - 1} or more), each level in "
        "proportion to its share of the build, so the plain proportion of correct answers estimates the build's."
    )


def _strata(table, column: str | None) -> list[int | None]:
    if not column or column not in table.column_names:
        return [None] * table.num_rows
    values = pc.cast(table.column(column), "float64").to_pylist()
    return [None if v is None or not math.isfinite(v) else int(min(max(v, 0), MAX_STRATA - 1)) for v in values]


def _stratified(rows: list[int], strata: list[int | None], n: int, rng: np.random.Generator) -> list[int]:
    """n rows without replacement, each stratum allotted by largest remainder of its share (ours:
    proportional allocation is self-weighting), then shuffled into one review order."""
    if len(rows) <= n:
        chosen = list(rows)
    else:
        groups: dict[Any, list[int]] = {}
        for r, s in zip(rows, strata, strict=True):
            groups.setdefault(-1 if s is None else s, []).append(r)
        keys = sorted(groups)
        quotas = [n * len(groups[k]) / len(rows) for k in keys]
        alloc = [int(q) for q in quotas]
        for i in sorted(range(len(keys)), key=lambda i: (-(quotas[i] - alloc[i]), keys[i]))[: n - sum(alloc)]:
            alloc[i] += 1
        chosen = []
        for k, a in zip(keys, alloc, strict=True):
            g = groups[k]
            chosen += [g[i] for i in rng.choice(len(g), size=a, replace=False)]
    return [chosen[i] for i in rng.permutation(len(chosen))]


def _interleave(a: list, b: list) -> list:
    out = []
    for i in range(max(len(a), len(b))):
        out += a[i : i + 1] + b[i : i + 1]
    return out


# ---------------------------------------------------------------------------------- answers


class AnswerStore:
    """Appends one reviewer's marks to ``OUT/audit/<stage>-<seed>.jsonl`` (thread-safe, durable per mark)."""

    def __init__(self, out: str | Path, stage: str, seed: int, reviewer: str):
        self.path = answers_path(out, stage, seed)
        self.stage, self.seed, self.reviewer = stage, int(seed), check_reviewer(reviewer)
        self._lock = threading.Lock()

    def mark(self, item: dict[str, Any], verdict: str, reason: str | None = None) -> dict[str, Any]:
        if verdict not in VERDICTS:
            raise AuditError(f"verdict must be one of {', '.join(VERDICTS)}")
        if reason is not None and (verdict != "wrong" or reason not in STAGES[self.stage].reasons):
            raise AuditError(f"a reason is given only with 'wrong', and must be one of {list(STAGES[self.stage].reasons)}")
        record = {
            "v": 1,
            "stage": self.stage,
            "seed": self.seed,
            "index": int(item["index"]),
            "id": item.get("id"),
            "status": item["status"],
            "verdict": verdict,
            "reason": reason,
            "reviewer": self.reviewer,
            "time": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        line = (json.dumps(record, ensure_ascii=True) + "\n").encode()
        with self._lock:
            if self.path.parent.is_symlink():
                raise AuditError(f"{self.path.parent} is a symbolic link: answers are written only under OUT/audit itself")
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.path.is_symlink():
                raise AuditError(f"{self.path} is a symbolic link: answers are written only to a plain file under OUT/audit")
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)
        return record


def _valid_record(doc: Any, stage: str) -> dict[str, Any] | None:
    """The record if every field is what AnswerStore writes, else None (an answer file may be crafted)."""
    if not isinstance(doc, dict) or doc.get("v") != 1 or doc.get("stage") != stage:
        return None
    index, verdict, reason, reviewer = doc.get("index"), doc.get("verdict"), doc.get("reason"), doc.get("reviewer")
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        return None
    if verdict not in VERDICTS or doc.get("status") not in ("kept", "dropped"):
        return None
    if reason is not None and (verdict != "wrong" or reason not in STAGES[stage].reasons):
        return None
    if not isinstance(reviewer, str) or not REVIEWER.match(reviewer):
        return None
    t = doc.get("time")
    if not isinstance(t, str) or len(t) > 40:
        return None
    try:
        datetime.fromisoformat(t)
    except ValueError:
        return None
    return {k: doc[k] for k in ("index", "status", "verdict", "reason", "reviewer", "time")}


def read_answers(out: str | Path, stage: str) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Every valid answer of ``stage`` under OUT/audit (all seeds), in file order, and what was ignored.

    Only ``<stage>-<seed>.jsonl`` regular files directly in OUT/audit are opened (no links, nothing
    outside OUT), each up to MAX_ANSWER_FILE bytes; a line that is not a valid record is skipped
    and counted.
    """
    folder = OutLayout(out).root / "audit"
    ignored = {"lines": 0, "files": 0}
    answers: list[dict[str, Any]] = []
    if not folder.is_dir() or folder.is_symlink():
        return answers, ignored
    pattern = re.compile(rf"^{re.escape(stage)}-(\d{{1,12}})\.jsonl$")
    for path in sorted(folder.iterdir()):
        if not pattern.match(path.name):
            continue
        if path.is_symlink() or not path.is_file() or path.stat().st_size > MAX_ANSWER_FILE:
            ignored["files"] += 1
            continue
        with open(path, "rb") as f:
            data = f.read(MAX_ANSWER_FILE + 1)
        for raw in data.split(b"\n"):
            if not raw.strip():
                continue
            try:
                doc = json.loads(raw) if len(raw) <= MAX_LINE else None
            except ValueError:
                doc = None
            record = _valid_record(doc, stage)
            if record is None:
                ignored["lines"] += 1
            else:
                answers.append(record)
    return answers, ignored


def latest(answers: list[dict[str, Any]]) -> dict[tuple[int, str, str], dict[str, Any]]:
    """The last mark of each (index, status, reviewer): a reviewer may change their mind."""
    out: dict[tuple[int, str, str], dict[str, Any]] = {}
    for a in answers:
        out[(a["index"], a["status"], a["reviewer"])] = a
    return out


# ---------------------------------------------------------------------------------- statistics


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (Wilson 1927); (0, 1) when n is 0."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def cohen_kappa(a: list[str], b: list[str]) -> float | None:
    """Cohen's kappa of two raters' labels of the same items; None where chance agreement is 1
    (both gave one and the same label to everything: kappa is undefined)."""
    if len(a) != len(b):
        raise ValueError("both raters must label the same items")
    if not a:
        return None
    n = len(a)
    labels = sorted(set(a) | set(b))
    po = sum(x == y for x, y in zip(a, b, strict=True)) / n
    pe = sum((a.count(k) / n) * (b.count(k) / n) for k in labels)
    if pe >= 1.0:
        return None
    return (po - pe) / (1 - pe)


def _consensus(verdicts: list[str]) -> str:
    """One verdict per sample from its reviewers: the majority; a tie counts as wrong (ours:
    a sample two reviewers disagree on is not one to count as right)."""
    c, w = verdicts.count("correct"), verdicts.count("wrong")
    return "correct" if c > w else "wrong"


def stage_summary(out: str | Path, stage: str, rows: Rows | None = None) -> dict[str, Any]:
    """The audit figures of one stage. ``rows``: the manifest's kept / dropped-at-stage rows (read
    when not given). Answers for an index that is no longer that status in the manifest are left
    out and counted as stale (the build was redone since)."""
    answers, ignored = read_answers(out, stage)
    rows = rows or Rows(out, stage)
    current, population = rows, rows.population
    marks = latest(a for a in answers if (a["index"], a["status"]) in current)
    stale = sum(1 for a in answers if (a["index"], a["status"]) not in current)
    result: dict[str, Any] = {"stage": stage, "question": STAGES[stage].question, "ignored": {**ignored, "stale": stale}}
    for status in ("kept", "dropped"):
        mine = {k: v for k, v in marks.items() if k[1] == status}
        if not mine:
            continue
        per_sample: dict[int, list[dict[str, Any]]] = {}
        for (index, _, _), a in mine.items():
            per_sample.setdefault(index, []).append(a)
        skipped = sum(1 for v in per_sample.values() if all(a["verdict"] == "skip" for a in v))
        judged = {
            i: _consensus([a["verdict"] for a in v if a["verdict"] != "skip"])
            for i, v in per_sample.items()
            if any(a["verdict"] != "skip" for a in v)
        }
        n = len(judged)
        correct = sum(v == "correct" for v in judged.values())
        lo, hi = wilson(correct, n)
        reasons: dict[str, int] = {}
        wrong = sorted(i for i, v in judged.items() if v == "wrong")
        for i in wrong:
            for a in per_sample[i]:
                if a["verdict"] == "wrong":
                    key = a["reason"] or "(no reason given)"
                    reasons[key] = reasons.get(key, 0) + 1
        size = int(population.get(status, 0))
        figures = {
            "reviewed": n,
            "skipped": skipped,
            "correct": correct,
            "wrong": n - correct,
            "precision": correct / n if n else None,
            "wilson95": [lo, hi] if n else None,
            "population": size,
            # Wrong in the build: the population times the wrong fraction, its interval from Wilson's.
            "estimated_wrong": round(size * (1 - correct / n)) if n else None,
            "estimated_wrong95": [math.floor(size * (1 - hi)), math.ceil(size * (1 - lo))] if n else None,
            "reasons": dict(sorted(reasons.items(), key=lambda p: -p[1])),
            "wrong_indices": wrong,
            "reviewers": sorted({k[2] for k in mine}),
            "agreement": agreement(mine),
        }
        result[status] = figures
    return result


def agreement(marks: dict[tuple[int, str, str], dict[str, Any]]) -> list[dict[str, Any]]:
    """Cohen's kappa for each pair of reviewers, over the samples both judged (skips left out)."""
    by_reviewer: dict[str, dict[int, str]] = {}
    for (index, _, reviewer), a in marks.items():
        if a["verdict"] != "skip":
            by_reviewer.setdefault(reviewer, {})[index] = a["verdict"]
    names = sorted(by_reviewer)
    pairs = []
    for i, r1 in enumerate(names):
        for r2 in names[i + 1 :]:
            both = sorted(set(by_reviewer[r1]) & set(by_reviewer[r2]))
            if not both:
                continue
            a, b = [by_reviewer[r1][k] for k in both], [by_reviewer[r2][k] for k in both]
            pairs.append(
                {
                    "reviewers": [r1, r2],
                    "both_answered": len(both),
                    "agreement": sum(x == y for x, y in zip(a, b, strict=True)) / len(both),
                    "kappa": cohen_kappa(a, b),
                }
            )
    return pairs


class Rows:
    """Which (index, status) pairs an answer may refer to: kept rows, and rows dropped at the stage.
    Column-wise (numpy, searchsorted), read once: a build of millions of rows is checked per answer,
    not turned into Python objects."""

    def __init__(self, out: str | Path, stage: str):
        t = pq.read_table(OutLayout(out).manifest, columns=["index", "status", "stage"])
        index = np.asarray(t.column("index").to_numpy(), dtype=np.int64)
        kept = np.asarray(pc.fill_null(pc.equal(t.column("status"), "kept"), False).to_numpy(zero_copy_only=False), bool)
        dropped = pc.and_(pc.equal(t.column("status"), "dropped"), pc.equal(t.column("stage"), stage))
        dropped = np.asarray(pc.fill_null(dropped, False).to_numpy(zero_copy_only=False), bool)
        order = np.argsort(index, kind="stable")
        self.index, self.kept, self.dropped = index[order], kept[order], dropped[order]
        self.population = {"kept": int(kept.sum()), "dropped": int(dropped.sum())}

    def __contains__(self, key: tuple[int, str]) -> bool:
        index, status = key
        pos = int(np.searchsorted(self.index, index))
        if pos >= self.index.size or self.index[pos] != index:
            return False
        return bool(self.kept[pos] if status == "kept" else self.dropped[pos] if status == "dropped" else False)


def audit_figures(out: str | Path) -> dict[str, Any]:
    """The report's "audit" figures: one entry per stage that has answers under OUT/audit."""
    folder = OutLayout(out).root / "audit"
    if not folder.is_dir():
        return {}
    stages = sorted(
        {m.group(1) for p in folder.iterdir() if (m := re.match(r"^([a-z_]+)-\d{1,12}\.jsonl$", p.name)) and m.group(1) in STAGES}
    )
    figures = {}
    for stage in stages:
        summary = stage_summary(out, stage, Rows(out, stage))
        if "kept" in summary or "dropped" in summary:
            figures[stage] = summary
    return figures
