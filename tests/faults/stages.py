"""Stages that misbehave on purpose, for the fault-injection tests (never in a real recipe).

They are registered into the stage registry by the tests and pickled by value to the Ray
workers, so the product's registry stays free of them.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from hoiforge.stages.base import Sample, Stage, StageParams


class ExplodeParams(StageParams):
    raise_on: list[str] = []  # input file names whose processing raises
    kill_once_on: str | None = None  # input file name whose first processing SIGKILLs the worker
    marker_dir: str | None = None  # where the "already killed once" marker lives
    pid_file: str | None = None  # where the worker writes its pid (the test kills it from outside)


class Explode(Stage):
    name = "explode"
    Params = ExplodeParams
    default_batch_size = 2

    @property
    def execution(self) -> str:
        return "actors"  # the fault tests kill a pool's actor and watch Ray restart it

    def process(self, samples: list[Sample]) -> None:
        p = self.params
        if p.pid_file:
            Path(p.pid_file).write_text(str(os.getpid()))
        for s in samples:
            name = Path(s.key).name
            if p.kill_once_on == name:
                marker = Path(p.marker_dir) / "killed"
                if not marker.exists():
                    marker.write_text(str(os.getpid()))
                    os.kill(os.getpid(), signal.SIGKILL)
            if name in p.raise_on:
                raise RuntimeError(f"injected failure on {name}")
            s.metrics["explode_seen"] = 1


class PauseParams(StageParams):
    started_file: str  # written when the stage first runs: the build is past its start-up by then
    release_file: str  # the stage waits until this file exists (at most 120 s)


class Pause(Stage):
    """Holds a build in the middle of its plan, so a test can act while it writes."""

    name = "pause"
    Params = PauseParams

    def process(self, samples: list[Sample]) -> None:
        import time

        Path(self.params.started_file).write_text(str(os.getpid()))
        deadline = time.monotonic() + 120
        while not Path(self.params.release_file).exists() and time.monotonic() < deadline:
            time.sleep(0.1)
