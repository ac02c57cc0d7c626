"""Helpers for testing stages without Ray: samples from files, run a stage like the runner does."""

from __future__ import annotations

import hashlib
from pathlib import Path

from hoiforge.stages.base import Sample, Stage, batch_to_samples, samples_to_batch


def sample_from_file(path: str | Path, index: int = 0) -> Sample:
    """A sample as the read step makes it (bytes + source), before decode."""
    data = Path(path).read_bytes()
    return Sample(
        key=str(path),
        index=index,
        uri=str(path),
        member=None,
        image=data,
        ann={"source": {"uri": str(path), "member": None, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}},
    )


def run_stage(stage: Stage, samples: list[Sample]) -> list[Sample]:
    """Run a stage through its Ray-facing entry point (Arrow batch in, Arrow batch out)."""
    return batch_to_samples(stage(samples_to_batch(samples)))


def decoded(path: str | Path, index: int = 0) -> Sample:
    """A sample after the default decode stage: what every later stage receives."""
    from hoiforge.stages.decode import Decode

    stage = Decode(Decode.Params(stage="decode"))
    return run_stage(stage, [sample_from_file(path, index)])[0]
