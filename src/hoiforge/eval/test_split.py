"""The test split of a build as ``eval virtualmodel`` / ``eval shoemodel`` read it, with the checks that make bad input one line.

``read_test_split(out, n)`` returns the first ``n`` test samples (all without ``n``) in shard
order, as ``(id, {extension: bytes})``; it refuses a folder that is not a build, a build without
a test split, and fewer than 2 samples (FID and KID need two). ``usable(...)`` keeps the samples
that hold what the command needs: a requirement missing from every sample is an error naming the
member and the recipe stage that writes it; one missing from some samples drops those samples,
counted in a warning.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hoiforge.errors import EvalError
from hoiforge.eval.fid import MIN_IMAGES
from hoiforge.eval.scoring import iter_split_samples

Members = dict[str, bytes]
TEST_SPLIT_HINT = (
    "rebuild it with a test split: `hoiforge build ... --test-size F` (the hoihuman recipe holds out 0.0016, shoeleg-paper 0.003)"
)


def read_test_split(out: str | Path, n: int | None = None) -> list[tuple[str, Members]]:
    root = Path(out).expanduser()
    if n is not None and n < MIN_IMAGES:
        raise EvalError(f"--n {n}: FID and KID need at least {MIN_IMAGES} test samples")
    if not root.is_dir():
        raise EvalError(f"--data {root} does not exist; pass the --out folder of `hoiforge build`")
    index = root / "index.test.json"
    if not index.is_file():
        built = (root / "index.json").is_file() or (root / "manifest.parquet").is_file()
        what = "no index.test.json" if built else "not a finished build: no index.json or manifest.parquet"
        raise EvalError(f"{root} has no test split ({what}); {TEST_SPLIT_HINT}")
    try:
        listed = sum(int(s.get("nsamples", 0)) for s in json.loads(index.read_text()).get("shardlist", []))
    except (OSError, ValueError, AttributeError, TypeError):
        raise EvalError(f"{index} is not a wids shard index; rebuild the output") from None
    if listed == 0:
        raise EvalError(f"{root}: index.test.json lists no test samples; {TEST_SPLIT_HINT}")
    samples = list(iter_split_samples(root, "test", n))
    if len(samples) < MIN_IMAGES:
        raise EvalError(
            f"{root}: the test split holds {len(samples)} sample(s); FID and KID need at least {MIN_IMAGES} (rebuild with a larger --test-size)"
        )
    return samples


@dataclass(frozen=True)
class Need:
    """Something each evaluated sample must hold, and the recipe stage that writes it."""

    what: str  # e.g. "mask.png (or products[].rle)"
    stage: str  # e.g. "the `products` stage"
    present: Callable[[Members], bool]


def annotation(members: Members) -> dict:
    try:
        return json.loads(members["json"]) if "json" in members else {}
    except ValueError:
        return {}


def usable(
    out: str | Path, samples: list[tuple[str, Members]], needs: list[Need], command: str
) -> tuple[list[tuple[str, Members]], str | None]:
    """(the samples that have every need, a warning line for those dropped or None); EvalError when no sample has a need."""
    absent = [need for need in needs if not any(need.present(m) for _, m in samples)]
    if absent:
        parts = "; ".join(f"{need.what} ({need.stage} writes it)" for need in absent)
        raise EvalError(f"{out}: no test sample holds {parts}, which `{command}` needs; rebuild with a recipe that runs it")
    kept, dropped = [], {}
    for sid, members in samples:
        lacking = [need.what for need in needs if not need.present(members)]
        if lacking:
            dropped[sid] = lacking
        else:
            kept.append((sid, members))
    if len(kept) < MIN_IMAGES:
        raise EvalError(
            f"{out}: only {len(kept)} of {len(samples)} test samples hold everything `{command}` needs "
            f"(the others lack {_first_lacks(dropped)}); FID and KID need at least {MIN_IMAGES}"
        )
    if not dropped:
        return kept, None
    return kept, f"{len(dropped)} of {len(samples)} test samples skipped: they lack {_first_lacks(dropped)}"


def _first_lacks(dropped: dict[str, list[str]]) -> str:
    counts: dict[str, int] = {}
    for lacking in dropped.values():
        for what in lacking:
            counts[what] = counts.get(what, 0) + 1
    return ", ".join(f"{what} ({k})" for what, k in counts.items()) or "nothing"
