"""Embedded shoe segmentation: GrabCut seeded by a foot's keypoints (no shoe weights ship anywhere).

The products stage's embedded detector cannot find shoes: it removes person pixels, and a worn
shoe is part of the person. So the shoe-leg recipe's default backend starts from the pose
instead. Per seen foot (a toe or the heel above ``min_score``):

1. scale: the foot length L = the largest distance between its ankle/toe/heel points (at least
   a fraction of the shin, when only one point is seen);
2. a box around the foot's points, grown by ``grow`` * L per side, is "probably shoe"; a ring
   of L around that box is "probably not"; everything further out is background;
3. definite shoe: small disks on the toes and on the heel-to-toe line from its middle to the
   toe (the heel point itself often sits on the trouser hem); definite background: the shin
   (knee down to the ankle point: trousers or skin) and the other feet's seeds, so one foot's
   cut never swallows its neighbour;
4. GrabCut fits its colour models on that crop; the shoe is the connected part of the result
   that holds the seeds, holes filled.

Limits (why a user runs grounding-dino + sam instead, through the products stage): the ankle
and toe points of mediapipe are coarse, so the mask can stop short of the toe cap or take in a
trouser hem of the shoe's colour; shoes the colour of the floor are cut poorly; in greyscale
photos only brightness separates shoe from floor.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from hoiforge.datasets import keypoints as K
from hoiforge.datasets.leg import SHOE_POINTS


@dataclass
class FootSeeds:
    """The keypoints of one seen foot, in image pixels."""

    side: str  # "left" | "right" (the person's side, as in COCO-WholeBody)
    person: int  # index into ann["persons"]
    points: np.ndarray  # N x 2 seen ankle/toe/heel points
    sole: np.ndarray  # M x 2 seen toe/heel points (no ankle)
    knee: np.ndarray | None  # 2, when seen
    partial: bool = False  # the big toe or the heel (points every backend gives) was not seen
    toes: np.ndarray | None = None  # K x 2 seen toe points
    heel: np.ndarray | None = None  # 2, when seen


def feet_of(persons: list[dict], min_score: float) -> list[FootSeeds]:
    """Every foot whose toe or heel the pose saw, over all persons."""
    feet = []
    for i, person in enumerate(persons):
        kp = np.asarray(person.get("keypoints") or K.empty(), dtype=np.float64)
        for side, idx in SHOE_POINTS.items():
            pts = kp[list(idx)]
            seen = pts[:, 2] > min_score
            if not seen[1:].any():  # the ankle alone is no evidence of a visible shoe
                continue
            knee = kp[K.INDEX[f"{side}_knee"]]
            # SHOE_POINTS order: ankle, big toe, small toe, heel.
            toes, heel = pts[1:3][seen[1:3], :2], (pts[3, :2] if seen[3] else None)
            partial = not (seen[1] and seen[3])
            feet.append(
                FootSeeds(side, i, pts[seen, :2], pts[1:][seen[1:], :2], knee[:2] if knee[2] > min_score else None, partial, toes, heel)
            )
    return feet


class FootSeededSegmenter:
    """One shoe mask per foot from keypoint-seeded GrabCut (see the module docstring)."""

    package = "opencv-python-headless"
    loads_model = False  # GrabCut per image: the shoes stage runs as plain tasks

    name = "foot-grabcut"

    def __init__(
        self,
        grow: float = 0.45,
        seed_radius: float = 0.07,
        shin_width: float = 0.5,
        iterations: int = 5,
        min_foot: float = 0.02,
        near_border: float = 0.2,
    ):
        self.grow, self.seed_radius, self.shin_width, self.iterations, self.min_foot = grow, seed_radius, shin_width, iterations, min_foot
        self.near_border = near_border

    @classmethod
    def check(cls, **options) -> None:
        """OpenCV is a core dependency: nothing to check."""

    def segment(self, rgb: np.ndarray, feet: list[FootSeeds]) -> list[np.ndarray]:
        """Per foot, an HxW bool shoe mask (possibly empty) at image size."""
        h, w = rgb.shape[:2]
        bgr = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)
        masks = [self._one(bgr, foot, [f for f in feet if f is not foot], (h, w)) for foot in feet]
        # A pixel two feet both claim goes to the foot whose sole points lie nearer.
        for a in range(len(masks)):
            for b in range(a + 1, len(masks)):
                both = masks[a] & masks[b]
                if both.any():
                    ys, xs = np.nonzero(both)
                    pix = np.stack([xs, ys], 1).astype(np.float64)
                    da = _nearest(pix, feet[a].points)
                    db = _nearest(pix, feet[b].points)
                    masks[a][ys[da > db], xs[da > db]] = False
                    masks[b][ys[da <= db], xs[da <= db]] = False
        return masks

    def runs_out_of_frame(self, foot: FootSeeds, shape: tuple[int, int]) -> bool:
        """Whether the foot's shoe likely continues past the image border, judged from its points.

        A seen point within a quarter foot of the border leaves no room for the shoe around it;
        a foot seen only in part (big toe or heel missing: mediapipe zeroes points outside the
        image) within a foot length of the border has its missing end outside the frame.
        """
        h, w = shape
        L = self.foot_length(foot, shape)
        gap = float(np.min(np.concatenate([foot.points[:, 0], foot.points[:, 1], w - foot.points[:, 0], h - foot.points[:, 1]])))
        return bool(gap < 0.25 * L or (foot.partial and gap < L))

    def mask_near_border(self, mask: np.ndarray, foot: FootSeeds) -> bool:
        """Whether a shoe mask ends within a fifth of a foot length of the border.

        Masks stop a few pixels short of the true outline, so a shoe cut by the frame often
        leaves its mask just inside the border rather than on it.
        """
        ys, xs = np.nonzero(mask)
        if not len(xs):
            return False
        h, w = mask.shape
        gap = min(xs.min(), ys.min(), w - 1 - xs.max(), h - 1 - ys.max())
        return bool(gap < self.near_border * self.foot_length(foot, mask.shape))

    def foot_length(self, foot: FootSeeds, shape: tuple[int, int]) -> float:
        pts = foot.points
        span = float(np.max(np.linalg.norm(pts[:, None] - pts[None], axis=-1))) if len(pts) > 1 else 0.0
        floor = self.min_foot * max(shape)
        if foot.knee is not None:
            # A foot is about half a shin long; with one seen point the shin sets the scale.
            floor = max(floor, 0.35 * float(np.linalg.norm(foot.knee - pts.mean(0))))
        return max(span, floor)

    def _one(self, bgr: np.ndarray, foot: FootSeeds, others: list[FootSeeds], shape: tuple[int, int]) -> np.ndarray:
        h, w = shape
        L = self.foot_length(foot, shape)
        x0, y0 = foot.points.min(0) - self.grow * L
        x1, y1 = foot.points.max(0) + self.grow * L
        # The crop GrabCut works on: the box plus a ring of L of context for the background model.
        cx0, cy0 = int(max(0, np.floor(x0 - L))), int(max(0, np.floor(y0 - L)))
        cx1, cy1 = int(min(w, np.ceil(x1 + L))), int(min(h, np.ceil(y1 + L)))
        crop = np.ascontiguousarray(bgr[cy0:cy1, cx0:cx1])
        ch, cw = crop.shape[:2]
        off = np.array([cx0, cy0], np.float64)
        gc = np.full((ch, cw), cv2.GC_PR_BGD, np.uint8)
        bx0, by0 = int(max(0, np.floor(x0 - cx0))), int(max(0, np.floor(y0 - cy0)))
        bx1, by1 = int(min(cw, np.ceil(x1 - cx0))), int(min(ch, np.ceil(y1 - cy0)))
        gc[by0:by1, bx0:bx1] = cv2.GC_PR_FGD
        ring = max(2, int(0.25 * L))  # the crop's outer edge is definite background
        gc[:ring], gc[-ring:], gc[:, :ring], gc[:, -ring:] = cv2.GC_BGD, cv2.GC_BGD, cv2.GC_BGD, cv2.GC_BGD
        # ... except where the foot's box reaches the image border: the shoe may run out there.
        gc[by0:by1, bx0:bx1] = cv2.GC_PR_FGD
        r = max(1, round(self.seed_radius * L))
        if foot.knee is not None:
            ankle = foot.points[0] if len(foot.points) > len(foot.sole) else foot.sole.mean(0)
            # The shin down to the ankle point is trousers or skin; the shoe's collar lies below it.
            cv2.line(gc, _pt(foot.knee - off), _pt(ankle - off), int(cv2.GC_BGD), thickness=max(2, int(self.shin_width * L)))
        for other in others:
            for p in other.sole:
                cv2.circle(gc, _pt(p - off), r, int(cv2.GC_BGD), -1)
        seeds = np.zeros((ch, cw), np.uint8)
        for p in _sole_line(foot.toes, foot.heel):
            cv2.circle(seeds, _pt(p - off), r, 1, -1)
        gc[seeds.astype(bool)] = cv2.GC_FGD
        if (gc == cv2.GC_BGD).sum() < 16 or (gc == cv2.GC_FGD).sum() == 0:
            return np.zeros(shape, bool)
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        cv2.grabCut(crop, gc, None, bgd, fgd, self.iterations, cv2.GC_INIT_WITH_MASK)
        fg = ((gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)).astype(np.uint8)
        fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        shoe = _component_with(fg, seeds)
        out = np.zeros(shape, bool)
        out[cy0:cy1, cx0:cx1] = shoe
        return out


def _sole_line(toes: np.ndarray, heel: np.ndarray | None) -> np.ndarray:
    """Definite-shoe seed points: the toes, and the heel-to-toe line from its middle to the toe.

    The heel itself is a seed only when no toe is seen: pose models put it at the back of the
    ankle, which trousers often cover (on basketball1 a heel seed pulled the jeans hem into the
    mask; precision against the hand-traced shoe 0.95 -> 1.0 without it).
    """
    if not len(toes):
        return np.array([heel])
    if heel is None:
        return toes
    toe = toes.mean(0)
    return np.concatenate([toes, [heel + (toe - heel) * t for t in (0.5, 0.75)]])


def _component_with(fg: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """The connected parts of ``fg`` that touch a seed, with their holes filled."""
    _, labels = cv2.connectedComponents(fg, connectivity=8)
    keep = np.unique(labels[seeds.astype(bool) & fg.astype(bool)])
    keep = keep[keep > 0]
    part = np.isin(labels, keep).astype(np.uint8)
    contours, _ = cv2.findContours(part, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    filled = np.zeros_like(part)
    cv2.drawContours(filled, contours, -1, 1, thickness=cv2.FILLED)
    return filled.astype(bool)


def _nearest(pix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return np.min(np.linalg.norm(pix[:, None] - points[None], axis=-1), axis=1)


def _pt(p: np.ndarray) -> tuple[int, int]:
    return round(float(p[0])), round(float(p[1]))
