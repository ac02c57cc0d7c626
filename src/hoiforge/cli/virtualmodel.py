"""``hoiforge train ...`` and ``hoiforge generate ...``: one typer group each, importable so every model adds its
own subcommand (``train_app.command("shoemodel")(...)``). Nothing heavy is imported until a command runs.

hoiforge train virtualmodel --data OUT [--data OUT2 ...] --config tiny|sd15|PATH.yaml --out RUN
                            [--stage base|branches] [--max-steps N] [--resume]
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


@train_app.command("virtualmodel")
def train_virtualmodel_command(
    data: Annotated[list[Path], typer.Option("--data", help="build output folder (repeat for several)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="run folder: config.yaml, checkpoints, metrics.jsonl, validation images")],
    config: Annotated[
        str, typer.Option("--config", "-c", help="tiny (CPU, random, untrained), sd15 (paper sizes) or a YAML path")
    ] = "tiny",
    stage: Annotated[Optional[str], typer.Option("--stage", help="base | branches (default: base, then branches)")] = None,
    max_steps: Annotated[Optional[int], typer.Option("--max-steps", min=0, help="steps per stage (overrides the config)")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="continue from the newest checkpoints in --out")] = False,
) -> None:
    """Train VirtualModel: stage 1 the base UNet on close-view human crops, stage 2 the identity and content branches."""
    training_logs()
    try:
        from hoiforge.training.virtualmodel.config import load_config
        from hoiforge.training.virtualmodel.train import train_virtualmodel

        cfg = load_config(config)
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
) -> None:
    """Generate a human-object image around a product; the product's pixels are backfilled at the output size."""
    training_logs()
    try:
        from hoiforge.training.virtualmodel.generate import generate_virtualmodel

        path = generate_virtualmodel(checkpoint, product, mask, pose, prompt, out, steps=steps, cfg_scale=cfg, seed=seed, size=size)
    except HoiforgeError as e:
        fail(str(e))
    console.print(f"[green]✓[/] {path}", highlight=False)
