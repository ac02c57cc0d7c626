"""Whole-body pose AP/AR (pycocotools OKS, 133 sigmas) and OER: hand-made cases and the real embedded backends."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hoiforge.metrics.oer import generated_product_masks, mask_box, oer, oer_scores, product_oer
from hoiforge.metrics.pose import EVAL_PARTS, PersonPose, estimate_poses, pose_ap

DATA = Path(__file__).parent / "data"


def synthetic_people(n_images: int = 4, seed: int = 0) -> tuple[list[list[PersonPose]], list[tuple[int, int]]]:
    rng = np.random.default_rng(seed)
    gts = []
    for _ in range(n_images):
        people = []
        for x0 in (20, 260):
            kp = np.zeros((133, 3))
            kp[:, 0] = rng.uniform(x0 + 10, x0 + 210, 133)
            kp[:, 1] = rng.uniform(30, 470, 133)
            kp[:, 2] = rng.uniform(0.4, 1.0, 133)
            people.append(PersonPose((x0, 20, x0 + 220, 480), kp))
        gts.append(people)
    return gts, [(512, 512)] * n_images


def shifted(people: list[list[PersonPose]], dx: float) -> list[list[PersonPose]]:
    return [[PersonPose(p.box, p.keypoints + np.array([dx, 0, 0])) for p in ps] for ps in people]


def test_ap_is_100_when_predictions_equal_ground_truth_and_falls_with_shifts():
    gts, sizes = synthetic_people()
    perfect = pose_ap(gts, gts, sizes)
    assert set(perfect) == set(EVAL_PARTS)
    for part, r in perfect.items():
        assert (r["AP"], r["AR"], r["persons"]) == (100.0, 100.0, 8), part
    aps = [pose_ap(gts, shifted(gts, dx), sizes)["wholebody"]["AP"] for dx in (0, 3, 6, 12, 24)]
    assert aps[0] == 100.0 and all(b <= a for a, b in itertools.pairwise(aps)) and aps[-1] < 10, aps
    # Face points have the smallest sigmas: a small shift costs the face far more than the body.
    r = pose_ap(gts, shifted(gts, 6), sizes)
    assert r["face"]["AP"] < r["body"]["AP"]


def test_no_predictions_is_ap_0_and_unlabelled_points_do_not_count():
    gts, sizes = synthetic_people(2)
    assert pose_ap(gts, [[] for _ in gts], sizes)["wholebody"] == {"AP": 0.0, "AP50": 0.0, "AP75": 0.0, "AR": 0.0, "persons": 4}
    # Points the condition did not show (score <= 0.3, or outside the image) may be predicted anywhere.
    hidden = [[PersonPose(p.box, p.keypoints.copy()) for p in ps] for ps in gts]
    for ps in hidden:
        for p in ps:
            p.keypoints[91:, 2] = 0.1  # hands hidden in the condition
    wrong_hands = [[PersonPose(p.box, p.keypoints.copy()) for p in ps] for ps in hidden]
    for ps in wrong_hands:
        for p in ps:
            p.keypoints[91:, :2] += 80
            p.keypoints[91:, 2] = 0.9
    r = pose_ap(hidden, wrong_hands, sizes)
    assert r["wholebody"]["AP"] == 100.0 and math.isnan(r["hands"]["AP"]) and r["hands"]["persons"] == 0


class CountingPose:
    """Wraps the real backend to prove estimate() got the condition's boxes."""

    def __init__(self, backend):
        self.backend, self.boxes = backend, []
        self.name = backend.name

    def estimate(self, images, boxes):
        self.boxes.append(boxes)
        return self.backend.estimate(images, boxes)


def test_real_holistic_backend_agrees_with_itself_and_not_with_a_shifted_image():
    pytest.importorskip("mediapipe")
    from hoiforge.models.mediapipe_person import MediapipePersonDetector
    from hoiforge.models.mediapipe_pose import MediapipeHolisticPose

    rgb = np.asarray(Image.open(DATA / "basketball1.png").convert("RGB"))
    boxes = [[tuple(d.box) for d in MediapipePersonDetector().detect([rgb])[0]]]
    backend = CountingPose(MediapipeHolisticPose())
    gt = estimate_poses([rgb], boxes, backend)  # the "condition": the pose stage's output on the real photo
    assert gt[0] and (gt[0][0].keypoints[:, 2] > 0.3).sum() >= 17
    same = pose_ap(gt, estimate_poses([rgb], boxes, backend), [rgb.shape[:2]])
    assert same["wholebody"]["AP"] == pytest.approx(100.0) and same["body"]["AP"] == pytest.approx(100.0)
    moved = np.roll(rgb, (10, 14), axis=(0, 1))  # the generated person drawn 14 px right, 10 px down
    off = pose_ap(gt, estimate_poses([moved], boxes, backend), [rgb.shape[:2]])
    assert off["wholebody"]["AP"] < 100.0 and off["body"]["AP"] < 100.0
    assert backend.boxes[0] == boxes


