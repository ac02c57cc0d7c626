"""The test split of a build as ``eval virtualmodel`` / ``eval shoemodel`` read it, with the checks that make bad input one line.

``check_test_split(out, n)`` refuses a folder that is not a build, a build without a test split,
and ``n`` under 2 (FID and KID need two). ``survey(...)`` streams the first ``n`` test samples
(all without ``n``, shard order) once and keeps the ids of those that hold what the command needs:
a requirement missing from every sample is an error naming the member and the recipe stage that
writes it; one missing from some samples drops those samples, counted in a warning. The commands
then stream the kept samples again (``samples(root, n, ids)``): no test split is ever held in
memory, only per-sample conditions and ids.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from hoiforge.errors import EvalError
from hoiforge.eval.scoring import iter_split_samples
from hoiforge.metrics.fid import MIN_IMAGES

Members = dict[str, bytes]
TEST_SPLIT_HINT = (
    "rebuild it with a test split: `hoiforge build ... --test-size F` (the hoihuman recipe holds out 0.0016, shoeleg-paper 0.003)"
)


def check_test_split(out: str | Path, n: int | None = None) -> Path:
    """OUT as a Path when it is a build with a test split listing samples; EvalError in one sentence otherwise."""
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
    return root


def samples(root: Path, n: int | None, ids: set[str] | None = None) -> Iterator[tuple[str, Members]]:
    """The first ``n`` test samples in shard order (only those in ``ids`` when given), streamed from the shards."""
    for sid, members in iter_split_samples(root, "test", n):
        if ids is None or sid in ids:
            yield sid, members


@dataclass(frozen=True)
class Need:
    """Something each evaluated sample must hold, and the recipe stage that writes it."""

    what: str  # e.g. "mask.png (or products[].rle)"
    stage: str  # e.g. "the `products` stage"
    present: Callable[[Members], bool]


def caption(members: Members) -> str:
    """The sample's caption: its ``txt`` member, else the annotation's caption ("" when neither)."""
    from hoiforge.datasets.vm_sample import caption_of

    return str(caption_of(members, annotation(members)) or "").strip()


def annotation(members: Members) -> dict:
    try:
        return json.loads(members["json"]) if "json" in members else {}
    except ValueError:
        return {}


def survey(root: Path, n: int | None, needs: list[Need], command: str) -> tuple[list[str], int, str | None]:
    """(ids of the samples that hold every need, in shard order; samples read; a warning for the others or None).

    One streamed pass that keeps no sample in memory. EvalError when the split holds fewer than
    2 samples, when no sample has a need (naming each and the stage that writes it), or when
    fewer than 2 samples have everything.
    """
    kept: list[str] = []
    dropped: dict[str, list[str]] = {}
    present = dict.fromkeys(range(len(needs)), 0)
    total = 0
    for sid, members in samples(root, n):
        total += 1
        lacking = []
        for i, need in enumerate(needs):
            if need.present(members):
                present[i] += 1
            else:
                lacking.append(need.what)
        if lacking:
            dropped[sid] = lacking
        else:
            kept.append(sid)
    if total < MIN_IMAGES:
        raise EvalError(
            f"{root}: the test split holds {total} sample(s); FID and KID need at least {MIN_IMAGES} (rebuild with a larger --test-size)"
        )
    absent = [need for i, need in enumerate(needs) if present[i] == 0]
    if absent:
        parts = "; ".join(f"{need.what} ({need.stage} writes it)" for need in absent)
        raise EvalError(f"{root}: no test sample holds {parts}, which `{command}` needs; rebuild with a recipe that runs it")
    if len(kept) < MIN_IMAGES:
        raise EvalError(
            f"{root}: only {len(kept)} of {total} test samples hold everything `{command}` needs "
            f"(the others lack {_first_lacks(dropped)}); FID and KID need at least {MIN_IMAGES}"
        )
    warning = f"{len(dropped)} of {total} test samples skipped: they lack {_first_lacks(dropped)}" if dropped else None
    return kept, total, warning


def _first_lacks(dropped: dict[str, list[str]]) -> str:
    counts: dict[str, int] = {}
    for lacking in dropped.values():
        for what in lacking:
            counts[what] = counts.get(what, 0) + 1
    return ", ".join(f"{what} ({k})" for what, k in counts.items()) or "nothing"
