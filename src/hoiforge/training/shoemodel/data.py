"""Shoe-leg samples for the ShoeModel trainers: which shards, one sample's members, the derived inputs.

An OUT is a `hoiforge build --recipe shoeleg` output; its ``index.<split>.json`` (wids format)
lists the shards, with urls relative to OUT. Samples stream through webdataset; each member is
decoded only when a module asks for it.

Members read (sample contract, shared/DESIGN.md and the shoe-leg additions):

- ``leg.json``: 12 leg+foot points per person (pixels, score), the photo's width/height; NEW
  ``crop`` = {box, size, foot} (the square shoe-pair crop) used when present;
- ``shoe.png``: RGBA shoe-only image (alpha 255 on shoe pixels, black elsewhere);
- ``wear.png``: 0 background / 1 visible / 2 wearable labels (WD), when the recipe wrote them;
- the image, ``json`` (``shoes`` records: which person wears them), ``txt`` caption (SW);
- NEW ``leg.png`` (X_p) when present, else the 12 points drawn here the same way.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from hoiforge.datasets import keypoints as K
from hoiforge.datasets import wearable as W
from hoiforge.datasets.bounds import load_json
from hoiforge.datasets.vm_sample import ShardDataError
from hoiforge.training.shoemodel import geometry as G

IMAGE_EXTS = ("jpg", "png", "webp")
FOOT_IN_LEG = tuple(range(4, 12))  # leg.json's 12 points: hips, knees, ankles, 6 foot points; the 8 foot points are 4..11
LEG_TARGET = tuple(range(0, 6))  # LpS phase 2 generates hips, knees, ankles
MAX_PIXELS = 64_000_000


class DataError(ShardDataError):
    """An OUT that cannot feed the module asked for; the message says what to build."""


# -- which shards ------------------------------------------------------------------------------
def shard_urls(outs: Iterable[str | Path], split: str = "train") -> list[str]:
    """Local paths of the shards of ``split`` in every OUT (the shared loader's wids index reading and checks)."""
    from hoiforge.datasets.loader import shard_urls as out_shards

    return [url for out in outs for url in out_shards(out, split)]


def has_split(out: str | Path, split: str) -> bool:
    """Whether OUT lists kept samples of ``split``."""
    index = Path(out).expanduser() / f"index.{split}.json"
    try:
        return sum(int(s.get("nsamples", 0)) for s in json.loads(index.read_text()).get("shardlist", [])) > 0
    except (OSError, ValueError, AttributeError):
        return False


# -- one sample --------------------------------------------------------------------------------
def _png(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        if img.width * img.height > MAX_PIXELS:
            raise ValueError(f"member of {img.width}x{img.height} px is over the {MAX_PIXELS} px limit")
        return np.asarray(img)


@dataclass
class ShoeLegSample:
    key: str
    members: dict[str, bytes]
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_wds(cls, sample: dict[str, Any]) -> ShoeLegSample:
        return cls(sample["__key__"], {k: v for k, v in sample.items() if not k.startswith("__")})

    def has(self, member: str) -> bool:
        return member in self.members

    def _memo(self, name: str, make):
        if name not in self._cache:
            self._cache[name] = make()
        return self._cache[name]

    # members
    def image(self) -> np.ndarray:
        ext = next((e for e in IMAGE_EXTS if e in self.members), None)
        if ext is None:
            raise ValueError(f"sample {self.key} has no image member")
        return self._memo("image", lambda: np.ascontiguousarray(_rgb(_png(self.members[ext]))))

    def annotation(self) -> dict[str, Any]:
        return self._memo("json", lambda: load_json(self.members["json"]) if "json" in self.members else {})

    def leg(self) -> dict[str, Any]:
        return self._memo("leg", lambda: load_json(self.members["leg.json"]))  # bounded, finite numbers only

    def shoe_rgba(self) -> np.ndarray:
        def make():
            rgba = _png(self.members["shoe.png"])
            if rgba.ndim != 3 or rgba.shape[2] != 4:
                raise ValueError(f"sample {self.key}: shoe.png is not RGBA")
            return rgba

        return self._memo("shoe", make)

    def wear(self) -> np.ndarray | None:
        if "wear.png" not in self.members:
            return None
        return self._memo("wear", lambda: W.decode_labels(self.members["wear.png"]))

    def caption(self) -> str:
        if "txt" in self.members:
            return self.members["txt"].decode("utf-8", "replace").strip()
        return str(self.annotation().get("caption") or "")

    def size(self) -> tuple[int, int]:
        """(width, height) of the photo."""
        doc = self.leg()
        return int(doc["width"]), int(doc["height"])

    # derived inputs
    def wear_source(self) -> str:
        return str((self.annotation().get("wear") or {}).get("source", "unknown"))

    def wearable_removed(self) -> np.ndarray:
        """X_w at full frame: shoe.png with the wearable class (wear.png == 2) made transparent and black."""
        return remove_wearable(self.shoe_rgba(), self.wear())

    def shoe_person(self) -> int:
        """The person whose feet the shoes are on (shoes records), else the first person."""
        people = [r.get("person") for r in self.annotation().get("shoes", []) if r.get("person") is not None]
        n = len(self.leg().get("persons", []))
        best = max(set(people), key=people.count) if people else 0
        return best if best < n else 0

    def leg_points(self, person: int | None = None) -> np.ndarray:
        """12 x 3 [x, y, score] pixels of one person (the shoe wearer by default)."""
        persons = self.leg().get("persons", [])
        if not persons:
            return np.zeros((12, 3))
        return np.asarray(persons[self.shoe_person() if person is None else person]["leg"], np.float64).reshape(12, 3)

    def crop_box(self, margin: float) -> tuple[float, float, float, float] | None:
        """The square shoe-pair box: leg.json's ``crop`` when the build wrote one, else around shoe.png's alpha."""
        crop = self.leg().get("crop")
        if isinstance(crop, dict) and crop.get("box"):
            return tuple(float(v) for v in crop["box"])  # type: ignore[return-value]
        return G.square_box(self.shoe_rgba()[..., 3] > 0, margin)

    def leg_image(self, min_score: float) -> np.ndarray:
        """X_p: leg.png when present, else the 12 points of every person drawn at image size."""
        if "leg.png" in self.members:
            return np.ascontiguousarray(_rgb(_png(self.members["leg.png"])))
        w, h = self.size()
        return render_leg([np.asarray(p["leg"], np.float64) for p in self.leg().get("persons", [])], h, w, min_score)


def _rgb(array: np.ndarray) -> np.ndarray:
    if array.ndim == 2:
        return np.repeat(array[..., None], 3, -1)
    return array[..., :3]


def remove_wearable(shoe_rgba: np.ndarray, wear: np.ndarray | None) -> np.ndarray:
    """RGBA shoe with the wearable area (class 2) transparent and black: the paper's X_w."""
    out = np.array(shoe_rgba, copy=True)
    if wear is not None:
        gone = wear == W.WEARABLE
        out[gone] = 0
    return out


def on_black(rgba: np.ndarray) -> np.ndarray:
    """RGB of an RGBA image composited on black (as the WD segmenter reads shoe images)."""
    alpha = rgba[..., 3:4].astype(np.float32) / 255.0
    return (rgba[..., :3].astype(np.float32) * alpha + 0.5).astype(np.uint8)


def render_leg(legs: list[np.ndarray], height: int, width: int, min_score: float) -> np.ndarray:
    """X_p: only the 12 leg+foot points per person, drawn as the whole-body renderer draws them.

    Uses ``hoiforge.datasets.render.render_leg`` when the build side ships it (the same drawing as
    ``<id>.leg.png``), else puts the 12 points into empty 133-point layouts for ``render_pose``.
    """
    from hoiforge.datasets import render

    if hasattr(render, "render_leg"):
        return render.render_leg(legs, height, width)
    persons = []
    for leg in legs:
        kp = K.empty().astype(np.float64)
        kp[list(K.SHOE_LEG)] = np.asarray(leg, np.float64).reshape(12, 3)
        persons.append(kp)
    return render.render_pose(persons, height, width, min_score=min_score)


# -- reading in order --------------------------------------------------------------------------
def read_samples(urls: list[str]) -> Iterator[ShoeLegSample]:
    """Every sample of the shards, in shard order (training streams through loader.py instead)."""
    import webdataset as wds

    for sample in wds.tarfile_samples([{"url": u} for u in urls]):
        yield ShoeLegSample.from_wds(sample)


def first_samples(urls: list[str], n: int) -> list[ShoeLegSample]:
    """The first ``n`` samples in shard order (cheap checks before training starts)."""
    out: list[ShoeLegSample] = []
    for sample in read_samples(urls):
        out.append(sample)
        if len(out) >= n:
            break
    return out


def check_members(outs: list[str], split: str, members: tuple[str, ...], module: str, hint: str) -> list[ShoeLegSample]:
    """Fail before training when the first samples of an OUT lack what ``module`` reads."""
    looked = []
    for out in outs:
        head = first_samples(shard_urls([out], split), 8)
        if not head:
            raise DataError(f"{out}: index.{split}.json lists no samples")
        lacking = [m for m in members if not any(s.has(m) for s in head)]
        if lacking:
            raise DataError(f"{out} has no {', '.join(lacking)} in its samples: {module} cannot train on it; {hint}")
        looked += head
    return looked
