"""``hoiforge eval``: the papers' metrics from the command line.

hoiforge eval metrics --real DIR --fake DIR [--captions CAPTIONS.jsonl] [--json]
hoiforge eval virtualmodel --checkpoint RUN --data OUT [--n N] [--ablations] --out REPORT_DIR
hoiforge eval shoemodel --checkpoint RUN --data OUT --shoes DIR [--prompts P.jsonl] --out REPORT_DIR
hoiforge eval product-shots --data OUT --out DIR

``--real`` may also be a features ``.npz`` a previous run cached (its path is printed). With
``--json`` the last line of stdout is one JSON object: ``fid``, ``kid``, ``kid_std``, ``n_real``,
``n_fake`` (and ``clip`` with captions) plus the settings they were computed under. Progress
bars and warnings go to stderr.
"""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from hoiforge.cli.output import fail as _fail
from hoiforge.cli.output import say as _say
from hoiforge.cli.output import training_logs as _logs
from hoiforge.cli.output import warn
from hoiforge.errors import HoiforgeError

eval_app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Evaluate generated images and trained runs: FID, KID, CLIP, pose AP/AR, OER, WD (the papers' tables).",
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


@eval_app.command("metrics")
def metrics_command(
    real: Annotated[Path, typer.Option("--real", help="folder of real images (or a features .npz of an earlier run)")],
    fake: Annotated[Path, typer.Option("--fake", help="folder of generated images")],
    captions: Annotated[
        Path | None,
        typer.Option("--captions", help='JSON Lines, one {"file": NAME, "caption": TEXT} per generated image (adds CLIP score)'),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="end stdout with one JSON object of the results")] = False,
    resolution: Annotated[
        int, typer.Option("--resolution", help="short side both sets are resized to before Inception; 0 = as they are")
    ] = 512,
    resize: Annotated[ResizeChoice, typer.Option("--resize", help="the 299x299 Inception resize")] = ResizeChoice.tf1,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="images per Inception batch")] = 64,
    cache: Annotated[bool, typer.Option("--cache/--no-cache", help="reuse the real set's features cached by content")] = True,
    cache_dir: Annotated[Path | None, typer.Option("--cache-dir", help="feature cache (default $HOIFORGE_CACHE/eval-features)")] = None,
    clip_model: Annotated[
        str | None, typer.Option("--clip-model", help="CLIP folder or cached hub id (default: the clip-vit-base-patch16 weights entry)")
    ] = None,
    clip_truncation: Annotated[
        Truncation, typer.Option("--clip-truncation", help="how captions over 77 tokens are cut")
    ] = Truncation.torchmetrics,
    fid_method: Annotated[
        FidMethod, typer.Option("--fid-method", help="matrix square root: scipy sqrtm (standard) or symmetric eigh")
    ] = FidMethod.sqrtm,
    kid_subsets: Annotated[int, typer.Option("--kid-subsets", min=1)] = 100,
    kid_subset_size: Annotated[int, typer.Option("--kid-subset-size", min=2)] = 1000,
    device: Annotated[str | None, typer.Option("--device", help="cpu, cuda, cuda:1 (default: cuda when present)")] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="progress bars on stderr")] = True,
) -> None:
    """FID and KID (and CLIP score with --captions) of generated images against real ones."""
    from hoiforge.metrics.captions import read_captions
    from hoiforge.metrics.image_metrics import image_metrics

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
        warn(note)
    if result.real_features_path:
        state = "read from" if result.real_from_cache else "cached at"
        err.print(f"real features {state} {result.real_features_path}", highlight=False, soft_wrap=True)
    for line in result.summary_lines():
        typer.echo(line)
    if as_json:
        typer.echo(json.dumps(result.to_json()))


