"""``hoiforge generate virtualmodel``: a trained run + product, mask, pose and prompt -> an image, backfilled.

The output keeps the product image's aspect ratio with its short side ``size`` (sides rounded to
multiples of 8, as in training); product, mask and pose are brought to that size first, and the
product's pixels inside the mask are copied into the result (Content Backfill).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from hoiforge.datasets.render import render_pose
from hoiforge.datasets.vm_sample import training_size
from hoiforge.errors import InputError
from hoiforge.training.core import run_paths, weights_path
from hoiforge.training.core.checkpoints import latest_complete
from hoiforge.training.virtualmodel.config import ConfigError, VirtualModelConfig, load_config
from hoiforge.training.virtualmodel.train import CONFIG_FILE, TRAINED, load_weights

log = logging.getLogger("hoiforge.training")
CHECKPOINT_MODEL = "model.safetensors"  # accelerate's name for the first prepared model in a checkpoint


def stage_weights(run: Path, stage: str, cfg: VirtualModelConfig) -> Path | None:
    """The best weights of a stage in a run: final EMA, final, else the newest checkpoint's (architecture checked)."""
    for ema in (True, False):
        path = weights_path(run, stage, TRAINED[stage], ema=ema)
        if path.exists():
            return run_paths.check_inside(run, path, f"the {stage} weights")
    latest = latest_complete(run, stage)  # a broken newest checkpoint is named in a warning and skipped
    if latest is None:
        return None
    folder = run_paths.check_inside(run, latest[1], f"the {stage} checkpoint")
    meta_file = folder / "hoiforge.json"
    meta = json.loads(meta_file.read_text()) if meta_file.exists() else {}
    if meta.get("architecture") and meta["architecture"] != cfg.architecture():
        raise ConfigError(f"{folder} was trained with config {meta.get('config')!r}, not {cfg.name!r} (another architecture)")
    return folder / CHECKPOINT_MODEL if (folder / CHECKPOINT_MODEL).exists() else None


def run_models(cfg: VirtualModelConfig, run: Path, allow_outside_run: bool = False) -> VirtualModelConfig:
    """The run's config with its pretrained model paths resolved by run_paths' rules (registry names kept)."""
    from hoiforge.models.weights import registry as Wt

    found = {}
    for key in ("stable_diffusion", "dino"):
        value = getattr(cfg.models, key)
        if not value or value in Wt.REGISTRY:
            continue
        what = f"{run / CONFIG_FILE} models.{key}"
        if Path(value).is_absolute():
            found[key] = str(run_paths.model_folder({"outside": value}, run, what, allow_outside_run))
        else:  # relative: to the run, not to wherever generate is started
            found[key] = str(run_paths.inside(run, value, what))
    return cfg.model_copy(update={"models": cfg.models.model_copy(update=found)}) if found else cfg


def load_run(checkpoint: Path, allow_outside_run: bool = False):
    """(config, pipeline) of a run directory (or one of its checkpoint folders)."""
    import torch

    from hoiforge.models.device import device_dtype
    from hoiforge.training.virtualmodel.components import build_components, ddim_scheduler
    from hoiforge.training.virtualmodel.conditioning import TextEncoder
    from hoiforge.training.virtualmodel.model import VirtualModelBranches
    from hoiforge.training.virtualmodel.pipeline import VirtualModelPipeline

    run = Path(checkpoint)
    if (run / "hoiforge.json").exists() and run.parent.name == "checkpoints":
        run = run.parent.parent
    if not (run / CONFIG_FILE).is_file():
        raise ConfigError(
            f"{checkpoint} is not a VirtualModel run (no {CONFIG_FILE}); pass the --out folder of `hoiforge train virtualmodel`"
        )
    cfg = run_models(load_config(run / CONFIG_FILE), run, allow_outside_run)
    branches_file = stage_weights(run, "branches", cfg)
    if branches_file is None:
        raise ConfigError(f"{run} holds no trained branches; run `hoiforge train virtualmodel --stage branches --out {run}` first")
    comp = build_components(cfg)
    base_file = stage_weights(run, "base", cfg)
    if base_file is not None:
        load_weights(comp.unet, base_file, cfg)
    else:
        log.warning("%s has no stage-1 weights: the base UNet is the config's (%s)", run, cfg.models.source)
    branches = VirtualModelBranches(comp.unet, comp.branch_spec(cfg))
    load_weights(branches, branches_file, cfg)

    device, dtype = device_dtype(None, None)
    for module in (comp.unet, comp.vae, comp.text_encoder, comp.dino, branches):
        module.to(device).eval().requires_grad_(False)
        if dtype != torch.float32:
            module.to(dtype=dtype)
    text = TextEncoder(comp.tokenizer, comp.text_encoder, cfg.models.text_chunks)
    return cfg, VirtualModelPipeline(comp.unet, comp.vae, text, comp.dino, branches, ddim_scheduler(comp), comp.dino_image_size)


