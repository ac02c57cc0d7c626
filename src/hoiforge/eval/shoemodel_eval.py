"""``hoiforge eval shoemodel``: the whole ShoeModel -> Table 3 (FID, KID, CLIP) and Table 5 (WD).

Table 3, the paper's protocol (``--shoes DIR``): "another 2k test set in which only shoes are
shown in the images". Each image of DIR (sorted, the first ``n``) is a shoe-only product image:
an image with transparency gives its own mask, any other is segmented by the run's products
backend (``training.shoemodel.system.read_shoe``, as ``hoiforge generate shoemodel`` does). Its
prompt is its line of ``--prompts`` (``{"file": NAME, "caption": TEXT}`` per line, ``file``
relative to DIR), else (ours: the paper does not publish its prompts) the captions of OUT's test
samples in shard order, cycled. The full system (WD -> LpS phase 1 -> phase 2 -> X_p -> SW ->
backfill) makes one image per shoe with seed ``seed + i`` (i = the shoe's position), saved as
``REPORT/generated/shoemodel/<id>.png`` at the shoe image's size. The real set of FID/KID is
OUT's test photos (the first ``n``, exported to ``REPORT/real/``), both sets at SW's resolution
(short side); CLIP against the prompts. ``hoiforge eval product-shots`` cuts such a set from a
shoe-leg build (``eval.product_shots``).

Table 3 without ``--shoes`` (worn-shoe input, not the paper's protocol): the shoe is each test
sample's ``shoe.png`` cut from the very photo it is scored against, the prompt its caption. The
table's title and row say so, and ``--compare`` refuses it.

Table 5 (WD): the run's WD module on each test sample's square shoe-pair crop (the crop its trainer
validates on, ``training.shoemodel.wd.crop``) against the sample's ``wear.png`` cropped the same
way; one confusion matrix over the split -> per-class IoU/Acc, mIoU, mAcc, aAcc (mmseg's
definitions). Bootstrap labels (the ``shoes`` stage's ``bootstrap_wear``: the whole shoe visible,
no wearable class) make it meaningless: refused unless ``--allow-bootstrap``, which puts it in the
title. With ``--shoes`` and an OUT without wear labels, Table 5 is not written.

The command is three steps: ``generate`` (images missing from the folder; a rerun with the same
settings continues), ``score_table3`` / ``score_wd``, ``write_report``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image

from hoiforge.errors import EvalError
from hoiforge.eval.held_out import Need, annotation, caption, check_test_split, samples, survey
from hoiforge.eval.paper_tables import SHOEMODEL_TABLE3, SHOEMODEL_TABLE5
from hoiforge.eval.runs import check_run, finite, generation_folder, prepare_report, table_markdown, timed, tracked
from hoiforge.eval.scoring import score_shoemodel, shoemodel_row, wd_row
from hoiforge.eval.tables import GenerationSettings, ResultRow, write_table
from hoiforge.metrics.fid import MIN_IMAGES

COMMAND = "hoiforge eval shoemodel"
IMAGE_EXTS = ("jpg", "png", "webp")
WD_BATCH = 8  # shoe-pair crops per WD forward pass
WORN = "worn-shoe input, not the paper's protocol"
BOOTSTRAP = "bootstrap wear labels"

IMAGE = Need("an image", "the `decode` stage", lambda m: any(e in m for e in IMAGE_EXTS))
WORN_NEEDS = [
    IMAGE,
    Need("shoe.png (the shoe-only image)", "the `shoes` stage", lambda m: "shoe.png" in m),
    Need("leg.json (leg and foot keypoints)", "the `pose` stage with leg_json: true", lambda m: "leg.json" in m),
    Need("wear.png (wearable-area labels)", "the `wear_labels` stage (or `shoes` with bootstrap_wear)", lambda m: "wear.png" in m),
    Need("a caption (txt)", "the `caption` stage", lambda m: bool(caption(m))),
]
SHOES_NEEDS = [IMAGE]  # with --shoes, OUT gives the real set (and Table 5's samples where it has wear labels)


@dataclass
class Options:
    n: int | None = None
    seed: int = 0
    steps: int | None = None  # default: the run's SW config (inference_steps)
    cfg: float | None = None  # default: the run's SW config (guidance_scale)
    shoes: str | None = None  # a folder of shoe-only images: the paper's Table 3 protocol
    prompts: str | None = None  # JSON Lines {"file", "caption"} for the --shoes images
    allow_bootstrap: bool = False  # score Table 5 against bootstrap wear labels (titled so)
    clip_model: str | None = None
    clip_truncation: str = "torchmetrics"
    fid_method: str = "sqrtm"
    cache_dir: str | None = None
    device: str | None = None
    compare: bool = False
    progress: bool = True
    allow_outside_run: bool = False  # load an SW base model the run records outside itself (runs you made)


@dataclass(frozen=True)
class ShoeInput:
    id: str  # the generated image is <id>.png
    prompt: str
    path: Path | None = None  # a --shoes image; None: the test sample's own shoe.png (worn-shoe mode)


@dataclass
class Plan:
    """Everything the command checked before any model loads."""

    run: Path
    root: Path
    report: Path
    protocol: str  # "shoes" (the paper's) or "worn"
    real_ids: list[str]  # OUT's test samples whose photos are the FID/KID real set
    n_test_read: int
    inputs: list[ShoeInput]
    wd_ids: list[str]  # OUT's test samples Table 5 scores
    wear_sources: dict[str, int]
    n: int | None = None  # --n: the test split is read up to its first n samples
    shoes_dir: Path | None = None
    notes: list[str] = field(default_factory=list)


# -- checks and inputs -------------------------------------------------------------------------
def _test_facts(root: Path, n: int | None, ids: list[str]) -> tuple[list[str], list[str], dict[str, int]]:
    """(captions of ``ids`` in shard order, ids Table 5 can score, their wear label sources)."""
    captions, wd_ids, sources = [], [], {}
    for sid, members in samples(root, n, set(ids)):
        captions.append(caption(members))
        if "shoe.png" in members and "wear.png" in members:
            wd_ids.append(sid)
            source = str((annotation(members).get("wear") or {}).get("source", "unknown"))
            sources[source] = sources.get(source, 0) + 1
    return captions, wd_ids, sources


def _shoe_folder(opts: Options, test_captions: list[str]) -> list[ShoeInput]:
    """The --shoes images (sorted, the first n) and their prompts."""
    from hoiforge.metrics.captions import match_captions, read_captions
    from hoiforge.metrics.image_folder import list_images

    listing = list_images(opts.shoes)
    files = listing.files[: opts.n] if opts.n else listing.files
    if len(files) < MIN_IMAGES:
        raise EvalError(f"--shoes {listing.root}: {len(files)} image(s); FID and KID need at least {MIN_IMAGES} shoe images")
    names = [f.as_posix() for f in files]
    ids = [f.with_suffix("").as_posix().replace("/", "__") for f in files]
    if len(set(ids)) < len(ids):
        twice = next(i for i in ids if ids.count(i) > 1)
        raise EvalError(f"--shoes {listing.root}: two images are named {twice!r} (other suffix); give each shoe image its own name")
    if opts.prompts:
        given = read_captions(opts.prompts)
        match_captions({k: v for k, v in given.items() if k in set(listing.names)}, names, str(listing.root))
        unknown = sorted(set(given) - set(listing.names))
        if unknown:
            raise EvalError(f"--prompts {opts.prompts}: {len(unknown)} line(s) name no image in {listing.root} (e.g. {unknown[0]})")
        prompts = [given[n] for n in names]
    else:
        cycle = [c for c in test_captions if c]
        if not cycle:
            raise EvalError("--shoes without --prompts takes its prompts from OUT's test captions, and it has none; pass --prompts P.jsonl")
        prompts = [cycle[i % len(cycle)] for i in range(len(files))]
    return [ShoeInput(i, p, listing.root / f) for i, p, f in zip(ids, prompts, files, strict=True)]


def check_inputs(checkpoint, data, report, opts: Options) -> Plan:
    """Every refusal of the command, before a model loads or an image is generated."""
    from hoiforge.metrics.clip_score import resolve_clip
    from hoiforge.training.shoemodel import system as S

    if opts.compare and not opts.shoes:
        raise EvalError(
            "--compare needs --shoes DIR: without it the shoes are cut from the very test photos they are scored against "
            f"({WORN}), so the numbers do not measure what the paper's Table 3 does (`hoiforge eval product-shots` makes a shoe-only set)"
        )
    if opts.prompts and not opts.shoes:
        raise EvalError("--prompts gives the prompts of the --shoes images; without --shoes each test sample's caption is its prompt")
    run = check_run(checkpoint, "shoemodel")
    if opts.steps is not None and opts.steps < 1:
        raise EvalError(f"--steps {opts.steps}: give at least 1 DDIM step")
    if opts.cfg is not None and opts.cfg < 1:
        raise EvalError(f"--cfg {opts.cfg:g}: the guidance scale is at least 1")
    S.check_run(run)  # MissingModule names each untrained module and the command that trains it
    root = check_test_split(data, opts.n)
    kept, total, skipped = survey(root, opts.n, SHOES_NEEDS if opts.shoes else WORN_NEEDS, COMMAND)
    test_captions, wd_ids, sources = _test_facts(root, opts.n, kept)
    if sources.get("bootstrap") and not opts.allow_bootstrap:
        raise EvalError(
            f"Table 5: {sources['bootstrap']} of {len(wd_ids)} test samples carry bootstrap wear labels (the whole shoe visible, "
            "no wearable class), against which WD's scores mean nothing; label the test photos by hand, check the labels with "
            "`hoiforge wear check` and build with the `wear_labels` stage, or pass --allow-bootstrap (Table 5's title then says so)"
        )
    if opts.shoes:
        inputs = _shoe_folder(opts, test_captions)
    else:
        inputs = [ShoeInput(sid, text) for sid, text in zip(kept, test_captions, strict=True)]
    report_dir = prepare_report(report)
    resolve_clip(opts.clip_model)  # before any image is generated
    protocol = "shoes" if opts.shoes else "worn"
    shoes_dir = Path(opts.shoes).expanduser() if opts.shoes else None
    return Plan(
        run, root, report_dir, protocol, kept, total, inputs, wd_ids, sources, opts.n, shoes_dir, [f"{skipped}."] if skipped else []
    )


# -- step 1: generate --------------------------------------------------------------------------
def export_real(plan: Plan) -> Path:
    """OUT's test photos (the FID/KID real set) in ``REPORT/real``, bytes as stored; images of other samples removed."""
    real = plan.report / "real"
    real.mkdir(exist_ok=True)
    keep = set(plan.real_ids)
    for stale in real.iterdir():  # a previous evaluation of other samples
        if stale.is_file() and stale.stem not in keep:
            stale.unlink()
    for sid, members in samples(plan.root, plan.n, keep):
        ext = next(e for e in IMAGE_EXTS if e in members)
        if not (real / f"{sid}.{ext}").is_file():
            (real / f"{sid}.{ext}").write_bytes(members[ext])
    return real


