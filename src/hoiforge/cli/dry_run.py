"""``--dry-run`` of the train commands: the per-device memory plan of models built on the meta device."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, NoReturn

import typer
from rich.console import Console

from hoiforge.cli.output import fail


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


def plan_and_exit(plans: Callable[[int], list], weights_note: str, gpu_memory: str, world_size: int | None) -> NoReturn:
    """``--dry-run``: print the plans for the world size, exit 0 if every stage fits ``gpu_memory``, else 1 (a check failed)."""
    quiet_meta_builds(gpu_memory)
    fits = print_dry_run(plans(dry_run_world(world_size)), weights_note, gpu_memory)
    raise typer.Exit(0 if fits else 1)


def require_data_and_out(data, out) -> None:
    """A real run (not ``--dry-run``) needs shards to read and a RUN to write."""
    if not data or out is None:
        fail("give --data OUT and --out RUN (or --dry-run to see the memory plan only)")