def _open(path: Path, what: str) -> Image.Image:
    try:
        img = Image.open(path, formats=["PNG", "JPEG", "WEBP"])
        img.load()
        return img
    except FileNotFoundError:
        raise InputError(f"{what} {path} does not exist") from None
    except (OSError, Image.DecompressionBombError) as e:
        raise InputError(f"{what} {path} is not a readable PNG/JPEG/WebP image ({e})") from None


def read_inputs(product_path: Path, mask_path: Path | None, pose_path: Path, size: int):
    """(product, mask, pose) at the output size: HxWx3 uint8, HxW bool, HxWx3 uint8."""
    img = _open(product_path, "product")
    w, h = img.size
    if mask_path is not None:
        m = _open(mask_path, "mask")
        if m.size != img.size:
            raise InputError(
                f"mask {mask_path} is {m.size[0]}x{m.size[1]} but product {product_path} is {w}x{h}; give a mask of the product's size"
            )
        mask = np.asarray(m.convert("L")) > 127
    elif img.mode in ("RGBA", "LA") or "transparency" in img.info:
        mask = np.asarray(img.convert("RGBA"))[..., 3] > 127
    else:
        raise InputError(f"product {product_path} has no alpha channel; pass its mask with --mask")
    if not mask.any():
        raise InputError(f"the mask of {product_path} is empty; the product must cover some pixels")
    product = np.asarray(img.convert("RGB"))

    out_w, out_h = training_size(w, h, size)
    if (out_w, out_h) != (w, h):
        product = cv2.resize(product, (out_w, out_h), interpolation=cv2.INTER_AREA if out_w < w else cv2.INTER_LINEAR)
        mask = cv2.resize(mask.astype(np.uint8), (out_w, out_h), interpolation=cv2.INTER_NEAREST).astype(bool)

    if pose_path.suffix.lower() == ".json":
        pose = render_pose(_keypoints(pose_path, out_w / w, out_h / h), out_h, out_w)
    else:
        pose = np.asarray(_open(pose_path, "pose").convert("RGB"))
        if pose.shape[:2] != (out_h, out_w):
            pose = cv2.resize(pose, (out_w, out_h), interpolation=cv2.INTER_AREA if pose.shape[1] > out_w else cv2.INTER_LINEAR)
    return product, mask, pose


def _keypoints(path: Path, sx: float, sy: float) -> list[np.ndarray]:
    """Persons' 133 x [x, y, score] in product pixels from a json: a sample annotation, a list of persons, or one person."""
    try:
        doc = json.loads(path.read_text())
        if isinstance(doc, dict):
            persons = [p["keypoints"] for p in doc.get("persons", []) if p.get("keypoints")]
        elif len(doc) == 133 and not isinstance(doc[0][0], (list, dict)):
            persons = [doc]  # one person
        else:
            persons = [p["keypoints"] if isinstance(p, dict) else p for p in doc]
        arrays = [np.asarray(p, np.float64).reshape(133, 3) for p in persons]
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        raise InputError(
            f"pose {path}: expected a json of 133 x [x, y, score] keypoints (an annotation with persons, a list of persons, or one person)"
        ) from None
    for a in arrays:
        a[:, 0] *= sx
        a[:, 1] *= sy
    return arrays


def generate_virtualmodel(
    checkpoint: Path,
    product: Path,
    mask: Path | None,
    pose: Path,
    prompt: str,
    out: Path,
    steps: int | None = None,
    cfg_scale: float | None = None,
    seed: int = 0,
    size: int = 512,
    allow_outside_run: bool = False,
) -> Path:
    from hoiforge.training.virtualmodel.pipeline import backfill

    if size < 8 or size % 8:
        raise InputError(f"--size must be a positive multiple of 8, got {size}")
    product_px, mask_px, pose_px = read_inputs(product, mask, pose, size)  # bad inputs fail before models load
    cfg, pipe = load_run(checkpoint, allow_outside_run)
    h, w = mask_px.shape
    image = pipe(
        prompt,
        height=h,
        width=w,
        product=product_px,
        mask=mask_px,
        pose=pose_px,
        steps=steps or cfg.generate.steps,
        guidance=cfg.generate.cfg if cfg_scale is None else cfg_scale,
        seed=seed,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(backfill(image, product_px, mask_px)).save(out)
    return out