def _worn_shoe(sid: str, members: dict[str, bytes], where: Path):
    from hoiforge.training.shoemodel import system as S
    from hoiforge.training.shoemodel.data import ShoeLegSample

    rgba = ShoeLegSample(sid, members).shoe_rgba()
    mask = rgba[..., 3] >= 128
    if not mask.any():
        raise EvalError(f"{where}: test sample {sid} has an empty shoe.png (no pixel with alpha >= 128); rebuild the output")
    return S.Shoe(np.ascontiguousarray(rgba[..., :3]), mask, f"test sample {sid}")


def _shoes(plan: Plan, gen_cfg) -> Iterator[tuple[ShoeInput, Callable]]:
    """(input, a loader of its Shoe) in order; the worn-shoe mode streams the test split once."""
    from hoiforge.training.shoemodel import system as S

    if plan.protocol == "shoes":
        for inp in plan.inputs:
            yield inp, functools.partial(S.read_shoe, inp.path, gen_cfg)
        return
    by_id = {inp.id: inp for inp in plan.inputs}
    for sid, members in samples(plan.root, plan.n, set(by_id)):
        yield by_id[sid], functools.partial(_worn_shoe, sid, members, plan.root)


def generation_settings(model, plan: Plan, opts: Options) -> dict:
    return {
        "run": str(plan.run.resolve()),
        "records": {m: r.get("step") for m, r in model.records.items()},
        "protocol": plan.protocol,
        "shoes": str(Path(opts.shoes).resolve()) if opts.shoes else None,
        "sampler": "DDIM",
        "steps": model.sw_cfg.inference_steps,
        "cfg": model.sw_cfg.guidance_scale,
        "size": model.sw_cfg.resolution,
        "seed": f"{opts.seed} + input position",
        "ids": [inp.id for inp in plan.inputs],
        "prompts": [inp.prompt for inp in plan.inputs],
    }


