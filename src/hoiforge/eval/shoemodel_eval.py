"""``hoiforge eval shoemodel``: the whole ShoeModel on a shoe-leg build's test split -> Table 3 and Table 5.

Table 3 (FID, KID, CLIP): per test sample (shard order, the first ``n``) the shoe is the sample's
``shoe.png`` (the shoe-only RGBA at the photo's size; its alpha is the shoe mask) and the prompt its
caption; the full system (``training.shoemodel.system.ShoeModel``: WD -> LpS phase 1 -> phase 2 ->
X_p -> SW -> backfill) makes one image with seed ``seed + i``, saved as
``REPORT/generated/shoemodel/<id>.png`` at the photo's size, and the images are scored against the
same samples' photos (exported to ``REPORT/real/``) at SW's resolution (short side), CLIP against
the captions.

Table 5 (WD): the run's WD module on each sample's square shoe-pair crop (the crop its trainer
validates on, ``training.shoemodel.wd.crop``) against the sample's ``wear.png`` labels cropped the
same way; one confusion matrix over the split -> per-class IoU/Acc, mIoU, mAcc, aAcc
(mmseg's definitions). Which labels those are (human labels, or the bootstrap labels whose
wearable class is empty) is counted in the notes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from hoiforge.errors import EvalError
from hoiforge.eval.held_out import Need, caption, check_test_split, samples, survey
from hoiforge.eval.runs import check_run, finite, prepare_report, settings_match, table_markdown, timed, tracked
from hoiforge.eval.scoring import score_shoemodel, shoemodel_row, wd_row
from hoiforge.eval.tables import GenerationSettings, write_table

COMMAND = "hoiforge eval shoemodel"
IMAGE_EXTS = ("jpg", "png", "webp")
WD_BATCH = 8  # shoe-pair crops per WD forward pass

NEEDS = [
    Need("an image", "the `decode` stage", lambda m: any(e in m for e in IMAGE_EXTS)),
    Need("shoe.png (the shoe-only image)", "the `shoes` stage", lambda m: "shoe.png" in m),
    Need("leg.json (leg and foot keypoints)", "the `pose` stage with leg_json: true", lambda m: "leg.json" in m),
    Need("wear.png (wearable-area labels)", "the `wear_labels` stage (or `shoes` with bootstrap_wear)", lambda m: "wear.png" in m),
    Need("a caption (txt)", "the `caption` stage", lambda m: bool(caption(m))),
]


@dataclass
class Options:
    n: int | None = None
    seed: int = 0
    steps: int | None = None  # default: the run's SW config (inference_steps)
    cfg: float | None = None  # default: the run's SW config (guidance_scale)
    clip_model: str | None = None
    clip_truncation: str = "torchmetrics"
    fid_method: str = "sqrtm"
    cache_dir: str | None = None
    device: str | None = None
    compare: bool = False
    progress: bool = True


def evaluate_shoemodel(
    checkpoint: str | Path, data: str | Path, report: str | Path, options: Options | None = None, say: Callable[[str], None] = print
) -> dict:
    import torch

    from hoiforge.datasets import wearable as W
    from hoiforge.metrics.clip_score import resolve_clip
    from hoiforge.metrics.segmentation import confusion_matrix, segmentation_scores
    from hoiforge.training.shoemodel import system as S
    from hoiforge.training.shoemodel import wd
    from hoiforge.training.shoemodel.data import ShoeLegSample

    opts = options or Options()
    run = check_run(checkpoint, "shoemodel")
    if opts.steps is not None and opts.steps < 1:
        raise EvalError(f"--steps {opts.steps}: give at least 1 DDIM step")
    if opts.cfg is not None and opts.cfg < 1:
        raise EvalError(f"--cfg {opts.cfg:g}: the guidance scale is at least 1")
    S.check_run(run)  # MissingModule names each untrained module and the command that trains it
    root = check_test_split(data, opts.n)
    kept, total, skipped = survey(root, opts.n, NEEDS, COMMAND)
    report_dir = prepare_report(report)
    resolve_clip(opts.clip_model)  # before any image is generated

    model = S.ShoeModel(run, device=opts.device)
    updates = {k: v for k, v in (("inference_steps", opts.steps), ("guidance_scale", opts.cfg)) if v is not None}
    if updates:
        model.sw_cfg = model.sw_cfg.model_copy(update=updates)
    notes = [f"{skipped}."] if skipped else []
    if model.tiny:
        say(f"warning: {run} holds tiny random modules (config tiny): the images are noise around the shoe and the numbers mean nothing")
        notes.append("The run's modules are tiny random networks (config tiny, a code-path check): the numbers mean nothing.")

    real = report_dir / "real"
    real.mkdir(exist_ok=True)
    for stale in real.iterdir():  # a previous evaluation of other samples
        if stale.is_file() and stale.stem not in set(kept):
            stale.unlink()
    steps, guidance, size = model.sw_cfg.inference_steps, model.sw_cfg.guidance_scale, model.sw_cfg.resolution
    folder = report_dir / "generated" / "shoemodel"
    settings = {
        "run": str(run.resolve()),
        "records": {m: r.get("step") for m, r in model.records.items()},
        "sampler": "DDIM",
        "steps": steps,
        "cfg": guidance,
        "size": size,
        "seed": f"{opts.seed} + sample position",
        "ids": kept,
    }
    if folder.is_dir() and not settings_match(folder, settings):
        for old in folder.glob("*.png"):
            old.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "generation.json").write_text(json.dumps(settings, indent=2))

    # One streamed pass: export the photo (FID/KID real set), generate, and add the sample's WD crop to the
    # confusion matrix. Only ids, captions and the 3x3 counts are kept.
    timing = {"generate_s": 0.0, "wd_s": 0.0}
    made, gen_notes, captions, sources = 0, [], {}, {}
    cm = np.zeros((3, 3), np.int64)
    pending: list[tuple[np.ndarray, np.ndarray]] = []

    def wd_counts(crops: list) -> np.ndarray:
        """The confusion matrix of WD's predictions on ``crops`` (rgb, labels), which it empties."""
        counts = np.zeros((3, 3), np.int64)
        if crops:
            with torch.no_grad():
                for pred, (_, labels) in zip(wd.predict_labels(model.wd.net, [c[0] for c in crops]), crops, strict=True):
                    counts += confusion_matrix(pred, labels, 3)
            crops.clear()
        return counts

    position = {sid: i for i, sid in enumerate(kept)}
    for sid, members in tracked(samples(root, opts.n, set(kept)), len(kept), "generate ShoeModel", opts.progress):
        s = ShoeLegSample(sid, members)
        ext = next(e for e in IMAGE_EXTS if e in members)
        if not (real / f"{sid}.{ext}").is_file():
            (real / f"{sid}.{ext}").write_bytes(members[ext])
        captions[f"{sid}.png"] = caption(members)
        with timed(step := {}, "s"):
            if not (folder / f"{sid}.png").is_file():
                rgba = s.shoe_rgba()
                mask = rgba[..., 3] >= 128
                if not mask.any():
                    raise EvalError(f"{root}: test sample {sid} has an empty shoe.png (no pixel with alpha >= 128); rebuild the output")
                shoe = S.Shoe(np.ascontiguousarray(rgba[..., :3]), mask, f"test sample {sid}")
                result = model.generate(shoe, captions[f"{sid}.png"], 1, seed=opts.seed + position[sid], say=gen_notes.append)
                tmp = folder / f".{sid}.png.tmp"
                Image.fromarray(result.images[0]).save(tmp, format="PNG")
                tmp.replace(folder / f"{sid}.png")  # a killed run leaves no half-written image behind
                made += 1
        timing["generate_s"] += step["s"]
        with timed(step, "s"):
            crop = wd.crop(s, model.wd_cfg)
            if crop is not None:
                pending.append(crop[:2])
                sources[s.wear_source()] = sources.get(s.wear_source(), 0) + 1
            if len(pending) == WD_BATCH:
                cm += wd_counts(pending)
        timing["wd_s"] += step["s"]
    with timed(step, "s"):
        cm += wd_counts(pending)
    timing["wd_s"] += step["s"]
    n_wd = sum(sources.values())
    if gen_notes:
        say(f"note: {len(gen_notes)} image(s): {gen_notes[0]}")

    with timed(timing, "score_s"):
        scores = score_shoemodel(
            folder,
            real,
            captions,
            resolution=size,
            clip_truncation=opts.clip_truncation,
            clip_model=opts.clip_model,
            fid_method=opts.fid_method,
            cache_dir=opts.cache_dir,
            device=opts.device,
            progress=opts.progress,
        )
    for w in scores.get("warnings", []):
        say(f"warning: {w}")

    wd_scores = segmentation_scores(cm, W.CLASSES)
    wd_scores["confusion_matrix"] = cm.tolist()

    gen = GenerationSettings("DDIM", steps, guidance, f"short side {size}", opts.seed, len(kept))
    table3 = [shoemodel_row("ShoeModel", scores, gen)]
    table5 = [wd_row("WD (3 classes)", cm, n_images=n_wd)]
    table5[0].settings.resolution = f"{model.wd.size}x{model.wd.size} crop"
    notes3 = [
        *notes,
        f"Conditions: the first {len(kept)} test samples of {data}: shoe = the sample's shoe.png, prompt = its caption; "
        f"seed {opts.seed} + sample position; FID/KID at short side {size} against the same samples' photos.",
    ]
    notes5 = [
        *notes,
        f"WD on the shoe-pair crops of {n_wd} test samples against their wear.png labels; label sources: "
        + ", ".join(f"{k} {v}" for k, v in sorted(sources.items()))
        + (" (bootstrap labels leave the wearable class empty)." if "bootstrap" in sources else "."),
    ]
    tables = {
        "table3": write_table("shoemodel-table3", table3, report_dir, opts.compare, notes3),
        "table5": write_table("shoemodel-table5", table5, report_dir, opts.compare, notes5),
    }
    say(
        f"ShoeModel: {made} image(s) generated in {timing['generate_s']:.1f} s, scored in {timing['score_s']:.1f} s; WD in {timing['wd_s']:.1f} s"
    )
    doc = {
        "command": COMMAND,
        "checkpoint": str(run),
        "data": str(data),
        "n": len(kept),
        "n_test_read": total,
        "options": {k: v for k, v in asdict(opts).items() if k != "progress"},
        "generation": {**settings, "images_made": made, "folder": str(folder)},
        "timing": timing,
        "scores": scores,
        "wd": {k: v for k, v in wd_scores.items()},
        "wd_label_sources": sources,
        "tables": {k: {f: str(p) for f, p in v.items()} for k, v in tables.items()},
        "notes": notes,
    }
    (report_dir / "report.json").write_text(json.dumps(finite(doc), indent=2, ensure_ascii=False) + "\n")
    doc["markdown"] = "\n".join(
        [table_markdown("shoemodel-table3", table3, opts.compare, notes3), table_markdown("shoemodel-table5", table5, opts.compare, notes5)]
    )
    return doc
