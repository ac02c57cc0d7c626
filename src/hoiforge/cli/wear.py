"""``hoiforge wear check``: check human wearable-area labels against their images before a build.

The checks themselves are datasets/wear_check.py; this module lists what they found.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hoiforge.cli.output import check_failed, fail
from hoiforge.datasets.wear_check import check_folder

wear_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Wearable-area labels (shoe-leg).")


@wear_app.callback()
def _group() -> None:
    """Wearable-area labels (shoe-leg): keeps `wear check` a subcommand as more are added."""


@wear_app.command("check")
def check_command(
    images: Annotated[Path, typer.Argument(help="folder of images (searched recursively)")],
    labels_dir: Annotated[Path | None, typer.Option("--labels-dir", help="folder of <stem>.png masks (0/1/2 or 3 colours)")] = None,
    coco_json: Annotated[Path | None, typer.Option("--coco", help="COCO json with categories visible/wearable")] = None,
) -> None:
    """List images whose labels are bad (wrong size, unknown values), missing, or labels without an image."""
    if labels_dir is None and coco_json is None:
        fail("give --labels-dir and/or --coco")
    if not images.is_dir():
        fail(f"{images}: no such folder")
    result = check_folder(images, labels_dir, coco_json)
    for rel, reason in result["bad"]:
        typer.echo(f"bad      {rel}: {reason}")
    for rel in result["missing"]:
        typer.echo(f"missing  {rel}")
    for key in result["orphans"]:
        typer.echo(f"orphan   {key} (a label with no image at that path)")
    typer.echo(
        f"{len(result['ok'])} ok, {len(result['bad'])} bad, {len(result['missing'])} missing, {len(result['orphans'])} orphan labels"
    )
    if result["bad"]:
        check_failed()