def generate(model, plan: Plan, folder: Path, opts: Options, say: Callable[[str], None]) -> int:
    """The images of ``plan.inputs`` missing from ``folder`` (each written whole or not at all); returns how many were made."""
    notes: list[str] = []
    made = 0
    position = {inp.id: i for i, inp in enumerate(plan.inputs)}
    for inp, load in tracked(_shoes(plan, model.gen_cfg), len(plan.inputs), "generate ShoeModel", opts.progress):
        if (folder / f"{inp.id}.png").is_file():
            continue
        result = model.generate(load(), inp.prompt, 1, seed=opts.seed + position[inp.id], say=notes.append)
        tmp = folder / f".{inp.id}.png.tmp"
        Image.fromarray(result.images[0]).save(tmp, format="PNG")
        tmp.replace(folder / f"{inp.id}.png")  # a killed run leaves no half-written image behind
        made += 1
    if notes:
        say(f"note: {len(notes)} image(s): {notes[0]}")
    return made


# -- step 2: score -----------------------------------------------------------------------------
def score_table3(folder: Path, real: Path, plan: Plan, size: int, opts: Options) -> dict:
    return score_shoemodel(
        folder,
        real,
        {f"{inp.id}.png": inp.prompt for inp in plan.inputs},
        resolution=size,
        clip_truncation=opts.clip_truncation,
        clip_model=opts.clip_model,
        fid_method=opts.fid_method,
        cache_dir=opts.cache_dir,
        device=opts.device,
        progress=opts.progress,
    )