# -- generate on a test split, score, write the tables -----------------------------------------
Checkpoint = Annotated[Path, typer.Option("--checkpoint", help="the run folder of `hoiforge train ...` (--out RUN)")]
Data = Annotated[Path, typer.Option("--data", help="the build output (hoiforge build --out OUT) whose test split is evaluated")]
Report = Annotated[Path, typer.Option("--out", "-o", help="report folder: tables (.md/.csv/.json), report.json, generated/, real/")]
N = Annotated[int | None, typer.Option("--n", help="evaluate the first N test samples (default: all)")]
Seed = Annotated[int, typer.Option("--seed", help="seed of the first image; image i uses seed + i")]
Compare = Annotated[bool, typer.Option("--compare", help="the paper's published numbers beside ours")]
ClipModel = Annotated[
    str | None, typer.Option("--clip-model", help="CLIP folder or cached hub id (default: the clip-vit-base-patch16 weights entry)")
]
CacheDir = Annotated[Path | None, typer.Option("--cache-dir", help="feature cache (default $HOIFORGE_CACHE/eval-features)")]
Device = Annotated[str | None, typer.Option("--device", help="cpu, cuda, cuda:1 (default: cuda when present)")]
Progress = Annotated[bool, typer.Option("--progress/--no-progress", help="progress bars on stderr")]
AllowOutsideRun = Annotated[
    bool, typer.Option("--allow-outside-run", help="load base models the run names outside itself (only for runs you made)")
]
Method = Annotated[FidMethod, typer.Option("--fid-method", help="matrix square root: scipy sqrtm (standard) or symmetric eigh")]


@eval_app.command("virtualmodel")
def virtualmodel_command(
    checkpoint: Checkpoint,
    data: Data,
    out: Report,
    n: N = None,
    ablations: Annotated[bool, typer.Option("--ablations", help="also Table 4: the run's variant and every --ablation-run")] = False,
    ablation_run: Annotated[
        list[Path] | None, typer.Option("--ablation-run", help="a run trained as an ablation (w/o CB, w/o IB, w/o C_v); repeatable")
    ] = None,
    steps: Annotated[int | None, typer.Option("--steps", help="DDIM steps (default: the run's config, 30)")] = None,
    cfg: Annotated[float | None, typer.Option("--cfg", help="classifier-free guidance scale (default: the run's config, 7)")] = None,
    seed: Seed = 0,
    size: Annotated[int | None, typer.Option("--size", help="output short side, multiple of 8 (default: the run's resolution)")] = None,
    batch: Annotated[int, typer.Option("--batch", help="conditions of one output size generated together")] = 8,
    pose_estimator: Annotated[
        str,
        typer.Option("--pose-estimator", help="pose backend run on the generated images (AP/AR): vitpose (paper-grade) | rtmw | mediapipe"),
    ] = "vitpose",
    oer_segmenter: Annotated[
        str, typer.Option("--oer-segmenter", help="box segmenter for OER's M: sam (the paper's) | hf-sam | embedded (GrabCut)")
    ] = "sam",
    oer_box_scale: Annotated[
        float, typer.Option("--oer-box-scale", min=1.0, help="the box of m grown this much prompts the segmenter")
    ] = 1.1,
    compare: Compare = False,
    clip_model: ClipModel = None,
    clip_truncation: Annotated[Truncation, typer.Option("--clip-truncation")] = Truncation.torchmetrics,
    fid_method: Method = FidMethod.sqrtm,
    cache_dir: CacheDir = None,
    device: Device = None,
    progress: Progress = True,
    allow_outside_run: AllowOutsideRun = False,
) -> None:
    """VirtualModel Table 1 (and Table 4 with --ablations): generate on OUT's test split with RUN, score, write the tables."""
    from hoiforge.eval.virtualmodel_eval import Options, evaluate_virtualmodel

    _logs()
    opts = Options(
        n=n,
        steps=steps,
        cfg=cfg,
        seed=seed,
        size=size,
        gen_batch=batch,
        pose_estimator=pose_estimator,
        oer_segmenter=oer_segmenter,
        oer_box_scale=oer_box_scale,
        clip_model=clip_model,
        clip_truncation=clip_truncation.value,
        fid_method=fid_method.value,
        cache_dir=str(cache_dir) if cache_dir else None,
        device=device,
        compare=compare,
        progress=progress,
        allow_outside_run=allow_outside_run,
    )
    try:
        doc = evaluate_virtualmodel(checkpoint, data, out, ablations, ablation_run or [], opts, say=_say)
    except HoiforgeError as e:
        _fail(str(e))
    typer.echo(doc["markdown"])
    err.print(f"report: {Path(out) / 'report.json'}", highlight=False, soft_wrap=True)


