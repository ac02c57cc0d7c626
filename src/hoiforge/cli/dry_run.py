"""``--dry-run`` of the train commands: the per-device memory plan of models built on the meta device."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console


def print_dry_run(plans, weights_note: str, gpu_memory: str) -> bool:
    """The per-device plan of each stage on stdout; whether every stage fits ``gpu_memory``."""
    from hoiforge.training.core.memory import parse_memory

    gpu = parse_memory(gpu_memory)
    label = gpu_memory.strip().upper().replace("GIB", "GB").replace("GB", " GB").replace("  ", " ")
    out = Console(highlight=False, soft_wrap=True)
    out.print(f"dry run (models on the meta device): {weights_note}")
    for plan in plans:
        for line in plan.lines(gpu, label):
            out.print(line, markup=False)
    return all(p.fits(gpu) for p in plans)


def dry_run_world(world_size: int | None) -> int:
    from hoiforge.training.core.batch_plan import world_size as launched

    return world_size if world_size is not None else launched()


def quiet_meta_builds(gpu_memory: str) -> None:
    """Before the meta builds: a bad --gpu-memory fails first; diffusers' warning on every dtype cast of a
    meta-device model is silenced (the dry run casts on purpose)."""
    from diffusers.utils import logging as diffusers_logging

    from hoiforge.training.core.memory import parse_memory

    parse_memory(gpu_memory)
    diffusers_logging.set_verbosity_error()


DryRun = Annotated[bool, typer.Option("--dry-run", help="build on the meta device and print the per-device memory plan; train nothing")]
GpuMemory = Annotated[str, typer.Option("--gpu-memory", help="GPU memory the dry run checks against, e.g. 80GB")]
WorldSize = Annotated[
    int | None, typer.Option("--world-size", min=1, help="dry run: processes to plan for (default: what accelerate launched)")
]