def score_wd(model, plan: Plan) -> np.ndarray:
    """The 3x3 confusion matrix of WD on the shoe-pair crops of ``plan.wd_ids`` against their wear labels."""
    import torch

    from hoiforge.metrics.segmentation import confusion_matrix
    from hoiforge.training.shoemodel import wd
    from hoiforge.training.shoemodel.data import ShoeLegSample

    cm = np.zeros((3, 3), np.int64)
    pending: list[tuple[np.ndarray, np.ndarray]] = []

    def flush() -> None:
        with torch.no_grad():
            for pred, (_, labels) in zip(wd.predict_labels(model.wd.net, [c[0] for c in pending]), pending, strict=True):
                cm[:] += confusion_matrix(pred, labels, 3)
        pending.clear()

    for sid, members in samples(plan.root, plan.n, set(plan.wd_ids)):
        crop = wd.crop(ShoeLegSample(sid, members), model.wd_cfg)
        if crop is not None:
            pending.append(crop[:2])
        if len(pending) == WD_BATCH:
            flush()
    if pending:
        flush()
    return cm


# -- step 3: write -----------------------------------------------------------------------------
def table3(plan: Plan, scores: dict, gen: GenerationSettings, data) -> tuple:
    """(spec, rows, notes) of Table 3 under the plan's protocol."""
    n_real = len(plan.real_ids)
    if plan.protocol == "shoes":
        spec, label = SHOEMODEL_TABLE3, "ShoeModel"
        notes = [
            f"Conditions: {len(plan.inputs)} shoe-only images of {plan.shoes_dir} (sorted), "
            f"each its own prompt; seed {gen.seed} + input position; FID/KID at {gen.resolution} against the first {n_real} "
            f"test photos of {data}, CLIP against the prompts."
        ]
    else:
        spec, label = replace(SHOEMODEL_TABLE3, title=f"ShoeModel Table 3 — {WORN}"), f"ShoeModel ({WORN})"
        notes = [
            f"Conditions ({WORN}): the first {n_real} test samples of {data}: shoe = the sample's shoe.png cut from the photo "
            f"it is scored against, prompt = its caption; seed {gen.seed} + sample position; FID/KID at {gen.resolution}. "
            "The paper's protocol is `--shoes DIR` (shoe-only images)."
        ]
    return spec, [shoemodel_row(label, scores, gen)], notes


def table5(plan: Plan, cm: np.ndarray, size: int) -> tuple:
    bootstrap = bool(plan.wear_sources.get("bootstrap"))
    spec, label = SHOEMODEL_TABLE5, "WD (3 classes)"
    if bootstrap:
        spec = replace(spec, title=f"ShoeModel Table 5 — WD module against {BOOTSTRAP} (no wearable class): not the paper's measure")
        label = f"WD (3 classes, {BOOTSTRAP})"
    row = wd_row(label, cm, n_images=len(plan.wd_ids))
    row.settings.resolution = f"{size}x{size} crop"
    sources = ", ".join(f"{k} {v}" for k, v in sorted(plan.wear_sources.items()))
    notes = [
        f"WD on the shoe-pair crops of {len(plan.wd_ids)} test samples against their wear.png labels; label sources: {sources}"
        + (f" ({BOOTSTRAP} leave the wearable class empty, --allow-bootstrap)." if bootstrap else ".")
    ]
    return spec, [row], notes


