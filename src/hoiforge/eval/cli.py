"""``hoiforge eval``: the papers' metrics from the command line.

hoiforge eval metrics --real DIR --fake DIR [--captions CAPTIONS.jsonl] [--json]

``--real`` may also be a features ``.npz`` a previous run cached (its path is printed). With
``--json`` the last line of stdout is one JSON object: ``fid``, ``kid``, ``kid_std``, ``n_real``,
``n_fake`` (and ``clip`` with captions) plus the settings they were computed under. Progress
bars and warnings go to stderr.
"""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from hoiforge.errors import HoiforgeError

eval_app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Evaluate generated images: FID, KID, CLIP score (the papers' tables)."
)
err = Console(stderr=True)


class ResizeChoice(str, Enum):
    tf1 = "tf1-bilinear"
    antialias = "antialias-bilinear"


class Truncation(str, Enum):
    torchmetrics = "torchmetrics"
    clip = "clip"


class FidMethod(str, Enum):
    sqrtm = "sqrtm"
    eigh = "eigh"


def _fail(message: str) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True, markup=True)
    raise typer.Exit(2)


@eval_app.command("metrics")
def metrics_command(
    real: Annotated[Path, typer.Option("--real", help="folder of real images (or a features .npz of an earlier run)")],
    fake: Annotated[Path, typer.Option("--fake", help="folder of generated images")],
    captions: Annotated[
        Optional[Path],
        typer.Option("--captions", help='JSON Lines, one {"file": NAME, "caption": TEXT} per generated image (adds CLIP score)'),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="end stdout with one JSON object of the results")] = False,
    resolution: Annotated[
        int, typer.Option("--resolution", help="short side both sets are resized to before Inception; 0 = as they are")
    ] = 512,
    resize: Annotated[ResizeChoice, typer.Option("--resize", help="the 299x299 Inception resize")] = ResizeChoice.tf1,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="images per Inception batch")] = 64,
    cache: Annotated[bool, typer.Option("--cache/--no-cache", help="reuse the real set's features cached by content")] = True,
    cache_dir: Annotated[Optional[Path], typer.Option("--cache-dir", help="feature cache (default $HOIFORGE_CACHE/eval-features)")] = None,
    clip_model: Annotated[
        Optional[str], typer.Option("--clip-model", help="CLIP folder or cached hub id (default: the clip-vit-base-patch16 weights entry)")
    ] = None,
    clip_truncation: Annotated[
        Truncation, typer.Option("--clip-truncation", help="how captions over 77 tokens are cut")
    ] = Truncation.torchmetrics,
    fid_method: Annotated[
        FidMethod, typer.Option("--fid-method", help="matrix square root: scipy sqrtm (standard) or symmetric eigh")
    ] = FidMethod.sqrtm,
    kid_subsets: Annotated[int, typer.Option("--kid-subsets", min=1)] = 100,
    kid_subset_size: Annotated[int, typer.Option("--kid-subset-size", min=2)] = 1000,
    device: Annotated[Optional[str], typer.Option("--device", help="cpu, cuda, cuda:1 (default: cuda when present)")] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="progress bars on stderr")] = True,
) -> None:
    """FID and KID (and CLIP score with --captions) of generated images against real ones."""
    from hoiforge.eval.captions import read_captions
    from hoiforge.eval.metrics import image_metrics

    if resolution < 0 or 0 < resolution < 16:
        _fail(f"--resolution {resolution}: give a short side of at least 16 pixels, or 0 to keep the images' own size")
    try:
        text = read_captions(captions) if captions is not None else None
        result = image_metrics(
            real,
            fake,
            captions=text,
            resolution=resolution or None,
            resize=resize.value,
            batch_size=batch_size,
            cache=cache,
            cache_dir=cache_dir,
            clip_model=clip_model,
            clip_truncation=clip_truncation.value,
            fid_method=fid_method.value,
            kid_subsets=kid_subsets,
            kid_subset_size=kid_subset_size,
            device=device,
            progress=progress,
        )
    except HoiforgeError as e:
        _fail(str(e))
    for note in result.warnings:
        err.print(f"[yellow]warning:[/] {note}", highlight=False, soft_wrap=True)
    if result.real_features_path:
        state = "read from" if result.real_from_cache else "cached at"
        err.print(f"real features {state} {result.real_features_path}", highlight=False, soft_wrap=True)
    for line in result.summary_lines():
        typer.echo(line)
    if as_json:
        typer.echo(json.dumps(result.to_json()))
