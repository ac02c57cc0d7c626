"""Build-output folders for the VirtualModel loader and trainer tests (and the loader benchmark), written fast.

Real photos (tests/data) cut and rescaled into samples of different sizes and aspect ratios; each
sample carries the contract's members for HoIHuman (jpg, json, txt, pose.png, mask.png,
edge.png) with persons (box, 133 keypoints) and 1-3 elliptic products (box, mask_index,
close_view). Options add the newer members (products[i].rle, views.jpg, precompute arrays) or
drop some, to test both the members and their fallbacks.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from hoiforge.datasets.contract import sample_id
from hoiforge.datasets.masks import encode_mask
from hoiforge.datasets.render import render_pose

DATA = Path(__file__).parent / "data"
PHOTOS = ("astronaut.png", "basketball1.png", "coffee.png", "scenetext01.jpg")


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def _jpg(arr: np.ndarray, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _rle(mask: np.ndarray) -> dict:
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("utf-8")}


def make_sample(rng: np.random.Generator, photo: np.ndarray, *, size: tuple[int, int], rle: bool, views: int | None):
    w, h = size
    ph, pw = photo.shape[:2]
    # A random window of the photo, rescaled to the sample size: real texture at many sizes and aspects.
    cw = int(rng.integers(pw // 2, pw + 1))
    ch = min(ph, max(8, int(cw * h / w)))
    x, y = int(rng.integers(0, pw - cw + 1)), int(rng.integers(0, ph - ch + 1))
    image = cv2.resize(np.ascontiguousarray(photo[y : y + ch, x : x + cw]), (w, h), interpolation=cv2.INTER_AREA)

    box = [w * 0.2, h * 0.1, w * 0.8, h * 0.95]
    kp = np.zeros((133, 3), np.float32)
    kp[:, 0] = rng.uniform(box[0], box[2], 133)
    kp[:, 1] = rng.uniform(box[1], box[3], 133)
    kp[:, 2] = rng.uniform(0.2, 1.0, 133)
    persons = [{"box": box, "score": 0.9, "keypoints": kp.round(2).tolist()}]

    ids = np.zeros((h, w), np.uint16)
    products, wholes = [], []
    for i in range(int(rng.integers(1, 4))):
        cx, cy = rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h
        ax, ay = rng.uniform(0.08, 0.2) * w, rng.uniform(0.08, 0.2) * h
        whole = np.zeros((h, w), np.uint8)
        cv2.ellipse(whole, (int(cx), int(cy)), (int(ax), int(ay)), 0, 0, 360, 1, -1)
        ids[whole > 0] = i + 1  # later products cover earlier ones: overlaps go to one id only
        wholes.append(whole)
        pbox = [cx - ax, cy - ay, cx + ax, cy + ay]
        side = max(2 * ax, 2 * ay) * 1.5
        products.append(
            {
                "label": "product",
                "box": [round(v, 2) for v in pbox],
                "score": 0.8,
                "mask_index": i + 1,
                "close_view": [round(cx - side / 2, 2), round(cy - side / 2, 2), round(cx + side / 2, 2), round(cy + side / 2, 2)],
            }
        )
    if rle:
        for p, whole in zip(products, wholes, strict=True):
            p["rle"] = _rle(whole)
    edges = cv2.Canny(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), 75, 100)
    edges = np.where(ids > 0, edges, 0).astype(np.uint8)
    caption = f"a person holding {len(products)} products, {w}x{h}"
    image_bytes = _jpg(image)
    ann = {
        "id": sample_id(image_bytes),
        "image": {"width": w, "height": h},
        "persons": persons,
        "products": products,
        "caption": {"text": caption, "backend": "template"},
    }
    members = {
        "jpg": image_bytes,
        "txt": caption.encode(),
        "pose.png": _png(render_pose([kp], h, w)),
        "mask.png": encode_mask(ids),
        "edge.png": _png(edges),
    }
    if views:
        tiles = []
        for p in products:
            x0, y0, x1, y1 = (int(round(v)) for v in p["close_view"])
            padded = cv2.copyMakeBorder(image, h, h, w, w, cv2.BORDER_CONSTANT, value=(255, 255, 255))
            tiles.append(cv2.resize(padded[y0 + h : y1 + h, x0 + w : x1 + w], (views, views), interpolation=cv2.INTER_AREA))
        members["views.jpg"] = _jpg(np.concatenate(tiles, axis=1))
        ann["views"] = {"size": views, "count": len(products)}
    return ann, members, image, wholes


def write_out(
    root: Path,
    n: int,
    *,
    per_shard: int = 4,
    seed: int = 0,
    sizes: tuple[tuple[int, int], ...] = ((96, 72), (72, 120), (80, 80), (128, 88)),
    rle: bool = False,
    views: int | None = None,
    drop: tuple[str, ...] = (),
    precompute: Callable[[dict, dict, np.ndarray], None] | None = None,
    split: str = "train",
) -> list[str]:
    """An OUT folder with ``n`` ``split`` samples in shards of ``per_shard``; the sample ids, in shard order."""
    rng = np.random.default_rng(seed)
    photos = [np.asarray(Image.open(DATA / p).convert("RGB")) for p in PHOTOS]
    (root / "shards").mkdir(parents=True, exist_ok=True)
    shardlist, keys = [], []
    for first in range(0, n, per_shard):
        url = f"shards/{split}-{first // per_shard:06d}.tar"
        count = 0
        with tarfile.open(root / url, "w") as tar:
            for i in range(first, min(n, first + per_shard)):
                ann, members, image, _ = make_sample(rng, photos[i % len(photos)], size=sizes[i % len(sizes)], rle=rle, views=views)
                if precompute is not None:
                    precompute(ann, members, image)
                members["json"] = json.dumps(ann).encode()
                key = ann["id"]
                keys.append(key)
                for ext in ("jpg", "json", *sorted(k for k in members if k not in ("jpg", "json"))):
                    if ext in drop or ext not in members:
                        continue
                    info = tarfile.TarInfo(f"{key}.{ext}")
                    info.size = len(members[ext])
                    tar.addfile(info, io.BytesIO(members[ext]))
                count += 1
        shardlist.append({"url": url, "nsamples": count, "filesize": (root / url).stat().st_size})
    index = {"__kind__": "wids-shard-index-v1", "wids_version": 1, "name": root.name, "shardlist": shardlist}
    (root / f"index.{split}.json").write_text(json.dumps(index))
    if split == "train" or not (root / "index.json").exists():
        (root / "index.json").write_text(json.dumps(index))
    return keys