def write_report(plan: Plan, data, opts: Options, settings: dict, made: int, timing: dict, scores: dict, cm, model) -> dict:
    gen = GenerationSettings("DDIM", settings["steps"], settings["cfg"], f"short side {settings['size']}", opts.seed, len(plan.inputs))
    specs: dict[str, tuple[object, list[ResultRow], list[str]]] = {"table3": table3(plan, scores, gen, data)}
    if cm is not None:
        specs["table5"] = table5(plan, cm, model.wd.size)
    written, shown = {}, []
    for key, (spec, rows, notes) in specs.items():
        notes = [*plan.notes, *notes]
        written[key] = write_table(spec, rows, plan.report, opts.compare, notes)
        shown.append(table_markdown(spec, rows, opts.compare, notes))
    wd_doc = None
    if cm is not None:
        from hoiforge.datasets import wearable as W
        from hoiforge.metrics.segmentation import segmentation_scores

        wd_doc = {**segmentation_scores(cm, W.CLASSES), "confusion_matrix": cm.tolist()}
    doc = {
        "command": COMMAND,
        "protocol": plan.protocol,
        "checkpoint": str(plan.run),
        "data": str(data),
        "n": len(plan.inputs),
        "n_real": len(plan.real_ids),
        "n_test_read": plan.n_test_read,
        "options": {k: v for k, v in asdict(opts).items() if k != "progress"},
        "generation": {**settings, "images_made": made, "folder": str(plan.report / "generated" / "shoemodel")},
        "timing": timing,
        "scores": scores,
        "wd": wd_doc,
        "wd_label_sources": plan.wear_sources,
        "tables": {k: {f: str(p) for f, p in v.items()} for k, v in written.items()},
        "notes": plan.notes,
    }
    (plan.report / "report.json").write_text(json.dumps(finite(doc), indent=2, ensure_ascii=False) + "\n")
    doc["markdown"] = "\n".join(shown)
    return doc


# -- the command -------------------------------------------------------------------------------
def evaluate_shoemodel(
    checkpoint: str | Path, data: str | Path, report: str | Path, options: Options | None = None, say: Callable[[str], None] = print
) -> dict:
    """Check, generate, score, write; returns the report document (also ``REPORT/report.json``)."""
    from hoiforge.training.shoemodel import system as S

    opts = options or Options()
    plan = check_inputs(checkpoint, data, report, opts)
    model = S.ShoeModel(plan.run, device=opts.device, allow_outside_run=opts.allow_outside_run)
    updates = {k: v for k, v in (("inference_steps", opts.steps), ("guidance_scale", opts.cfg)) if v is not None}
    if updates:
        model.sw_cfg = model.sw_cfg.model_copy(update=updates)
    if model.tiny:
        say(
            f"warning: {plan.run} holds tiny random modules (config tiny): the images are noise around the shoe and the numbers mean nothing"
        )
        plan.notes.append("The run's modules are tiny random networks (config tiny, a code-path check): the numbers mean nothing.")
    if not plan.wd_ids:
        say(f"note: Table 5 not written: no test sample of {plan.root} holds shoe.png and wear.png")

    real = export_real(plan)
    folder = plan.report / "generated" / "shoemodel"
    settings = generation_settings(model, plan, opts)
    generation_folder(folder, settings)

    timing: dict = {}
    with timed(timing, "generate_s"):
        made = generate(model, plan, folder, opts, say)
    with timed(timing, "wd_s"):
        cm = score_wd(model, plan) if plan.wd_ids else None
    with timed(timing, "score_s"):
        scores = score_table3(folder, real, plan, settings["size"], opts)
    for w in scores.get("warnings", []):
        say(f"warning: {w}")
    say(
        f"ShoeModel: {made} image(s) generated in {timing['generate_s']:.1f} s, scored in {timing['score_s']:.1f} s; "
        f"WD in {timing['wd_s']:.1f} s"
    )
    return write_report(plan, data, opts, settings, made, timing, scores, cm, model)
