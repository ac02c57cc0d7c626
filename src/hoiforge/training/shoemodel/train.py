"""Train one ShoeModel module (wd, lps1, lps2, sw) from shoe-leg shards on the shared training core.

Everything a module writes lives in ``RUN/<module>/``:

- the training core's ``metrics.jsonl`` (loss, lr, it/s per step; the module's scores at each
  validation), ``checkpoints/<module>-<step>/`` (accelerate state: ``--resume`` continues from
  the newest), ``weights/<module>/*.safetensors``, ``validation/*.png``;
- the module's inference checkpoint: ``wd/model/`` (a SegFormer directory that
  ``SegformerWearSegmenter`` loads), ``lps1/model/`` (ViTPose), ``lps2/model/`` + ``scheduler/``,
  ``sw/controlnet/`` (+ ``sw/base/`` for a tiny random base);
- ``shoemodel.json``: the module's settings, preset, data and final step (generation reads it).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from hoiforge.errors import HoiforgeError
from hoiforge.training.core import BatchPlan, plan_batch, run_lock, run_paths
from hoiforge.training.core.batch_plan import world_size
from hoiforge.training.shoemodel import data as D
from hoiforge.training.shoemodel import geometry as G
from hoiforge.training.shoemodel.config import MODULES, ModuleTrain, ShoeModelConfig, load_config
from hoiforge.training.shoemodel.loader import make_loader

RECORD = "shoemodel.json"
TRAIN_HINTS = {
    "wd": "build the shards with the shoeleg recipe (shoes stage, bootstrap_wear: true) or add labels with its wear_labels stage",
    "lps1": "build the shards with the shoeleg recipe (pose with leg_json: true, then shoes)",
    "lps2": "build the shards with the shoeleg recipe (pose with leg_json: true)",
    "sw": "build the shards with the shoeleg recipe (pose with leg_json: true, shoes; a caption stage for text)",
}
NEEDS = {"wd": ("shoe.png", "wear.png"), "lps1": ("shoe.png", "leg.json"), "lps2": ("leg.json",), "sw": ("shoe.png", "leg.json")}


class TrainError(HoiforgeError):
    """A training run that cannot start; the message says what to do."""


@dataclass
class TrainSummary:
    module: str
    folder: Path
    step: int
    last_loss: float | None
    first_loss: float | None
    resumed_from: int | None
    notes: list[str]


def train(
    module: str,
    data: list[str],
    config: str | ShoeModelConfig,
    out: str | Path,
    max_steps: int | None = None,
    resume: bool = False,
    progress: bool = True,
    say: Callable[[str], None] = print,
) -> TrainSummary:
    if module not in MODULES:
        raise TrainError(f"unknown module {module!r}: choose one of {', '.join(MODULES)}")
    if not data:
        raise TrainError("give at least one --data OUT (a shoe-leg build)")
    cfg = config if isinstance(config, ShoeModelConfig) else load_config(config)
    from hoiforge.training.shoemodel.config_check import check_module

    check_module(cfg, module)  # sizes and shapes before any network is built (a YAML may be someone else's)
    folder = Path(out) / module
    _check_run_folder(folder, module, cfg, resume)
    with run_lock.hold(folder):  # one trainer per module folder, from its first file to its record
        _check_run_folder(folder, module, cfg, resume)  # again, now that no other trainer can write it
        return _train_locked(module, data, cfg, folder, max_steps, resume, progress, say)


def _train_locked(
    module: str, data: list[str], cfg: ShoeModelConfig, folder: Path, max_steps: int | None, resume: bool, progress: bool, say
) -> TrainSummary:
    urls = D.shard_urls(data, "train")
    notes: list[str] = []
    head = D.check_members(list(data), "train", NEEDS[module], module.upper(), TRAIN_HINTS[module])
    if module == "wd" and head and all(s.wear_source() == "bootstrap" for s in head if s.has("wear.png")):
        notes.append(
            "the wear labels are the shoes stage's bootstrap (worn photos: no wearable class): WD learns background/visible "
            "only until human labels are added with the wear_labels stage"
        )
    if cfg.is_tiny:
        notes.append("config 'tiny': small random networks, for tests and smoke runs; nothing it learns is meaningful")
    for note in notes:
        say(f"note: {note}")

    settings: ModuleTrain = getattr(cfg, module).train
    plan = plan_batch(settings.batch_size, world_size(), settings.per_device_batch)  # refused before any model is built
    steps = max_steps if max_steps is not None else settings.steps(_train_samples(data, settings))
    say(f"{module}: {plan.describe()}, {steps} steps")
    builder = {"wd": _wd, "lps1": _lps1, "lps2": _lps2, "sw": _sw}[module]
    from hoiforge.training.core import seed_everything

    seed_everything(settings.seed)  # new weights (heads, LpS2, the ControlNet's embedding) are a function of the seed
    parts = builder(cfg, urls, list(data), folder, settings, plan)
    trainer = _trainer(module, folder, settings, steps, progress, parts, plan)
    result = trainer.fit(resume=resume)
    parts["export"](result.weights, folder)
    from hoiforge.training.core import read_metrics

    losses = [r["loss"] for r in read_metrics(folder, module) if "loss" in r]
    record = {
        "module": module,
        "preset": cfg.preset,
        "tiny": cfg.is_tiny,
        "step": result.step,
        "data": [str(Path(d).resolve()) for d in data],
        "config": getattr(cfg, module).model_dump(mode="json"),
        "batch_plan": plan.as_dict(),
        "generate": cfg.generate.model_dump(mode="json"),
        **parts.get("record", {}),
    }
    (folder / RECORD).write_text(json.dumps(record, indent=2))
    return TrainSummary(module, folder, result.step, result.last_loss, losses[0] if losses else None, result.resumed_from, notes)


def _check_run_folder(folder: Path, module: str, cfg: ShoeModelConfig, resume: bool) -> None:
    has_run = (folder / "checkpoints").is_dir() and any((folder / "checkpoints").iterdir())
    if has_run and not resume:
        raise TrainError(f"{folder} already holds a {module} run: pass --resume to continue it, or choose another --out")
    record = folder / RECORD
    if resume and record.is_file():
        before = json.loads(record.read_text()).get("config")
        now = getattr(cfg, module).model_dump(mode="json")
        if before is not None and {k: v for k, v in before.items() if k != "train"} != {k: v for k, v in now.items() if k != "train"}:
            raise TrainError(f"{folder} was trained with other {module} settings; resume with the same --config or choose another --out")


def _mixed_precision(wanted: str) -> str:
    import torch

    if wanted != "no" and not torch.cuda.is_available():
        return "no"  # autocast fp16 is a GPU feature; a CPU run trains in fp32
    if wanted == "fp16" and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16"  # the project's policy: bf16 where the GPU has it
    return wanted


def _train_samples(data: list[str], s: ModuleTrain) -> int | None:
    """Training samples an ``epochs`` setting counts (the index's kept samples); None when steps are given."""
    if s.epochs is None:
        return None
    from hoiforge.datasets.loader import split_size

    return split_size(list(data), "train")


def _trainer(module: str, folder: Path, s: ModuleTrain, steps: int, progress: bool, parts: dict[str, Any], plan: BatchPlan):
    from hoiforge.training.core import Trainer

    config = s.core_config(folder, module, steps, plan, mixed_precision=_mixed_precision(s.mixed_precision), progress=progress)
    return Trainer(
        config,
        trainable={parts.get("name", module): parts["model"]},
        frozen=parts.get("frozen"),
        data=parts["data"],
        loss=parts["loss"],
        validate=parts.get("validate"),
        metadata={"module": module, "preset": parts.get("preset", ""), "batch_plan": json.dumps(plan.as_dict())},
    )


def _load_trained(model, weights: dict[str, Path], name: str):
    from safetensors.torch import load_model

    load_model(model, str(weights[name]), strict=True)
    return model


def _scores_row(folder: Path, module: str, step: int, values: dict[str, Any]) -> None:
    """A validation line in metrics.jsonl beside the core's loss lines (NaN -> null)."""
    from hoiforge.training.core.metrics import MetricsLog

    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in values.items()}
    MetricsLog(folder, module).write(step, **clean)


