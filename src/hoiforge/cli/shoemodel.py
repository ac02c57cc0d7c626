"""``hoiforge train shoemodel`` and ``hoiforge generate shoemodel`` (registered by cli/main.py).

hoiforge train shoemodel --module wd|lps1|lps2|sw --data OUT [--data ...] --config tiny|paper|PATH.yaml --out RUN [--max-steps N] [--resume]
hoiforge train shoemodel --module sw --config paper --dry-run [--gpu-memory 80GB] [--world-size 8]
hoiforge generate shoemodel --checkpoint RUN --shoe SHOE.png --prompt "..." --n 4 --out DIR [--seed 0] [--layout move:dx,dy|rotate:deg]
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from hoiforge.cli.dry_run import DryRun, GpuMemory, WorldSize, plan_and_exit, require_data_and_out
from hoiforge.cli.output import fail as _fail
from hoiforge.cli.output import say as _say
from hoiforge.cli.output import training_logs, warn
from hoiforge.errors import HoiforgeError

stdout = Console()


def train_shoemodel(
    module: Annotated[str, typer.Option("--module", help="wd | lps1 | lps2 | sw")],
    config: Annotated[str, typer.Option("--config", help="tiny | paper | a YAML file (base: tiny|paper plus overrides)")],
    data: Annotated[
        list[Path] | None, typer.Option("--data", help="a shoe-leg build (hoiforge build --recipe shoeleg); repeat for several")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="the run directory; the module is written to OUT/<module>/")] = None,
    max_steps: Annotated[
        int | None, typer.Option("--max-steps", min=0, help="stop after N optimizer steps (default: the config's)")
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="continue from the module's newest checkpoint")] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="progress bar")] = True,
    dry_run: DryRun = False,
    gpu_memory: GpuMemory = "80GB",
    world_size: WorldSize = None,
) -> None:
    """Train one ShoeModel module (WD, LpS phase 1/2, SW) from shoe-leg shards."""
    from hoiforge.training.shoemodel.train import train

    training_logs()
    try:
        if dry_run:
            from hoiforge.training.shoemodel import dry_run as D
            from hoiforge.training.shoemodel.config import MODULES, load_config

            if module not in MODULES:
                _fail(f"unknown module {module!r}: choose one of {', '.join(MODULES)}")
            cfg = load_config(config)
            plan_and_exit(lambda world: [D.module_plan(cfg, module, world)], D.weights_note(cfg, module), gpu_memory, world_size)
        require_data_and_out(data, out)
        summary = train(module, [str(d) for d in data], config, out, max_steps=max_steps, resume=resume, progress=progress, say=_say)
    except HoiforgeError as e:
        _fail(str(e))
    first = f"{summary.first_loss:.4f}" if summary.first_loss is not None else "-"
    last = f"{summary.last_loss:.4f}" if summary.last_loss is not None else "-"
    resumed = f" (resumed from step {summary.resumed_from})" if summary.resumed_from else ""
    stdout.print(
        f"{module}: step {summary.step}{resumed}, loss {first} -> {last}; checkpoint {summary.folder}", highlight=False, soft_wrap=True
    )


def generate_shoemodel(
    checkpoint: Annotated[Path, typer.Option("--checkpoint", help="the run directory holding wd/, lps1/, lps2/, sw/")],
    shoe: Annotated[Path, typer.Option("--shoe", help="the shoe photo (a PNG with transparency, or a photo to segment)")],
    prompt: Annotated[str, typer.Option("--prompt", help="what the picture shows")],
    out: Annotated[Path, typer.Option("--out", help="folder for 0.png ... and leg_0.png ...")],
    n: Annotated[int, typer.Option("--n", min=1, max=64, help="images to make")] = 4,
    seed: Annotated[int, typer.Option("--seed", help="random seed (legs and images)")] = 0,
    layout: Annotated[str | None, typer.Option("--layout", help="move:DX,DY or rotate:DEGREES applied to the shoe first")] = None,
    device: Annotated[str | None, typer.Option("--device", help="cuda, cpu, ... (default: cuda when present)")] = None,
    allow_outside_run: Annotated[
        bool, typer.Option("--allow-outside-run", help="load a base model the run records outside itself (only for runs you made)")
    ] = False,
) -> None:
    """Put the shoe on generated legs: segment -> WD -> LpS -> SW -> backfill; the shoe's visible pixels stay the input's."""
    from hoiforge.training.shoemodel import system as S

    training_logs()
    try:
        placement = S.parse_layout(layout)
        model = S.ShoeModel(checkpoint, device=device, allow_outside_run=allow_outside_run)
        if model.tiny:
            warn(f"{checkpoint} holds tiny random modules (config tiny): the images are noise around the shoe")
        found = S.apply_layout(S.read_shoe(shoe, model.gen_cfg), placement)
        _say(f"shoe: {found.found}")
        result = model.generate(found, prompt, n, seed=seed, say=_say)
        paths = S.write(result, out)
    except HoiforgeError as e:
        _fail(str(e))
    stdout.print(f"{len(paths)} image(s) in {out} (0.png ..., leg_0.png ...)", highlight=False)
