"""``hoiforge train ...`` and ``hoiforge generate ...``: one typer group each, importable so every model adds its
own subcommand (``train_app.command("shoemodel")(...)``). Nothing heavy is imported until a command runs.

hoiforge train virtualmodel --data OUT [--data OUT2 ...] --config tiny|sd15|PATH.yaml --out RUN
                            [--stage base|branches] [--max-steps N] [--resume]
hoiforge train virtualmodel --config sd15 --dry-run [--gpu-memory 80GB] [--world-size 8]
hoiforge generate virtualmodel --checkpoint RUN --product P.png --mask M.png --pose POSE.png|KEYPOINTS.json
                               --prompt "..." --out IMG.png [--steps 30] [--cfg 7] [--seed 0] [--size 512]
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from hoiforge.errors import HoiforgeError

train_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Train the generators on built shards.")
generate_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Generate images with a trained run.")
console = Console(stderr=True)


def fail(message: str, code: int = 2) -> None:
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


class _Stderr(logging.Handler):
    """Writes to whatever sys.stderr is at the time (test runners swap it between commands)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


def training_logs() -> None:
    """hoiforge.training / hoiforge.datasets messages on stderr, once."""
    for name in ("hoiforge.training", "hoiforge.datasets"):
        logger = logging.getLogger(name)
        if not any(isinstance(h, _Stderr) for h in logger.handlers):
            handler = _Stderr()
            handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
            logger.addHandler(handler)
            logger.setLevel(logging.INFO)
            logger.propagate = False


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


def dry_run_world(world_size: Optional[int]) -> int:
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
    Optional[int], typer.Option("--world-size", min=1, help="dry run: processes to plan for (default: what accelerate launched)")
]


@train_app.command("virtualmodel")
def train_virtualmodel_command(
    data: Annotated[Optional[list[Path]], typer.Option("--data", help="build output folder (repeat for several)")] = None,
    out: Annotated[
        Optional[Path], typer.Option("--out", "-o", help="run folder: config.yaml, checkpoints, metrics.jsonl, validation images")
    ] = None,
    config: Annotated[
        str, typer.Option("--config", "-c", help="tiny (CPU, random, untrained), sd15 (paper sizes) or a YAML path")
    ] = "tiny",
    stage: Annotated[Optional[str], typer.Option("--stage", help="base | branches (default: base, then branches)")] = None,
    max_steps: Annotated[Optional[int], typer.Option("--max-steps", min=0, help="steps per stage (overrides the config)")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="continue from the newest checkpoints in --out")] = False,
    dry_run: DryRun = False,
    gpu_memory: GpuMemory = "80GB",
    world_size: WorldSize = None,
) -> None:
    """Train VirtualModel: stage 1 the base UNet on close-view human crops, stage 2 the identity and content branches."""
    training_logs()
    try:
        from hoiforge.training.virtualmodel.config import load_config
        from hoiforge.training.virtualmodel.train import train_virtualmodel

        cfg = load_config(config)
        if dry_run:
            from hoiforge.training.virtualmodel import dry_run as D

            if stage not in (None, "base", "branches"):
                fail(f"--stage must be base or branches, not {stage!r}")
            quiet_meta_builds(gpu_memory)
            stages = (stage,) if stage else ("base", "branches")
            fits = print_dry_run(D.stage_plans(cfg, dry_run_world(world_size), stages), D.weights_note(cfg), gpu_memory)
            raise typer.Exit(0 if fits else 1)
        if not data or out is None:
            fail("give --data OUT and --out RUN (or --dry-run to see the memory plan only)")
        if cfg.untrained:
            console.print(
                f"[bold yellow]warning:[/] config {cfg.name!r} is UNTRAINED random models: it tests the code path, its images are noise"
            )
        results = train_virtualmodel(data, config, out, stage=stage, max_steps=max_steps, resume=resume)
    except HoiforgeError as e:
        fail(str(e))
    for name, r in results.items():
        loss = "-" if r.last_loss is None else f"{r.last_loss:.4f}"
        console.print(
            f"[green]✓[/] {name}: step {r.step}, loss {loss}, weights {', '.join(str(p) for p in r.weights.values())}", highlight=False
        )


@generate_app.command("virtualmodel")
def generate_virtualmodel_command(
    checkpoint: Annotated[
        Path, typer.Option("--checkpoint", help="run folder of `hoiforge train virtualmodel` (or one of its checkpoints)")
    ],
    product: Annotated[Path, typer.Option("--product", help="product image (its pixels inside the mask are kept)")],
    pose: Annotated[Path, typer.Option("--pose", help="pose image (rendered skeleton) or a json of 133-keypoint persons")],
    prompt: Annotated[str, typer.Option("--prompt", help="caption of the image to generate")],
    out: Annotated[Path, typer.Option("--out", "-o", help="output PNG")],
    mask: Annotated[Optional[Path], typer.Option("--mask", help="product mask (same size as the product; default: its alpha)")] = None,
    steps: Annotated[int, typer.Option("--steps", min=1, help="DDIM steps")] = 30,
    cfg: Annotated[float, typer.Option("--cfg", min=0.0, help="classifier-free guidance scale")] = 7.0,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    size: Annotated[int, typer.Option("--size", min=8, help="short side of the output (multiple of 8)")] = 512,
    allow_outside_run: Annotated[
        bool, typer.Option("--allow-outside-run", help="load base models the run's config names outside it (only for runs you made)")
    ] = False,
) -> None:
    """Generate a human-object image around a product; the product's pixels are backfilled at the output size."""
    training_logs()
    try:
        from hoiforge.training.virtualmodel.generate import generate_virtualmodel

        path = generate_virtualmodel(
            checkpoint,
            product,
            mask,
            pose,
            prompt,
            out,
            steps=steps,
            cfg_scale=cfg,
            seed=seed,
            size=size,
            allow_outside_run=allow_outside_run,
        )
    except HoiforgeError as e:
        fail(str(e))
    console.print(f"[green]✓[/] {path}", highlight=False)
