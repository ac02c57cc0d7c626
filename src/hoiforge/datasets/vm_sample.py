"""One HoIHuman sample turned into VirtualModel training arrays (numpy only; the torch loader is loader.py).

Geometry, shared with the precompute stage: the image is resized so its short side is
``resolution`` with each side rounded to a multiple of 8 (``training_size``), then a square of
``resolution`` is cropped at offsets that are multiples of 8, so a precomputed latent of the full
resize crops at exactly offset / 8. Image, pose, edges, mask and keypoints go through the same
resize and crop.

Per sample and per iteration one product is picked at random: its whole mask m (from its RLE in
the json when present, else ``mask.png == mask_index``), its edges e (Canny 75/100 of the crop at
training resolution, inside m: what generation computes from the product at output size, so the
model sees 1-px edges at 255 in both; the build's ``edge.png`` at source resolution would shrink
to faint grey lines), its close view v
(a tile of ``views.jpg`` when present, else the square ``close_view`` box cropped from the image
with white padding). Stage 1 (``humans``) instead crops one person's square close view.

Members used when present and matching the configured models (``ann["precompute"]`` ids):
``latent.npy`` (cropped), ``text.npy``, ``dino.npy`` (the chosen product's row).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from hoiforge.datasets.bounds import DEFAULT_LIMITS, MemberLimits, SampleRejected, check_sizes, image_size, load_json
from hoiforge.datasets.contract import IMAGE_EXTENSIONS
from hoiforge.datasets.images import to_rgb
from hoiforge.datasets.masks import MaskError, decode_rle, product_rle
from hoiforge.datasets.precomputed import latent_image_size
from hoiforge.datasets.render import render_pose
from hoiforge.errors import HoiforgeError

# Which stage writes each member a config may need (for the error that names it).
WRITTEN_BY = {
    "pose.png": "pose",
    "mask.png": "products",
    "txt": "caption",
    "latent.npy": "precompute",
    "text.npy": "precompute",
    "dino.npy": "precompute",
}
WHITE = (255, 255, 255)
CANNY_LOW, CANNY_HIGH = 75, 100  # the paper's thresholds for e (the edges stage's defaults)


class ShardDataError(HoiforgeError):
    """A build output cannot feed the trainer (no kept samples, a member the config needs is missing)."""


@dataclass(frozen=True)
class SampleSpec:
    """What the trainer needs from each sample."""

    mode: str = "branches"  # "branches" (stage 2: products and conditions) or "humans" (stage 1: person crops)
    resolution: int = 512
    view_size: int = 224  # close views are resized to this (the DINOv2 input)
    crop: str = "random"  # or "center"
    pose: bool = True  # the IB needs pose and edges
    pose_source: str = "render"  # "render": draw the crop's keypoints at training size; "member": resize and crop pose.png
    edges: bool = True
    person_margin: float = 0.1
    product_margin: float = 0.25
    precomputed: dict[str, str] = field(default_factory=dict)  # vae / text_encoder / dino ids the models accept

    def required_members(self) -> list[str]:
        if self.mode == "humans":
            return ["txt"]
        need = ["mask.png", "txt"]
        if self.pose:
            need.append("pose.png")
        return need  # edges are computed from the crop (product_edges)


def training_size(width: int, height: int, short: int) -> tuple[int, int]:
    """(W, H): short side ``short``, aspect kept, each side rounded to a multiple of 8 — the precompute
    stage's rule, so a precomputed latent crops exactly (one function for both sides)."""
    return latent_image_size(width, height, short)


def canny(rgb: np.ndarray, low: int = CANNY_LOW, high: int = CANNY_HIGH) -> np.ndarray:
    """Canny edges (uint8 0/255) of an RGB image: the one edge detector of the build, training and generation."""
    return cv2.Canny(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), low, high)


