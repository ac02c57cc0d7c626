"""Embedded caption: a deterministic sentence built only from what earlier stages recorded.

It reads ``ann["persons"]`` (boxes; ``keypoints`` 133x[x, y, score] in COCO-WholeBody order when a
pose stage ran), ``ann["products"]`` (label, box) and the pixels (colours). Whatever is absent is
not mentioned: the caption never states more than the annotations and pixels support. Labelled
``template`` in the json so nobody mistakes it for a VLM description.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from hoiforge.datasets import keypoints as K

# Basic colour terms (Berlin & Kay) at typical sRGB values; pixels are named by nearest CIELAB.
COLOURS: dict[str, tuple[int, int, int]] = {
    "black": (20, 20, 20),
    "grey": (128, 128, 128),
    "white": (240, 240, 240),
    "red": (190, 30, 35),
    "orange": (240, 130, 30),
    "yellow": (240, 215, 50),
    "green": (50, 140, 60),
    "blue": (40, 80, 190),
    "purple": (120, 60, 150),
    "pink": (235, 140, 175),
    "brown": (120, 70, 35),
}
NUMBERS = ["no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]

# COCO-WholeBody indices, (left, right), from the shared layout.
SHOULDERS, WRISTS, HIPS, KNEES, ANKLES = (
    (K.INDEX[f"left_{part}"], K.INDEX[f"right_{part}"]) for part in ("shoulder", "wrist", "hip", "knee", "ankle")
)
HANDS = K.HANDS
KEYPOINT_MIN_SCORE = 0.3
SAMPLE_SIDE = 96  # colours are named on a downsample: the caption needs the majority, not detail


def _lab(rgb: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(rgb.reshape(-1, 1, 3).astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB).reshape(-1, 3)


_PALETTE_LAB = _lab(np.array(list(COLOURS.values()), dtype=np.uint8))


def colour_name(pixels: np.ndarray) -> str | None:
    """The most common basic colour among RGB pixels (N x 3), or None when there are none."""
    if len(pixels) == 0:
        return None
    dist = ((_lab(pixels)[:, None, :] - _PALETTE_LAB[None]) ** 2).sum(-1)
    counts = np.bincount(dist.argmin(1), minlength=len(COLOURS))
    return list(COLOURS)[int(counts.argmax())]


def _count(n: int, one: str, many: str) -> str:
    word = NUMBERS[n] if n < len(NUMBERS) else str(n)
    return f"{word} {one if n == 1 else many}"


def _with_article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


class _Pixels:
    """The image on a small grid, with box membership in original pixel coordinates."""

    def __init__(self, rgb: np.ndarray, full_size: tuple[int, int] | None = None):
        """``full_size``: (width, height) the annotation's boxes are in, when ``rgb`` is a reduced decode."""
        import cv2

        h, w = rgb.shape[:2]
        scale = min(1.0, SAMPLE_SIDE / max(h, w))
        self.small = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        sh, sw = self.small.shape[:2]
        fw, fh = full_size or (w, h)
        self.ys, self.xs = np.mgrid[0:sh, 0:sw]
        self.ys, self.xs = (self.ys + 0.5) * fh / sh, (self.xs + 0.5) * fw / sw
        self.greyscale = bool(np.all(rgb[..., 0] == rgb[..., 1]) and np.all(rgb[..., 1] == rgb[..., 2]))

    def inside(self, box) -> np.ndarray:
        x0, y0, x1, y1 = box
        return (self.xs >= x0) & (self.xs < x1) & (self.ys >= y0) & (self.ys < y1)

    def colour(self, region: np.ndarray) -> str | None:
        return colour_name(self.small[region])


def _visible(kps: list, idx) -> list[tuple[float, float]]:
    return [(kps[i][0], kps[i][1]) for i in idx if i < len(kps) and kps[i][2] >= KEYPOINT_MIN_SCORE]