# -- OER -----------------------------------------------------------------------------------------
def square(size: int, y0: int, x0: int, side: int) -> np.ndarray:
    m = np.zeros((size, size), bool)
    m[y0 : y0 + side, x0 : x0 + side] = True
    return m


def test_oer_equals_the_hand_computation():
    m = square(40, 10, 10, 10)  # 100 px
    assert oer(m, m) == 0.0
    assert oer(square(40, 9, 9, 12), m) == pytest.approx(44 / 100)  # grown by 1 px all round: 144 - 100
    assert oer(square(40, 5, 5, 20), m) == pytest.approx(300 / 100)
    assert oer(square(40, 12, 12, 5), m) == 0.0  # drawn smaller: nothing extends
    assert oer(square(40, 10, 12, 10), m) == pytest.approx(20 / 100)  # shifted 2 columns right
    soft = m.astype(float) * 0.5
    soft[9, 10:20] = 0.5  # half-confident row above
    assert oer(soft, m) == pytest.approx(5 / 100)
    assert math.isnan(oer(m, np.zeros_like(m)))
    with pytest.raises(ValueError, match="differ in size"):
        oer(m, m[:-1])


def test_oer_scores_average_images_with_a_mask_and_count_the_rest():
    m = square(40, 10, 10, 10)
    result = oer_scores([m, square(40, 9, 9, 12), m], [m, m, np.zeros_like(m)])
    assert result.per_image[:2] == [0.0, pytest.approx(0.44)] and math.isnan(result.per_image[2])
    assert (result.n, result.n_empty) == (2, 1) and result.mean == pytest.approx(0.22) and result.percent == pytest.approx(22.0)


def test_mask_box_grows_about_the_centre_and_stays_in_the_image():
    m = square(40, 10, 10, 10)
    assert mask_box(m) == (10.0, 10.0, 20.0, 20.0)
    assert mask_box(m, 2.0) == (5.0, 5.0, 25.0, 25.0)
    assert mask_box(square(40, 0, 0, 10), 3.0) == (0.0, 0.0, 20.0, 20.0)
    assert mask_box(np.zeros((4, 4), bool)) is None


def test_generated_product_masks_use_the_products_segmenter():
    pytest.importorskip("mediapipe")
    rgb = np.asarray(Image.open(DATA / "coffee.png").convert("RGB"))
    m = np.asarray(Image.open(DATA / "coffee_cup_mask.png").convert("L")) > 127
    ((M,),) = generated_product_masks([rgb], boxes=[[mask_box(m, 1.1)]], segmenter="embedded")
    assert M.shape == m.shape and M.dtype == bool and M.any()
    # The real cup segmented on the real photo stays close to the traced mask; a bigger product would not.
    assert oer(M, m) < 0.3
    smaller = np.zeros_like(m)
    ys, xs = np.nonzero(m)
    smaller[ys.min() + 40 : ys.max() - 40, xs.min() + 40 : xs.max() - 40] = m[ys.min() + 40 : ys.max() - 40, xs.min() + 40 : xs.max() - 40]
    assert oer(M, smaller) > oer(M, m) + 0.2


def test_oer_is_per_product_and_averaged_not_on_the_union():
    a, b = square(40, 5, 5, 10), square(40, 15, 5, 10)  # two products side by side
    drawn_a = a.copy()
    drawn_a[15:19, 5:15] = True  # product A drawn spilling 4 rows (40 px) into B's place
    per_product = oer_scores([drawn_a, b], [a, b])
    assert per_product.per_image == [pytest.approx(0.4), 0.0] and per_product.mean == pytest.approx(0.2) and per_product.n == 2
    union = oer(drawn_a | b, a | b)  # on the union the spill lands inside m and vanishes
    assert union == 0.0


def test_product_oer_segments_each_product_on_its_own_box():
    pytest.importorskip("mediapipe")
    rgb = np.asarray(Image.open(DATA / "coffee.png").convert("RGB"))
    cup = np.asarray(Image.open(DATA / "coffee_cup_mask.png").convert("L")) > 127
    ys, _xs = np.nonzero(cup)
    other = np.zeros_like(cup)  # a second product: a patch of the table left of the cup
    other[ys.max() - 60 : ys.max() - 20, 10:70] = True
    result = product_oer([rgb], [[cup, other, np.zeros_like(cup)]], box_scale=1.1, segmenter="embedded")
    ((m_cup, m_other),) = generated_product_masks([rgb], boxes=[[mask_box(cup, 1.1), mask_box(other, 1.1)]], segmenter="embedded")
    # GrabCut's colour models start from a random draw: the same box gives masks a few pixels apart.
    want = [oer(m_cup, cup), oer(m_other, other)]
    assert result.per_image[:2] == [pytest.approx(v, abs=0.02) for v in want]
    assert math.isnan(result.per_image[2]) and (result.n, result.n_empty) == (2, 1)
    assert result.mean == pytest.approx(sum(result.per_image[:2]) / 2) and 0 < result.mean < 0.3