def product_edges(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """VirtualModel's e: Canny 75/100 of ``rgb`` at the size the model sees, kept inside the product mask m.
    The training loader calls it on the crop, generation on the product at output size."""
    return np.where(mask.astype(bool), canny(rgb), 0).astype(np.uint8)


def crop_offset(size: int, crop: int, rng: np.random.Generator | None) -> int:
    """Offset (a multiple of 8) of a ``crop`` window in ``size``: random with rng, else centred."""
    room = max(0, (size - crop) // 8)
    return 8 * (int(rng.integers(0, room + 1)) if rng is not None else room // 2)


def _same_id(a: str | None, b: str | None) -> bool:
    # Ids are registry names, hub ids or paths: compare their last path component.
    return bool(a) and bool(b) and Path(str(a)).name.lower() == Path(str(b)).name.lower()


def image_member(sample: dict[str, Any]) -> str | None:
    return next((ext for ext in IMAGE_EXTENSIONS if ext in sample), None)


def caption_of(sample: dict[str, Any], ann: dict[str, Any]) -> str | None:
    if "txt" in sample:
        return sample["txt"].decode("utf-8") if isinstance(sample["txt"], bytes) else str(sample["txt"])
    cap = ann.get("caption")
    return cap.get("text") if isinstance(cap, dict) else cap


def missing_members(sample: dict[str, Any], spec: SampleSpec, ann: dict[str, Any] | None = None) -> list[str]:
    """Members ``spec`` needs that this raw sample lacks (after the fallbacks described in the module docstring);
    ``ann``: the sample's parsed json when the caller has it."""
    if image_member(sample) is None:
        return ["jpg"]
    if "json" not in sample:
        return ["json"]
    ann = json.loads(sample["json"]) if ann is None else ann
    missing = []
    for member in spec.required_members():
        if member == "txt" and caption_of(sample, ann):
            continue
        if member == "mask.png" and ann.get("products") and all("rle" in p for p in ann["products"]):
            continue
        if member == "pose.png" and spec.pose_source == "render" and any(p.get("keypoints") for p in ann.get("persons", [])):
            continue
        if member not in sample:
            missing.append(member)
    return missing


# cv2.imdecode flags for a JPEG decoded at 1/scale (libjpeg's DCT scaling), straight to RGB, EXIF ignored as PIL does.
_JPEG_FLAGS = {
    s: f | cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION
    for s, f in ((1, 0), (2, cv2.IMREAD_REDUCED_GRAYSCALE_2), (4, cv2.IMREAD_REDUCED_GRAYSCALE_4), (8, cv2.IMREAD_REDUCED_GRAYSCALE_8))
}  # (the REDUCED_GRAYSCALE bits are the scale alone; IMREAD_COLOR_RGB makes it colour)


def jpeg_scale(size: tuple[int, int], at_least: tuple[int, int] | None) -> int:
    """The DCT scale (1, 2, 4 or 8) PIL's ``draft`` picks: the largest that keeps the image >= ``at_least``."""
    if at_least is None:
        return 1
    fit = min(size[0] // max(1, at_least[0]), size[1] // max(1, at_least[1]))
    return next((s for s in (8, 4, 2) if fit >= s), 1)


def decode_image(data: bytes, at_least: tuple[int, int] | None = None) -> np.ndarray:
    """RGB uint8; a JPEG is decoded at the smallest DCT scale still >= ``at_least`` (much faster for big photos).

    An RGB or greyscale JPEG goes through OpenCV's decoder (the same libjpeg-turbo as PIL's, pixel-identical
    output, see tests/test_vm_loader.py) straight into an RGB array: PIL's path costs a second full-size copy
    (``tobytes``) and ~35% more CPU per photo. Anything else (PNG/WebP with alpha, CMYK JPEG) goes through PIL.
    """
    with Image.open(io.BytesIO(data)) as img:  # header only: format, mode and size
        if img.format == "JPEG" and img.mode in ("RGB", "L"):
            arr = cv2.imdecode(np.frombuffer(data, np.uint8), _JPEG_FLAGS[jpeg_scale(img.size, at_least)])
            if arr is not None:
                return arr
        if at_least is not None and img.format == "JPEG":
            img.draft("RGB", at_least)
        return np.asarray(to_rgb(img))  # a kept alpha channel (png/webp output) on white, as the stages saw it


def _decode_png(data: bytes, flags: int) -> np.ndarray:
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if arr is None:
        raise ValueError("undecodable PNG member")
    return arr


def _resize(arr: np.ndarray, size: tuple[int, int], fast: bool = False) -> np.ndarray:
    """``arr`` at ``size`` (W, H): INTER_AREA when shrinking, or with ``fast`` resize_crop's policy (an
    integer INTER_AREA pre-shrink when shrinking by 2 or more, then bilinear): OpenCV's INTER_AREA by a
    non-integer factor costs 5-8x more (about 1 ms per 224-px close view, a tenth of a sample's decode)."""
    if arr.shape[1] == size[0] and arr.shape[0] == size[1]:
        return arr
    shrink = arr.shape[1] > size[0]
    if not (fast and shrink):
        return cv2.resize(arr, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    h, w = arr.shape[:2]
    factor = int(min(w / size[0], h / size[1]))
    if factor >= 2:
        arr = cv2.resize(arr, (w // factor, h // factor), interpolation=cv2.INTER_AREA)
    return cv2.resize(arr, size, interpolation=cv2.INTER_LINEAR)


def resize_crop(arr: np.ndarray, size: tuple[int, int], x0: int, y0: int, side: int) -> np.ndarray:
    """The ``side`` square at (x0, y0) of ``arr`` resized to ``size`` (W, H), computing only that square.

    The geometry is cv2.resize's (pixel centres: x_src = (x_dst + 0.5) / scale - 0.5), so the result
    lines up with a crop of the full resize, which is what a precomputed latent was encoded from.
    Bilinear sampling, after an integer INTER_AREA pre-shrink when shrinking by 2 or more (no aliasing).
    """
    h, w = arr.shape[:2]
    factor = int(min(w / size[0], h / size[1]))
    if factor >= 2:
        arr = cv2.resize(arr, (w // factor, h // factor), interpolation=cv2.INTER_AREA)
        # INTER_AREA by an integer factor keeps pixel centres on x_src = factor x (x_dst + 0.5) - 0.5
        w, h = w / factor, h / factor
    sx, sy = size[0] / w, size[1] / h
    m = np.array([[sx, 0, 0.5 * sx - 0.5 - x0], [0, sy, 0.5 * sy - 0.5 - y0]], np.float64)
    return cv2.warpAffine(arr, m, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def square_box(box, margin: float = 0.0) -> tuple[float, float, float, float]:
    """Square around a box's centre, side = max(w, h) x (1 + 2 margin)."""
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    half = max(x1 - x0, y1 - y0) * (1 + 2 * margin) / 2
    return cx - half, cy - half, cx + half, cy + half


def crop_padded(image: np.ndarray, box, out_size: int, scale: float = 1.0, fast: bool = False) -> np.ndarray:
    """``box`` (source pixels x ``scale``) cut from ``image``, white where it leaves the image, resized to out_size^2
    (``fast``: see ``_resize``)."""
    x0, y0, x1, y1 = (int(round(v * scale)) for v in box)
    x1, y1 = max(x1, x0 + 1), max(y1, y0 + 1)
    h, w = image.shape[:2]
    pad = ((max(0, -y0), max(0, y1 - h)), (max(0, -x0), max(0, x1 - w)), (0, 0))
    cut = image[max(0, y0) : min(h, y1), max(0, x0) : min(w, x1)]
    if any(p for pair in pad[:2] for p in pair):
        cut = np.pad(cut, pad, constant_values=255)
    return _resize(np.ascontiguousarray(cut), (out_size, out_size), fast)


def product_mask(ann: dict[str, Any], index: int, instance_map: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    """HxW bool mask of products[index]: its whole RLE when present (it must be ``shape``, the image's
    (height, width): masks.decode_rle), else its pixels of the instance map."""
    rle = product_rle(product := ann["products"][index])
    if rle is not None:
        try:
            return decode_rle(rle, *shape)
        except MaskError as e:
            raise SampleRejected(f"products[{index}]: {e}") from None
    if instance_map is None:
        raise ShardDataError("sample has neither products[i].rle nor mask.png")
    return instance_map == product.get("mask_index", index + 1)


def mask_u8(mask: np.ndarray) -> np.ndarray:
    """A bool mask as C-ordered uint8 0/255. An RLE decodes column-major (Fortran order), which OpenCV
    would first copy to row order with numpy's strided copy (~0.8 ms for 1 MP, 8% of a sample);
    cv2.transpose of its transpose gives the same array ~10x faster."""
    u8 = mask.view(np.uint8) if mask.dtype == bool else mask.astype(np.uint8)
    if mask.ndim == 2 and not mask.flags.c_contiguous and mask.flags.f_contiguous:
        u8 = cv2.transpose(u8.T)
    return u8 * np.uint8(255)


def close_view(ann: dict[str, Any], index: int, image: np.ndarray, scale: float, views: bytes | None, size: int, margin: float):
    """The product's close view v, size x size RGB."""
    info = ann.get("views") or {}
    if views is not None and info.get("count", 0) > index:
        strip = decode_image(views)
        tile = info.get("size", strip.shape[0])
        return _resize(np.ascontiguousarray(strip[:, index * tile : (index + 1) * tile]), (size, size), fast=True)
    product = ann["products"][index]
    box = square_box(product["close_view"]) if product.get("close_view") else square_box(product["box"], margin)
    # The view only feeds DINOv2 (224 px): the fast shrink is within a few grey levels of INTER_AREA (tested).
    return crop_padded(image, box, size, scale, fast=True)


def person_view_box(person: dict[str, Any], margin: float):
    return square_box(person["close_view"]) if person.get("close_view") else square_box(person["box"], margin)


def check_bounds(sample: dict[str, Any], ann: dict[str, Any] | None, limits: MemberLimits = DEFAULT_LIMITS) -> tuple[int, int] | None:
    """SampleRejected unless a raw sample is within ``limits`` (bounds.py): member sizes, every image member's
    pixel count (from its header), and the json's image size equal to the image's; returns the image's (W, H)."""
    check_sizes(sample, limits)
    for ext in sample:
        if not ext.startswith("__") and ext.rsplit(".", 1)[-1] in ("png", "jpg", "webp") and ext not in IMAGE_EXTENSIONS:
            image_size(sample[ext], ext, limits)  # pose/mask/edge/views members: decoded later at their own size
    ext = image_member(sample)
    if ext is None:
        return None
    size = image_size(sample[ext], ext, limits)
    info = (ann or {}).get("image") or {}
    declared = (info.get("width"), info.get("height"))
    if declared != (None, None) and declared != size:
        raise SampleRejected(f"json says the image is {str(declared[0])[:12]}x{str(declared[1])[:12]}, it is {size[0]}x{size[1]}")
    return size


class SampleDecoder:
    """Raw webdataset sample (member bytes by extension) -> dict of numpy arrays for the trainer."""

    def __init__(self, spec: SampleSpec, limits: MemberLimits = DEFAULT_LIMITS):
        self.spec, self.limits = spec, limits

    def __call__(self, sample: dict[str, Any], rng: np.random.Generator | None) -> dict[str, Any]:
        # Parsed once, for the checks and the decode; bounded and finite (a received shard is untrusted).
        ann = load_json(sample["json"], self.limits) if "json" in sample else None
        check_bounds(sample, ann, self.limits)
        missing = missing_members(sample, self.spec, ann)
        if missing:
            raise ShardDataError(f"sample {sample.get('__key__')} lacks {', '.join(missing)}")
        if self.spec.mode == "humans":
            return self._human(sample, ann, rng)
        return self._products(sample, ann, rng)

    def _source_size(self, ann: dict[str, Any], image: np.ndarray) -> tuple[int, int]:
        info = ann.get("image") or {}
        return int(info.get("width") or image.shape[1]), int(info.get("height") or image.shape[0])

    def _precomputed(self, ann: dict[str, Any], what: str) -> bool:
        done = ann.get("precompute") or {}
        wanted = self.spec.precomputed.get(what)
        return _same_id(done.get(what), wanted) and (what != "vae" or done.get("resolution") == self.spec.resolution)

    def _text(self, sample, ann) -> np.ndarray | None:
        if "text.npy" in sample and self._precomputed(ann, "text_encoder"):
            return np.load(io.BytesIO(sample["text.npy"]), allow_pickle=False)
        return None

    def _human(self, sample, ann, rng) -> dict[str, Any]:
        s = self.spec
        persons = ann.get("persons") or []
        if not persons:
            raise ShardDataError(f"sample {sample.get('__key__')} has no persons")
        person = persons[int(rng.integers(len(persons))) if rng is not None else 0]
        box = person_view_box(person, s.person_margin)
        side = box[2] - box[0]
        raw = sample[image_member(sample)]
        image = decode_image(raw, at_least=self._draft_size(ann, s.resolution / max(side, 1)))
        src_w, _ = self._source_size(ann, image)
        out = {
            "__key__": sample.get("__key__"),
            "caption": caption_of(sample, ann),
            "image": crop_padded(image, box, s.resolution, image.shape[1] / src_w),
        }
        text = self._text(sample, ann)
        if text is not None:
            out["text"] = text
        return out

    def _draft_size(self, ann: dict[str, Any], scale: float) -> tuple[int, int] | None:
        info = ann.get("image") or {}
        if not info.get("width"):
            return None
        return int(info["width"] * scale) + 1, int(info["height"] * scale) + 1

    def _products(self, sample, ann, rng) -> dict[str, Any]:
        s = self.spec
        products = ann.get("products") or []
        if not products:
            raise ShardDataError(f"sample {sample.get('__key__')} has no products")
        index = int(rng.integers(len(products))) if rng is not None else 0

        info = ann.get("image") or {}
        if info.get("width"):
            src_w, src_h = int(info["width"]), int(info["height"])
            size = training_size(src_w, src_h, s.resolution)
            image = decode_image(sample[image_member(sample)], at_least=size)
        else:
            image = decode_image(sample[image_member(sample)])
            src_w, src_h = image.shape[1], image.shape[0]
            size = training_size(src_w, src_h, s.resolution)
        side = s.resolution
        x0 = crop_offset(size[0], side, rng if s.crop == "random" else None)
        y0 = crop_offset(size[1], side, rng if s.crop == "random" else None)

        has_rle = "rle" in products[index]
        instance_map = _decode_png(sample["mask.png"], cv2.IMREAD_UNCHANGED) if "mask.png" in sample and not has_rle else None
        if instance_map is not None and instance_map.ndim == 3:
            instance_map = instance_map[..., 2]  # a colour-coded map: its first (R) channel, as masks.decode_mask reads it
        whole = mask_u8(product_mask(ann, index, instance_map, (src_h, src_w)))  # src size: checked against the image (check_bounds)
        mask = resize_crop(whole, size, x0, y0, side) >= 128

        out: dict[str, Any] = {
            "__key__": sample.get("__key__"),
            "caption": caption_of(sample, ann),
            "product": index,
            "crop": (x0, y0),
            "image": resize_crop(image, size, x0, y0, side),
            "mask": mask.astype(np.uint8),
            "view": close_view(ann, index, image, image.shape[1] / src_w, sample.get("views.jpg"), s.view_size, s.product_margin),
            "keypoints": self._keypoints(ann, size, (src_w, src_h), x0, y0, side),
        }
        if s.pose:
            if s.pose_source == "render" and len(out["keypoints"]):
                # The skeleton drawn at training resolution from the same keypoints pose.png was drawn from:
                # strokes as wide as at generation time (a 2000-px pose.png shrunk to 512 has 1-px limbs), and cheaper.
                out["pose"] = render_pose(list(out["keypoints"]), side, side)
            else:
                pose = cv2.cvtColor(_decode_png(sample["pose.png"], cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
                out["pose"] = resize_crop(pose, size, x0, y0, side)
        if s.edges:
            out["edges"] = product_edges(out["image"], mask)

        if "latent.npy" in sample and self._precomputed(ann, "vae"):
            latent = np.load(io.BytesIO(sample["latent.npy"]), allow_pickle=False)
            if latent.shape[1:] == (size[1] // 8, size[0] // 8):
                out["latent"] = latent[:, y0 // 8 : (y0 + side) // 8, x0 // 8 : (x0 + side) // 8]
        text = self._text(sample, ann)
        if text is not None:
            out["text"] = text
        if "dino.npy" in sample and self._precomputed(ann, "dino"):
            dino = np.load(io.BytesIO(sample["dino.npy"]), allow_pickle=False)
            if index < len(dino):
                out["dino"] = dino[index]
        return out

    @staticmethod
    def _keypoints(ann, size, src, x0, y0, side) -> np.ndarray:
        """Persons x 133 x [x, y, score] in crop pixels; points outside the crop score 0."""
        kps = [p["keypoints"] for p in ann.get("persons", []) if p.get("keypoints")]
        if not kps:
            return np.zeros((0, 133, 3), np.float32)
        arr = np.asarray(kps, np.float32).reshape(len(kps), -1, 3).copy()
        arr[..., 0] = arr[..., 0] * size[0] / src[0] - x0
        arr[..., 1] = arr[..., 1] * size[1] / src[1] - y0
        outside = (arr[..., 0] < 0) | (arr[..., 1] < 0) | (arr[..., 0] >= side) | (arr[..., 1] >= side)
        arr[..., 2][outside] = 0
        return arr