def pose_cues(keypoints: list) -> list[str]:
    """Framing and arm cues from COCO-WholeBody keypoints ([x, y, score] each)."""
    cues = []
    if _visible(keypoints, ANKLES):
        cues.append("full body")
    elif _visible(keypoints, KNEES) or _visible(keypoints, HIPS):
        cues.append("from the knees up" if _visible(keypoints, KNEES) else "from the waist up")
    elif _visible(keypoints, SHOULDERS):
        cues.append("upper body")
    raised = [
        side
        for side, (s, w) in zip(("left", "right"), zip(SHOULDERS, WRISTS))
        if _visible(keypoints, [s]) and _visible(keypoints, [w]) and keypoints[w][1] < keypoints[s][1]
    ]
    if raised:
        cues.append("both arms raised" if len(raised) == 2 else "one arm raised")
    return cues


def _holds(person: dict, box) -> bool:
    """A wrist or hand keypoint of the person lies inside the product box."""
    kps = person.get("keypoints") or []
    x0, y0, x1, y1 = box
    return any(x0 <= x <= x1 and y0 <= y <= y1 for x, y in _visible(kps, [*WRISTS, *HANDS]))


def compose_caption(ann: dict[str, Any], rgb: np.ndarray) -> str:
    image = ann.get("image") or {}
    px = _Pixels(rgb, (image["width"], image["height"]) if "width" in image and "height" in image else None)
    persons = ann.get("persons")  # None: no person stage ran, so say nothing about people
    products = ann.get("products")
    sentences = []

    products_phrase = []
    product_names = []
    for p in products or []:
        colour = px.colour(px.inside(p["box"])) if p.get("box") else None
        name = " ".join(v for v in (colour, str(p.get("label", "object"))) if v)
        product_names.append(name)
    for name, n in Counter(product_names).items():
        products_phrase.append(_with_article(name) if n == 1 else f"{_count(n, name, name + 's')}")

    kind = "black-and-white photo" if px.greyscale else "photo"
    things = ", ".join(products_phrase[:-1]) + " and " + products_phrase[-1] if len(products_phrase) > 1 else "".join(products_phrase)
    if persons:
        subject = f"A {kind} of {_count(len(persons), 'person', 'people')}" + (f" with {things}" if things else "")
    else:
        subject = (
            f"A {kind}"
            + (f" of {things}" if things else "")
            + ((", with" if things else " with") + " no people" if persons is not None else "")
        )
    sentences.append(subject + ".")

    ordered = sorted(persons or [], key=lambda p: p["box"][0])
    for i, person in enumerate(ordered):
        who = "The person" if len(ordered) == 1 else f"Person {i + 1} from the left"
        held = [name for p, name in zip(products or [], product_names) if p.get("box") and _holds(person, p["box"])]
        cues = pose_cues(person.get("keypoints") or [])
        if cues:
            sentences.append(f"{who} is seen {', '.join(cues)}.")
        if held:
            sentences.append(f"{who} is holding the {' and the '.join(held)}.")

    covered = np.zeros(px.xs.shape, dtype=bool)
    for obj in [*(persons or []), *(products or [])]:
        if obj.get("box"):
            covered |= px.inside(obj["box"])
    if (~covered).mean() >= 0.05:  # enough background left to name its colour
        sentences.append(f"The background is mostly {px.colour(~covered)}.")
    return " ".join(sentences)


class TemplateCaptioner:
    """The ``template`` captioner backend: ``caption(images, annotations)`` -> one sentence each."""

    name = "template"
    loads_model = False  # a few numpy operations: the caption stage runs as plain tasks with it
    # Colours are named on a SAMPLE_SIDE grid: a reduced decode to 4x that is as good as the full image.
    input_size = 4 * SAMPLE_SIDE
    model_id = None
    prompt = None

    def __init__(self) -> None:
        pass

    @classmethod
    def check(cls) -> None:
        """Nothing to check: it needs only numpy."""

    def caption(self, images: list[np.ndarray], annotations: list[dict[str, Any]]) -> list[str]:
        return [compose_caption(ann, rgb) for rgb, ann in zip(images, annotations, strict=True)]