def _stream_loader(urls, make, s: ModuleTrain, plan: BatchPlan):
    return lambda start: make_loader(
        urls, make, plan.per_device_batch, seed=s.seed, start_step=start, shuffle_buffer=s.shuffle_buffer, workers=s.num_workers
    )


def _process_index() -> int:
    from accelerate import PartialState

    return int(PartialState().process_index)


def _eval_samples(data: list[str], n: int) -> tuple[list[D.ShoeLegSample], str]:
    """The first ``n`` test samples when every OUT has a test split with samples, else the first training samples."""
    split = "test" if all(D.has_split(d, "test") for d in data) else "train"
    return D.first_samples(D.shard_urls(data, split), n), split


# -- WD ----------------------------------------------------------------------------------------
def _wd(cfg: ShoeModelConfig, urls, data, folder: Path, s: ModuleTrain, plan: BatchPlan) -> dict[str, Any]:
    from hoiforge.training.shoemodel import wd

    c = cfg.wd
    model = wd.build(c)
    samples, split = _eval_samples(data, c.eval_samples)
    crops = [x for x in (wd.crop(sm, c) for sm in samples) if x is not None]

    def validate(step, models):
        scores = wd.score(models["wd"], crops)
        row = {f"{k}/{name}": v for k in ("IoU", "Acc") for name, v in scores[k].items()}
        row.update({k: scores[k] for k in ("mIoU", "mAcc", "aAcc")}, eval_split=split, eval_images=len(crops))
        row["confusion_matrix"] = scores["confusion_matrix"]  # rows = labelled class, columns = predicted
        _scores_row(folder, "wd", step, row)
        if not crops:
            return {}
        pred = wd.predict_labels(models["wd"], [crops[0][0]])[0]
        return {"overlay": Image.fromarray(np.concatenate([wd.overlay(crops[0][0], crops[0][1]), wd.overlay(crops[0][0], pred)], 1))}

    def export(weights, folder):
        wd.save(_load_trained(model, weights, "wd"), folder / "model", c.size)

    return {
        "model": model,
        "data": _stream_loader(urls, wd.make_examples(c), s, plan),
        "loss": wd.loss,
        "validate": validate,
        "export": export,
        "preset": cfg.preset,
    }


