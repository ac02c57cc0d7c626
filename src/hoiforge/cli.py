"""The ``hoiforge`` command line. Forms kept stable for scripts:

hoiforge build INPUT... --out OUT [--recipe NAME|PATH]
hoiforge inspect OUT ID
hoiforge validate OUT
hoiforge stats OUT                 (OUT/report/index.html + figures.json)
hoiforge view OUT [--host H] [--port P]
hoiforge models list|check|fetch
hoiforge wear check IMAGES --labels-dir DIR | --coco FILE
hoiforge train virtualmodel ...     (hoiforge/training/cli.py)
hoiforge generate virtualmodel ...
hoiforge train shoemodel --module wd|lps1|lps2|sw ...   (hoiforge/training/shoemodel/cli.py)
hoiforge generate shoemodel ...
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from hoiforge.datasets.wearable_cli import wear_app
from hoiforge.errors import HoiforgeError
from hoiforge.models.cli import models_app
from hoiforge.report.cli import stats_command, view_command
from hoiforge.training.cli import generate_app, train_app
from hoiforge.training.shoemodel import cli as _shoemodel_cli  # noqa: F401 - registers `train/generate shoemodel`

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Build, check and inspect HOI training data.")
app.add_typer(models_app, name="models")
app.add_typer(wear_app, name="wear")
app.add_typer(train_app, name="train")
app.add_typer(generate_app, name="generate")
app.command("stats")(stats_command)
app.command("view")(view_command)
console = Console(stderr=True)
stdout = Console()


def _fail(message: str, code: int = 2) -> None:
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@app.command()
def build(
    inputs: Annotated[
        list[str], typer.Argument(help="image files, directories, globs, tars, or .parquet/.csv lists (local or s3://, gs://)")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="output directory; rerunning the same command resumes")],
    recipe: Annotated[str, typer.Option("--recipe", "-r", help="bundled recipe name (demo, hoihuman, shoeleg) or a YAML path")] = "demo",
    address: Annotated[
        Optional[str], typer.Option("--address", help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)")
    ] = None,
    test_size: Annotated[
        Optional[float], typer.Option("--test-size", help="fraction of ids held out for test (overrides the recipe)")
    ] = None,
    shard_size: Annotated[Optional[int], typer.Option("--shard-size", help="samples per shard at most (overrides the recipe)")] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Ray Data progress bars")] = True,
    weights: Annotated[
        Optional[Path],
        typer.Option(
            "--weights", help="weights root of the paper-grade backends (default $HOIFORGE_WEIGHTS, else ~/.cache/hoiforge/weights)"
        ),
    ] = None,
) -> None:
    """Run a recipe over INPUTs into sharded WebDataset tars + manifest + wids index + stats."""
    from pydantic import ValidationError

    from hoiforge.models.weights import WEIGHTS_ENV
    from hoiforge.pipeline.recipe import OutputSpec, load_recipe
    from hoiforge.pipeline.runner import build as run_build

    if weights is not None:
        os.environ[WEIGHTS_ENV] = str(weights.expanduser().resolve())
    try:
        r = load_recipe(recipe)
        overrides = {k: v for k, v in {"test_size": test_size, "shard_max_count": shard_size}.items() if v is not None}
        if overrides:
            r = r.model_copy(update={"output": OutputSpec.model_validate({**r.output.model_dump(), **overrides})})
        console.print(f"[bold]hoiforge build[/] recipe [cyan]{r.name}[/] ({' → '.join(r.stage_names())}) → {out}", highlight=False)
        result = run_build(inputs, out, r, address=address, progress=progress)
    except HoiforgeError as e:
        _fail(str(e))
    except ValidationError as e:  # --test-size / --shard-size out of bounds
        _fail(f"{', '.join(str(err['loc'][0]) for err in e.errors())}: {e.errors()[0]['msg']}")
    _print_summary(result.stats, result.processed, out, r.stage_names())


def _print_summary(stats: dict, processed: int, out: Path, stage_order: list[str]) -> None:
    table = Table(title=f"{out}", show_header=False, title_justify="left")
    table.add_row("inputs", str(stats["inputs"]))
    table.add_row("kept", f"[green]{stats['kept']}[/]")
    table.add_row("dropped", str(stats["dropped"]))
    table.add_row("failed", f"[red]{stats['failed']}[/]" if stats["failed"] else "0")
    for group, reasons in stats["by_stage"].items():
        for reason, n in list(reasons.items())[:5]:
            table.add_row(f"  {group}", f"{n} × {reason}")
    table.add_row("shards", f"{stats['shards']} ({stats['shard_bytes'] / 1e6:.1f} MB)")
    per_stage = stats.get("seconds_per_image", {})
    if per_stage:
        ordered = [n for n in stage_order if n in per_stage] + [n for n in per_stage if n not in stage_order]
        table.add_row("ms per image", " · ".join(f"{name} {1000 * per_stage[name]:.0f}" for name in ordered))
    table.add_row("this run", f"{processed} inputs in {stats['last_run_seconds']} s")
    console.print(table)


@app.command()
def inspect(
    out: Annotated[Path, typer.Argument(help="output directory of a build")],
    ident: Annotated[str, typer.Argument(metavar="ID", help="sample id (or a unique prefix), or an input path/key")],
    extract: Annotated[Optional[Path], typer.Option("--extract", help="also write the sample's members into this folder")] = None,
) -> None:
    """Print one sample's annotations (and its manifest row)."""
    from hoiforge.datasets.reader import find_row, read_sample

    if not (out / "manifest.parquet").exists():
        _fail(f"{out}: no manifest.parquet (not a finished build)")
    row = find_row(out, ident)
    if row is None:
        _fail(f"{ident}: no such sample id or input in {out}/manifest.parquet", 1)
    doc = {"manifest": row}
    if row["status"] == "kept":
        members = read_sample(out, row["shard"], row["id"])
        doc["members"] = {ext: len(data) for ext, data in members.items()}
        doc["annotation"] = json.loads(members["json"])
        if extract:
            extract.mkdir(parents=True, exist_ok=True)
            for ext, data in members.items():
                (extract / f"{row['id']}.{ext}").write_bytes(data)
    stdout.print_json(json.dumps(doc, default=str))


@app.command()
def validate(out: Annotated[Path, typer.Argument(help="output directory of a build")]) -> None:
    """Check shards, index and manifest against the sample contract; exit 1 on any violation."""
    from hoiforge.datasets.validate import validate as run_validate

    problems = run_validate(out)
    for p in problems[:200]:
        stdout.print(f"[red]✗[/] {p}", highlight=False)
    if problems:
        stdout.print(f"[bold red]{len(problems)} violation(s)[/]")
        raise typer.Exit(1)
    stdout.print(f"[green]✓[/] {out} follows the sample contract")


def main() -> None:  # pragma: no cover - console entry
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
