"""The whole ShoeModel at inference: shoe photo -> segment -> WD -> LpS phase 1 -> LpS phase 2 -> X_p -> SW -> backfill.

1. The shoe: an image with transparency gives its own mask (alpha >= 128); otherwise the products
   service (models/segment_service: detector + segmenter, the embedded ones by default) segments
   it, and every region it finds counts as shoe.
2. Layout (optional): ``move:dx,dy`` shifts the shoe by whole pixels, ``rotate:deg`` turns it
   about its centre (resampled once); the laid-out shoe is the input from then on.
3. WD on the square shoe-pair crop (through ``SegformerWearSegmenter``, the backend the
   wear_labels stage uses) -> the wearable area; X_w = the shoe without it.
4. LpS phase 1 on the 256 crop of X_w -> the 8 foot points C_p (crop -> frame pixels).
5. LpS phase 2 samples ``n`` leg poses (hips, knees, ankles) for C_p, one per output.
6. X_p: the 12 points drawn at the photo's size (hips, knees from phase 2; ankles from phase 1
   where it saw them, else phase 2; toes and heels from phase 1).
7. SW: concat(X_w, X_p) and the prompt -> an image at the SW resolution (short side), resized
   back to the photo's size.
8. Backfill: X_w's visible pixels are copied into every output, so they equal the input's.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageOps

from hoiforge.errors import HoiforgeError, InputError
from hoiforge.training.core import run_paths
from hoiforge.training.shoemodel import data as D
from hoiforge.training.shoemodel import geometry as G
from hoiforge.training.shoemodel.config import MODULES, GenerateConfig, LpS1Config, LpS2Config, SWConfig, WDConfig
from hoiforge.training.shoemodel.train import RECORD

MAX_PIXELS = 40_000_000
ARTIFACTS = {
    "wd": "model/model.safetensors",
    "lps1": "model/model.safetensors",
    "lps2": "model/diffusion_pytorch_model.safetensors",
    "sw": "controlnet",
}


class MissingModule(HoiforgeError):
    """A ShoeModel run directory without one of the four trained modules."""


class NoShoe(InputError):
    """The shoe image holds no shoe the tool can find."""


@dataclass
class Shoe:
    rgb: np.ndarray  # H x W x 3 uint8
    mask: np.ndarray  # H x W bool: the shoe pixels
    found: str  # how the mask was found, for the user


@dataclass
class Generated:
    images: list[np.ndarray]
    legs: list[np.ndarray]  # X_p per image
    visible: np.ndarray  # the backfilled pixels
    info: dict[str, Any] = field(default_factory=dict)


# -- the shoe photo ----------------------------------------------------------------------------
def read_shoe(path: str | Path, gen: GenerateConfig) -> Shoe:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"shoe image {path} does not exist")
    try:
        img = Image.open(path)
        if img.width * img.height > MAX_PIXELS:
            raise InputError(f"shoe image {path} is {img.width}x{img.height}: over the {MAX_PIXELS // 1_000_000} MP limit")
        img = ImageOps.exif_transpose(img)
        img.load()
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001 - any decoder error is the input's
        raise InputError(f"shoe image {path} is not a readable image ({type(e).__name__}: {e})") from None
    has_alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
    if has_alpha:
        rgba = np.asarray(img.convert("RGBA"))
        alpha = rgba[..., 3]
        if (alpha < 255).any():
            mask = alpha >= 128
            if not mask.any():
                raise NoShoe(f"no shoe found in {path}: its alpha channel is transparent everywhere")
            return Shoe(
                np.ascontiguousarray(rgba[..., :3]), mask, f"alpha channel: {int(mask.sum())} shoe pixels ({mask.mean():.1%} of the image)"
            )
    rgb = np.ascontiguousarray(np.asarray(img.convert("RGB")))
    return segment_shoe(rgb, gen, str(path))


def segment_shoe(rgb: np.ndarray, gen: GenerateConfig, name: str) -> Shoe:
    from hoiforge.models.segment_service import ProductSegmenter

    service = ProductSegmenter(gen.detector, gen.segmenter, gen.detector_options, gen.segmenter_options)
    products = service.detect([rgb], gen.prompt)[0]
    masks = [p.mask for p in products if p.mask is not None and p.mask.any()]
    backend = f"products backend {gen.detector}/{gen.segmenter} (prompt {gen.prompt!r})"
    if not masks:
        raise NoShoe(
            f"no shoe found in {name}: no alpha channel and the {backend} found nothing; give a PNG with the shoe on a transparent background"
        )
    mask = np.logical_or.reduce(masks)
    labels = ", ".join(sorted({p.label for p in products}))
    return Shoe(
        rgb, mask, f"no alpha channel: segmented with the {backend}: {len(masks)} region(s) [{labels}], {mask.mean():.1%} of the image"
    )


# -- layout ------------------------------------------------------------------------------------
LAYOUT = re.compile(r"^(move):(-?\d+),(-?\d+)$|^(rotate):(-?\d+(?:\.\d+)?)$")


def parse_layout(text: str | None) -> tuple[str, tuple[float, ...]] | None:
    if not text:
        return None
    m = LAYOUT.match(text.strip())
    if not m:
        raise InputError(f"--layout {text!r}: use move:DX,DY (whole pixels) or rotate:DEGREES")
    if m.group(1):
        return "move", (int(m.group(2)), int(m.group(3)))
    return "rotate", (float(m.group(5)),)


def apply_layout(shoe: Shoe, layout: tuple[str, tuple[float, ...]] | None) -> Shoe:
    if layout is None:
        return shoe
    h, w = shoe.mask.shape
    kind, args = layout
    if kind == "move":
        m = np.array([[1, 0, args[0]], [0, 1, args[1]]], np.float64)
        # Whole-pixel shifts: nearest sampling moves every pixel unchanged.
        rgb, mask = G.warp(shoe.rgb, m, (w, h), nearest=True), G.warp(shoe.mask.astype(np.uint8), m, (w, h), nearest=True) > 0
    else:
        ys, xs = np.nonzero(shoe.mask)
        m = G.rotation_matrix((xs.mean(), ys.mean()), args[0])
        rgb, mask = G.warp(shoe.rgb, m, (w, h)), G.warp(shoe.mask.astype(np.uint8), m, (w, h), nearest=True) > 0
    if mask.sum() < shoe.mask.sum() * 0.98:
        raise InputError(f"--layout {kind}:{','.join(f'{a:g}' for a in args)} moves the shoe out of the {w}x{h} picture")
    return Shoe(rgb, mask, shoe.found + f"; layout {kind} {', '.join(f'{a:g}' for a in args)}")


# -- the trained run ---------------------------------------------------------------------------
def check_run(run: Path) -> dict[str, dict[str, Any]]:
    """Each module's record; MissingModule naming every module that is not there and how to train it."""
    records, missing = {}, []
    for module in MODULES:
        folder = run / module
        if not (folder / RECORD).is_file() or not (folder / ARTIFACTS[module]).exists():
            missing.append(module)
            continue
        records[module] = json.loads((folder / RECORD).read_text())
    if missing:
        data = next((" ".join(f"--data {d}" for d in r.get("data", [])) for r in records.values()), "--data OUT")
        config = next((r["preset"] for r in records.values() if r.get("preset") in ("tiny", "paper")), "paper")
        commands = "; ".join(f"hoiforge train shoemodel --module {m} {data} --config {config} --out {run}" for m in missing)
        raise MissingModule(f"{run} has no trained {', '.join(missing)} module{'s' if len(missing) > 1 else ''}: train with {commands}")
    return records