# -- LpS phase 1 -------------------------------------------------------------------------------
def _lps1(cfg: ShoeModelConfig, urls, data, folder: Path, s: ModuleTrain, plan: BatchPlan) -> dict[str, Any]:
    from hoiforge.training.shoemodel import lps1

    c = cfg.lps1
    model = lps1.build(c)
    samples, split = _eval_samples(data, 16)
    evals = []
    for sm in samples:
        found = lps1.crop_and_points(sm, c.crop_margin, c.size)
        if found is not None and (found[2][:, 2] > c.min_score).any():
            m, xw, foot = found
            evals.append((G.warp(D.on_black(xw), m, c.size), foot))

    def validate(step, models):
        if not evals:
            return {}
        preds = lps1.predict(models["lps1"], [e[0] for e in evals])
        errors = [np.linalg.norm(p[:, :2] - f[:, :2], axis=1)[f[:, 2] > c.min_score] for p, (_, f) in zip(preds, evals, strict=True)]
        err = np.concatenate(errors)
        _scores_row(
            folder, "lps1", step, {"mean_px_error": float(err.mean()), "pck_0.05": float((err < 0.05 * c.size).mean()), "eval_split": split}
        )
        return {"keypoints": Image.fromarray(_draw_points(evals[0][0], preds[0], evals[0][1], c.min_score))}

    def export(weights, folder):
        _load_trained(model, weights, "lps1").save_pretrained(folder / "model", safe_serialization=True)

    return {
        "model": model,
        "data": _stream_loader(urls, lps1.make_examples(c), s, plan),
        "loss": lps1.loss,
        "validate": validate,
        "export": export,
        "preset": cfg.preset,
    }


def _draw_points(rgb: np.ndarray, pred: np.ndarray, truth: np.ndarray, min_score: float) -> np.ndarray:
    import cv2

    out = rgb.copy()
    for x, y, sc in truth:
        if sc > min_score:
            cv2.circle(out, (int(x), int(y)), 4, (0, 255, 0), 1)
    for x, y, _ in pred:
        cv2.drawMarker(out, (int(x), int(y)), (255, 0, 0), cv2.MARKER_CROSS, 6, 1)
    return out


