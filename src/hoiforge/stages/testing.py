"""Helpers for running stages without Ray: samples from files, the decode every stage expects.

To run a stage exactly as the pipeline does (Arrow batch in and out, failure isolation, timing),
use ``hoiforge.pipeline.adapter.run_stage``; these helpers stay pure Python.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from hoiforge.stages.base import Sample


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


def decoded(path: str | Path, index: int = 0) -> Sample:
    """A sample after the default decode stage: what every later stage receives."""
    from hoiforge.stages.decode import Decode

    stage = Decode(Decode.Params(stage="decode"))
    stage.setup()
    sample = sample_from_file(path, index)
    stage.process([sample])
    return sample
