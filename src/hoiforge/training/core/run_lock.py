"""One trainer per RUN: the OUT lock (pipeline/outlock) held on the run folder while a trainer writes it.

Without it a second trainer started on the same RUN deletes the first one's temp checkpoint at
start-up and the first crashes when it renames it. The lock file is ``RUN/_work/lock`` (outlock's
layout), the refusal is outlock's sentence ("RUN is being written by pid N on HOST since T ...").

Only the main process of a launch (``RANK`` 0, or no launcher) takes it: the other ranks of the
same run write the same RUN with it. Holding is re-entrant in one thread, so a trainer's entry point
can hold it around its own writes (config.yaml, records) and the core's ``Trainer.fit`` still takes
it for callers that did not (a second ``flock`` on a new descriptor of the same file would refuse
the thread its own lock); another thread of the same process is refused like another process.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hoiforge.pipeline.outlock import exclusive

_held: dict[tuple[Path, int], int] = {}  # (resolved run folder, thread) -> nesting depth


def is_main_rank() -> bool:
    return os.environ.get("RANK", "0") == "0"


@contextmanager
def hold(run: str | Path, what: str = "this training") -> Iterator[None]:
    """Hold RUN's lock for the block (OutputError at once when another trainer holds it)."""
    if not is_main_rank():
        yield
        return
    key = (Path(run).resolve(), threading.get_ident())
    if _held.get(key):
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    with exclusive(run, what):
        _held[key] = 1
        try:
            yield
        finally:
            del _held[key]