# -- LpS phase 2 -------------------------------------------------------------------------------
def _lps2(cfg: ShoeModelConfig, urls, data, folder: Path, s: ModuleTrain, plan: BatchPlan) -> dict[str, Any]:
    import torch

    from hoiforge.training.shoemodel import lps2

    c = cfg.lps2
    model = lps2.build(c)
    sched = lps2.scheduler(c)
    points, sizes = lps2.build_table(urls, c.min_score, cache=folder / "legs.npz")
    if len(points) == 0:
        raise TrainError(f"no person in {', '.join(data)} has both a seen foot point and a seen hip/knee/ankle: LpS2 has nothing to learn")

    def validate(step, models):
        g = torch.Generator().manual_seed(0)
        errs = []
        for i in range(min(16, len(points))):
            legs = lps2.sample(models["lps2"], sched, points[i][list(D.FOOT_IN_LEG)], float(sizes[i]), 8, c.min_score, g)
            seen = points[i][list(D.LEG_TARGET), 2] > c.min_score
            d = np.linalg.norm(legs[:, seen, :2] - points[i][list(D.LEG_TARGET)][seen, :2], axis=-1).mean(1)
            errs.append(float(d.min() / sizes[i]))
        _scores_row(folder, "lps2", step, {"best_of_8_error": float(np.mean(errs)), "error_unit": "frame size", "eval_split": "train"})
        return {}

    def export(weights, folder):
        lps2.save(_load_trained(model, weights, "lps2"), sched, folder)

    return {
        "model": model,
        "data": lambda start: lps2.TableBatches(points, sizes, c, start, plan.per_device_batch, _process_index()),
        "loss": lps2.make_loss(sched),
        "validate": validate,
        "export": export,
        "preset": cfg.preset,
        "record": {"people": len(points), "schedule": lps2.describe(sched)},
    }


# -- SW ----------------------------------------------------------------------------------------
def _sw(cfg: ShoeModelConfig, urls, data, folder: Path, s: ModuleTrain, plan: BatchPlan) -> dict[str, Any]:
    import torch

    from hoiforge.training.shoemodel import sw

    c = cfg.sw
    if c.base_model:
        base_path = sw.base_folder(c.base_model)
        base = sw.load_base(base_path)
        from hoiforge.models.weights import registry as Wt

        entry = c.base_model if c.base_model in Wt.REGISTRY else None
    else:
        entry = None
        base_path = folder / "base"
        base = sw.tiny_base(c.tiny_base, seed=s.seed)
        sw.save_base(base, base_path)
    factor = sw.vae_factor(base["vae"])
    multiple = factor * 2 ** (len(base["unet"].config.block_out_channels) - 1)
    if c.resolution % multiple:
        raise TrainError(f"SW resolution {c.resolution} must be a multiple of {multiple} for this base model")
    controlnet = sw.controlnet_from_unet(base["unet"], base["vae"])
    samples, _ = _eval_samples(data, 1)
    val = next(sw.examples(iter(samples), np.random.default_rng(0), c, cfg.lps1.min_score), None) if samples else None

    def validate(step, models):
        if val is None:
            return {}
        pipe = sw.pipeline(
            {**base, **{k: models[k] for k in ("vae", "unet", "text_encoder")}},
            models["controlnet"],
            models["controlnet"].device,
            models["unet"].dtype,
        )
        with torch.autocast(models["controlnet"].device.type, enabled=False):
            image = sw.generate(
                pipe, val["conditioning"][None], val["caption"], c.inference_steps, c.guidance_scale, torch.Generator().manual_seed(0)
            )[0]
        cond = (val["conditioning"].transpose(1, 2, 0) * 255).astype(np.uint8)
        return {"sample": Image.fromarray(np.concatenate([cond[..., :3], cond[..., 3:], image], 1))}

    def export(weights, folder):
        _load_trained(controlnet, weights, "controlnet").save_pretrained(folder / "controlnet", safe_serialization=True)

    return {
        "name": "controlnet",
        "model": controlnet,
        "frozen": {"vae": base["vae"], "unet": base["unet"], "text_encoder": base["text_encoder"]},
        "data": _stream_loader(urls, sw.make_examples(c, cfg.lps1.min_score), s, plan),
        "loss": sw.make_loss(base["tokenizer"], base["scheduler"]),
        "validate": validate,
        "export": export,
        "preset": cfg.preset,
        # Relative to the RUN (folder.parent) or a registry name: a copied RUN loads its own base (run_paths).
        "record": {"base_model": run_paths.model_record(base_path, folder.parent, entry)},
    }