@eval_app.command("shoemodel")
def shoemodel_command(
    checkpoint: Checkpoint,
    data: Data,
    out: Report,
    shoes: Annotated[
        Path | None,
        typer.Option(
            "--shoes", help="folder of shoe-only images (the paper's Table 3 protocol); without it: worn-shoe input, no --compare"
        ),
    ] = None,
    prompts: Annotated[
        Path | None,
        typer.Option(
            "--prompts", help='JSON Lines, one {"file": NAME, "caption": PROMPT} per --shoes image (default: OUT\'s test captions)'
        ),
    ] = None,
    allow_bootstrap: Annotated[
        bool, typer.Option("--allow-bootstrap", help="score Table 5 against bootstrap wear labels (no wearable class); titled so")
    ] = False,
    n: N = None,
    seed: Seed = 0,
    steps: Annotated[int | None, typer.Option("--steps", help="DDIM steps of SW (default: the run's, 30)")] = None,
    cfg: Annotated[float | None, typer.Option("--cfg", help="guidance scale of SW (default: the run's, 7)")] = None,
    compare: Compare = False,
    clip_model: ClipModel = None,
    clip_truncation: Annotated[Truncation, typer.Option("--clip-truncation")] = Truncation.torchmetrics,
    fid_method: Method = FidMethod.sqrtm,
    cache_dir: CacheDir = None,
    device: Device = None,
    progress: Progress = True,
    allow_outside_run: AllowOutsideRun = False,
) -> None:
    """ShoeModel Table 3 (FID, KID, CLIP of the whole system on --shoes images vs OUT's test photos) and Table 5 (WD vs wear labels)."""
    from hoiforge.eval.shoemodel_eval import Options, evaluate_shoemodel

    _logs()
    opts = Options(
        n=n,
        seed=seed,
        shoes=str(shoes) if shoes else None,
        prompts=str(prompts) if prompts else None,
        allow_bootstrap=allow_bootstrap,
        steps=steps,
        cfg=cfg,
        compare=compare,
        clip_model=clip_model,
        clip_truncation=clip_truncation.value,
        fid_method=fid_method.value,
        cache_dir=str(cache_dir) if cache_dir else None,
        device=device,
        progress=progress,
        allow_outside_run=allow_outside_run,
    )
    try:
        doc = evaluate_shoemodel(checkpoint, data, out, opts, say=_say)
    except HoiforgeError as e:
        _fail(str(e))
    typer.echo(doc["markdown"])
    err.print(f"report: {Path(out) / 'report.json'}", highlight=False, soft_wrap=True)


@eval_app.command("product-shots")
def product_shots_command(
    data: Annotated[Path, typer.Option("--data", help="a shoe-leg build (hoiforge build --out OUT) whose samples hold shoe.png")],
    out: Annotated[Path, typer.Option("--out", "-o", help="folder for <id>.png product shots and prompts.jsonl")],
    split: Annotated[str, typer.Option("--split", help="which split's samples: test, train, ...")] = "test",
    n: N = None,
    margin: Annotated[float, typer.Option("--margin", help="white space around the shoe pair, a fraction of its longer side")] = 0.25,
) -> None:
    """Shoe-only product shots (the shoe pair on white, alpha kept) cut from a shoe-leg build: input for `eval shoemodel --shoes`."""
    from hoiforge.eval.product_shots import write_product_shots

    try:
        made = write_product_shots(data, out, split, n, margin)
    except HoiforgeError as e:
        _fail(str(e))
    typer.echo(f"{made} product shot(s) in {out}")