def _inference_settings(record: dict) -> dict:
    """A module's recorded settings without its training ones (generation needs none, and records written
    before the global-batch settings hold keys they no longer accept)."""
    return {k: v for k, v in record["config"].items() if k != "train"}


class ShoeModel:
    def __init__(self, run: str | Path, device: str | None = None, dtype: str | None = None, allow_outside_run: bool = False):
        import torch
        from diffusers import ControlNetModel
        from transformers import VitPoseForPoseEstimation
        from transformers.utils import logging as hf_logging

        from hoiforge.models.device import device_dtype
        from hoiforge.models.wd_segmenter import SegformerWearSegmenter
        from hoiforge.training.shoemodel import lps2, sw

        hf_logging.disable_progress_bar()
        self.run = Path(run)
        if not self.run.is_dir():
            raise MissingModule(
                f"{self.run} does not exist: train the four modules into it with `hoiforge train shoemodel --module wd|lps1|lps2|sw ... --out {self.run}`"
            )
        self.records = check_run(self.run)
        from hoiforge.training.shoemodel import config_check

        config_check.check_run(self.run, self.records)  # a received RUN's settings before anything is built
        record = self.run / "sw" / RECORD
        base_dir = run_paths.model_folder(self.records["sw"].get("base_model"), self.run, f"{record} base_model", allow_outside_run)
        if not (base_dir / "unet").is_dir():
            raise MissingModule(f"the SW base model {base_dir} recorded in {record} is not there")
        config_check.check_folder(base_dir, f"SW base model {base_dir}")
        self.tiny = any(r.get("tiny") for r in self.records.values())
        self.device, self.dtype = device_dtype(device, dtype)
        self.wd_cfg = WDConfig.model_validate(_inference_settings(self.records["wd"]))
        self.lps1_cfg = LpS1Config.model_validate(_inference_settings(self.records["lps1"]))
        self.lps2_cfg = LpS2Config.model_validate(_inference_settings(self.records["lps2"]))
        self.sw_cfg = SWConfig.model_validate(_inference_settings(self.records["sw"]))
        self.gen_cfg = GenerateConfig.model_validate(self.records["sw"].get("generate", {}))
        for module in MODULES:  # a received RUN's folders must not lead out of it (symlinks)
            run_paths.check_inside(self.run, self.run / module / ARTIFACTS[module], f"the {module} module")
        self.wd = SegformerWearSegmenter(str(self.run / "wd" / "model"), device=str(self.device), dtype="float32")
        self.lps1 = VitPoseForPoseEstimation.from_pretrained(self.run / "lps1" / "model").to(self.device).eval()
        self.lps2, self.lps2_sched = lps2.load(self.run / "lps2")
        self.lps2 = self.lps2.to(self.device).eval()
        base = sw.load_base(base_dir)
        controlnet = ControlNetModel.from_pretrained(self.run / "sw" / "controlnet")
        self.pipe = sw.pipeline(base, controlnet, self.device, self.dtype)
        self.factor = sw.vae_factor(base["vae"]) * 2 ** (len(base["unet"].config.block_out_channels) - 1)
        self._torch = torch

    def generate(self, shoe: Shoe, prompt: str, n: int, seed: int = 0, say: Callable[[str], None] = print) -> Generated:
        from hoiforge.training.shoemodel import lps1, lps2, sw

        torch = self._torch
        h, w = shoe.mask.shape
        generator = torch.Generator().manual_seed(seed)
        # WD on the square shoe-pair crop, labels mapped back to the frame.
        shoe_rgba = np.dstack([np.where(shoe.mask[..., None], shoe.rgb, 0), shoe.mask.astype(np.uint8) * 255]).astype(np.uint8)
        box = G.square_box(shoe.mask, self.wd_cfg.crop_margin)
        m = G.crop_matrix(box, self.wd.size)
        crop_rgba = G.warp(shoe_rgba, m, self.wd.size)
        pred = self.wd.predict([crop_rgba[..., :3]], valid=[crop_rgba[..., 3] > 0])[0]
        labels = G.warp(pred.labels, G.invert(m), (w, h), nearest=True)
        wearable = shoe.mask & (labels == 2)
        visible = shoe.mask & ~wearable
        xw = shoe_rgba.copy()
        xw[~visible] = 0
        # LpS phase 1: C_p in frame pixels.
        box1 = G.square_box(shoe.mask, self.lps1_cfg.crop_margin)
        m1 = G.crop_matrix(box1, self.lps1_cfg.size)
        crop = G.warp(D.on_black(xw), m1, self.lps1_cfg.size)
        c_p = G.transform_points(lps1.predict(self.lps1, [crop])[0], G.invert(m1))
        seen = c_p[:, 2] > self.gen_cfg.foot_min_score
        if not seen.any():
            say(f"note: LpS phase 1 is unsure of every foot point (highest heatmap peak {c_p[:, 2].max():.3f}); using its best guesses")
            seen[:] = True
        foot = np.column_stack([c_p[:, :2], seen.astype(np.float64)])
        # LpS phase 2: n leg poses for these feet.
        size = float(max(h, w))
        legs = lps2.sample(self.lps2, self.lps2_sched, foot, size, n, 0.5, generator)
        xps, points = [], []
        for leg6 in legs:
            leg = np.zeros((12, 3))
            leg[:6] = leg6
            leg[4:12][seen] = foot[seen]  # phase 1's ankles and foot points where it saw them
            points.append(leg)
            xps.append(D.render_leg([leg], h, w, min_score=0.5))
        # SW at its resolution, then back to the photo's size.
        gw, gh = self._generation_size(w, h)
        xw_small = cv2.resize(xw, (gw, gh), interpolation=cv2.INTER_AREA)
        conds = np.stack([sw.condition(xw_small, cv2.resize(xp, (gw, gh), interpolation=cv2.INTER_AREA)) for xp in xps])
        outs = sw.generate(self.pipe, conds, prompt, self.sw_cfg.inference_steps, self.sw_cfg.guidance_scale, generator)
        images = [sw.backfill(cv2.resize(o, (w, h), interpolation=cv2.INTER_CUBIC), shoe.rgb, visible) for o in outs]
        info = {
            "shoe": shoe.found,
            "size": [w, h],
            "generation_size": [gw, gh],
            "wearable_pixels": int(wearable.sum()),
            "visible_pixels": int(visible.sum()),
            "foot_points": [[round(float(v), 2) for v in p] for p in c_p],
            "legs": [[[round(float(v), 2) for v in p] for p in leg] for leg in points],
            "seed": seed,
            "prompt": prompt,
            "tiny": self.tiny,
        }
        return Generated(images, xps, visible, info)

    def _generation_size(self, w: int, h: int) -> tuple[int, int]:
        """The photo's aspect at SW's resolution on the short side, each side a multiple of what the UNet needs."""
        f = self.sw_cfg.resolution / min(w, h)
        q = self.factor
        return max(q, int(round(w * f / q)) * q), max(q, int(round(h * f / q)) * q)


def write(result: Generated, out: str | Path) -> list[Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (image, leg) in enumerate(zip(result.images, result.legs, strict=True)):
        Image.fromarray(image).save(out / f"{i}.png")
        Image.fromarray(leg).save(out / f"leg_{i}.png")
        paths.append(out / f"{i}.png")
    (out / "shoemodel.json").write_text(json.dumps(result.info, indent=2))
    return paths
