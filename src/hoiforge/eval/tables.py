"""Result tables in the papers' rows and columns: markdown, CSV and JSON, optionally beside the published numbers.

One ``ResultRow`` per evaluated model or ablation: its label (method / variant / model), its
metrics keyed as the table's columns, the generation settings it was produced with (sampler,
steps, CFG, resolution, seed, N) and free-form details (KID std, N real/fake, truncated captions,
the pose breakdown...). ``write_table`` writes ``<name>.md``, ``<name>.csv``, ``<name>.json``;
with ``compare`` every row of ours is followed by the paper's row of the same label and the
difference, and the paper's other rows close the table, marked as published.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from hoiforge.eval.paper_tables import TABLES, TableSpec


@dataclass
class GenerationSettings:
    sampler: str = "DDIM"
    steps: int | None = None
    cfg: float | None = None
    resolution: str | None = None  # e.g. "512x512" or "short side 512"
    seed: int | None = None
    n: int | None = None  # images scored

    def describe(self) -> str:
        """Sampler, steps, CFG, seed (resolution and N have their own columns)."""
        parts = [
            self.sampler,
            f"{self.steps} steps" if self.steps is not None else None,
            f"CFG {self.cfg:g}" if self.cfg is not None else None,
            f"seed {self.seed}" if self.seed is not None else None,
        ]
        return ", ".join(p for p in parts if p)


@dataclass
class ResultRow:
    label: str
    metrics: dict[str, float | None]
    settings: GenerationSettings = field(default_factory=GenerationSettings)
    details: dict[str, Any] = field(default_factory=dict)
    label_values: dict[str, str] = field(default_factory=dict)  # e.g. {"task": "OHG"}


def _fmt(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    text = f"{value:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text  # no "-0.00" for a round-off negative


def _delta(ours: float | None, paper: float | None, digits: int) -> str:
    if ours is None or paper is None or (isinstance(ours, float) and math.isnan(ours)):
        return ""
    return f"{ours - paper:+.{digits}f}"


def spec_of(table: str | TableSpec) -> TableSpec:
    if isinstance(table, TableSpec):
        return table
    if table not in TABLES:
        raise KeyError(f"unknown table {table!r}; known: {', '.join(TABLES)}")
    return TABLES[table]


def markdown(table: str | TableSpec, rows: list[ResultRow], compare: bool = False) -> str:
    spec = spec_of(table)
    head = [spec.label, *spec.label_columns, *(c.title for c in spec.columns), "N", "resolution", "generation"]
    lines = [f"## {spec.title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def line(label: str, labels: dict, values: dict, n: str, resolution: str, settings: str) -> str:
        cells = [label, *(str(labels.get(k, "")) for k in spec.label_columns)]
        cells += [v if isinstance(v := values.get(c.key), str) else _fmt(v, c.digits) for c in spec.columns]
        return "| " + " | ".join([*cells, n, resolution, settings]) + " |"

    shown_paper = set()
    for row in rows:
        s = row.settings
        lines.append(line(row.label, row.label_values, row.metrics, str(s.n or "–"), s.resolution or "–", s.describe()))
        paper = spec.paper_row(row.label) if compare else None
        if paper is not None:
            shown_paper.add(paper[spec.label])
            lines.append(line(f"{paper[spec.label]} (paper)", paper, paper, "–", "–", spec.paper_settings))
            deltas = {c.key: _delta(row.metrics.get(c.key), paper.get(c.key), c.digits) for c in spec.columns}
            lines.append(line("Δ ours − paper", {}, deltas, "", "", ""))
    if compare:
        for paper in spec.paper_rows:
            if paper[spec.label] not in shown_paper:
                lines.append(line(f"{paper[spec.label]} (paper)", paper, paper, "–", "–", spec.paper_settings))
    lines.append("")
    lines += [f"- {note}" for note in spec.notes]
    if compare:
        lines.append(f"- (paper) rows: numbers as published; the paper's settings: {spec.paper_settings}.")
    return "\n".join(lines).rstrip() + "\n"


def csv_text(table: str | TableSpec, rows: list[ResultRow], compare: bool = False) -> str:
    spec = spec_of(table)
    detail_keys = sorted({k for r in rows for k, v in r.details.items() if not isinstance(v, (dict, list))})
    header = ["source", spec.label, *spec.label_columns, *spec.keys, "sampler", "steps", "cfg", "resolution", "seed", "n", *detail_keys]
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    for r in rows:
        s = r.settings
        writer.writerow(
            [
                "ours",
                r.label,
                *(r.label_values.get(k, "") for k in spec.label_columns),
                *(_csv_value(r.metrics.get(k)) for k in spec.keys),
                s.sampler,
                _csv_value(s.steps),
                _csv_value(s.cfg),
                s.resolution or "",
                _csv_value(s.seed),
                _csv_value(s.n),
                *(_csv_value(r.details.get(k)) for k in detail_keys),
            ]
        )
    if compare:
        for p in spec.paper_rows:
            writer.writerow(
                ["paper", p[spec.label], *(p.get(k, "") for k in spec.label_columns), *(_csv_value(p.get(k)) for k in spec.keys)]
                + [""] * (6 + len(detail_keys))
            )
    return buf.getvalue()


def _csv_value(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return str(v)


def _json_safe(v):
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, dict):
        return {k: _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    return v


def json_doc(table: str | TableSpec, rows: list[ResultRow], compare: bool = False) -> dict:
    spec = spec_of(table)
    doc = {
        "table": spec.name,
        "title": spec.title,
        "columns": spec.keys,
        "rows": [_json_safe({spec.label: r.label, **r.label_values, **asdict(r)}) for r in rows],
        "notes": list(spec.notes),
    }
    if compare:
        doc["paper"] = {"settings": spec.paper_settings, "rows": [_json_safe(dict(p)) for p in spec.paper_rows]}
    return doc


def write_table(
    table: str | TableSpec, rows: list[ResultRow], out_dir: str | Path, compare: bool = False, notes: tuple[str, ...] | list[str] = ()
) -> dict[str, Path]:
    """Write ``<name>.md``, ``.csv`` and ``.json`` into ``out_dir``; returns their paths.

    ``notes`` are this evaluation's own lines (variants not evaluated, untrained models, skipped
    samples): listed under the markdown table after the table's standing notes, and as ``notes`` in the JSON.
    """
    spec = spec_of(table)
    if notes:
        spec = replace(spec, notes=(*spec.notes, *notes))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"md": out / f"{spec.name}.md", "csv": out / f"{spec.name}.csv", "json": out / f"{spec.name}.json"}
    paths["md"].write_text(markdown(spec, rows, compare), encoding="utf-8")
    paths["csv"].write_text(csv_text(spec, rows, compare), encoding="utf-8")
    paths["json"].write_text(json.dumps(json_doc(spec, rows, compare), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return paths
