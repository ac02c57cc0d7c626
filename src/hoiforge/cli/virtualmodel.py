"""``hoiforge train virtualmodel`` and ``hoiforge generate virtualmodel`` (registered by cli/main.py).
Nothing heavy is imported until a command runs.

hoiforge train virtualmodel --data OUT [--data OUT2 ...] --config tiny|sd15|PATH.yaml --out RUN
                            [--stage base|branches] [--max-steps N] [--resume]
hoiforge train virtualmodel --config sd15 --dry-run [--gpu-memory 80GB] [--world-size 8]
hoiforge generate virtualmodel --checkpoint RUN --product P.png --mask M.png --pose POSE.png|KEYPOINTS.json
                               --prompt "..." --out IMG.png [--steps 30] [--cfg 7] [--seed 0] [--size 512]
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from hoiforge.cli.dry_run import DryRun, GpuMemory, WorldSize, plan_and_exit, require_data_and_out
from hoiforge.cli.output import fail, training_logs, warn
from hoiforge.errors import HoiforgeError

console = Console(stderr=True)


def train_virtualmodel_command(
    data: Annotated[list[Path] | None, typer.Option("--data", help="build output folder (repeat for several)")] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="run folder: config.yaml, checkpoints, metrics.jsonl, validation images")
    ] = None,
    config: Annotated[
        str, typer.Option("--config", "-c", help="tiny (CPU, random, untrained), sd15 (paper sizes) or a YAML path")
    ] = "tiny",
    stage: Annotated[str | None, typer.Option("--stage", help="base | branches (default: base, then branches)")] = None,
    max_steps: Annotated[int | None, typer.Option("--max-steps", min=0, help="steps per stage (overrides the config)")] = None,
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
            stages = (stage,) if stage else ("base", "branches")
            plan_and_exit(lambda world: D.stage_plans(cfg, world, stages), D.weights_note(cfg), gpu_memory, world_size)
        require_data_and_out(data, out)
        if cfg.untrained:
            warn(f"config {cfg.name!r} is UNTRAINED random models: it tests the code path, its images are noise")
        results = train_virtualmodel(data, config, out, stage=stage, max_steps=max_steps, resume=resume)
    except HoiforgeError as e:
        fail(str(e))
    for name, r in results.items():
        loss = "-" if r.last_loss is None else f"{r.last_loss:.4f}"
        console.print(
            f"[green]✓[/] {name}: step {r.step}, loss {loss}, weights {', '.join(str(p) for p in r.weights.values())}", highlight=False
        )


def generate_virtualmodel_command(
    checkpoint: Annotated[
        Path, typer.Option("--checkpoint", help="run folder of `hoiforge train virtualmodel` (or one of its checkpoints)")
    ],
    product: Annotated[Path, typer.Option("--product", help="product image (its pixels inside the mask are kept)")],
    pose: Annotated[Path, typer.Option("--pose", help="pose image (rendered skeleton) or a json of 133-keypoint persons")],
    prompt: Annotated[str, typer.Option("--prompt", help="caption of the image to generate")],
    out: Annotated[Path, typer.Option("--out", "-o", help="output PNG")],
    mask: Annotated[Path | None, typer.Option("--mask", help="product mask (same size as the product; default: its alpha)")] = None,
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
