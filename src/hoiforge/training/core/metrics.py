"""``metrics.jsonl``: one JSON line per logged step (stage, step, loss, lr, it_s, elapsed_s, skipped), main process only.

``skipped``: samples the loaders of all ranks skipped (a member failed to decode) since the previous row.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

METRICS = "metrics.jsonl"


class MetricsLog:
    def __init__(self, output_dir: Path, stage: str):
        self.path = Path(output_dir) / METRICS
        self.stage = stage

    def forget_after(self, step: int) -> None:
        """Drop this stage's lines past ``step``: a resumed run redoes those steps and logs them again."""
        if not self.path.exists():
            return
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a crash
            if row.get("stage") != self.stage or row.get("step", 0) <= step:
                kept.append(line)
        self.path.write_text("".join(f"{line}\n" for line in kept))

    def write(self, step: int, **values: Any) -> dict[str, Any]:
        row = {"stage": self.stage, "step": step}
        for key, value in values.items():
            row[key] = round(value, 8) if isinstance(value, float) and math.isfinite(value) else value
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        return row


def read_metrics(output_dir: Path, stage: str | None = None) -> list[dict[str, Any]]:
    path = Path(output_dir) / METRICS
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if stage is None or r.get("stage") == stage]
