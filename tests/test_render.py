"""Skeleton rendering, pixel-wise on a hand-placed skeleton (DWPose convention + feet)."""

import numpy as np
import pytest

from hoiforge.datasets import keypoints as K
from hoiforge.datasets.render import BODY_COLORS, FOOT_COLORS, HAND_EDGE_COLORS, HAND_POINT_COLOR, openpose18, render_pose

W, H = 200, 300
BODY = {
    "nose": (100, 30), "left_eye": (106, 25), "right_eye": (94, 25), "left_ear": (112, 28), "right_ear": (88, 28),
    "left_shoulder": (130, 60), "right_shoulder": (70, 60), "left_elbow": (150, 100), "right_elbow": (50, 100),
    "left_wrist": (160, 140), "right_wrist": (40, 140), "left_hip": (120, 150), "right_hip": (80, 150),
    "left_knee": (122, 200), "right_knee": (78, 200), "left_ankle": (124, 250), "right_ankle": (76, 250),
    "left_big_toe": (140, 262), "left_heel": (118, 262), "right_big_toe": (60, 262), "right_heel": (82, 262),
}  # fmt: skip


def skeleton() -> np.ndarray:
    kp = K.empty()
    for name, (x, y) in BODY.items():
        kp[K.INDEX[name]] = (x, y, 0.9)
    kp[K.INDEX["left_ear"], 2] = 0.2  # below DWPose's 0.3: not drawn
    kp[K.INDEX["right_small_toe"]] = (70, 280, 0.2)  # not drawn either
    # Left hand: a fan of 5 fingers hanging below the wrist, 12 px between joints.
    kp[K.LEFT_HAND[0]] = (160, 140, 0.8)
    for f in range(5):
        for j in range(1, 5):
            kp[K.LEFT_HAND[4 * f + j]] = (144 + 8 * f, 145 + 12 * j, 0.8)
    kp[K.FACE[8]] = (100, 285, 0.9)  # chin, alone, away from everything else
    kp[K.FACE[30]] = (20, 290, 0.1)
    return kp


def px(img: np.ndarray, x: int, y: int) -> tuple[int, ...]:
    return tuple(int(v) for v in img[y, x])


def dim(color) -> tuple[int, ...]:
    return tuple(int(c * 0.6) for c in color)


@pytest.fixture(scope="module")
def img():
    return render_pose([skeleton()], H, W)


def test_canvas(img):
    assert img.shape == (H, W, 3) and img.dtype == np.uint8
    assert px(img, 5, 5) == (0, 0, 0)


def test_body_joints_in_the_openpose_palette(img):
    assert px(img, 100, 30) == BODY_COLORS[0]  # nose
    assert px(img, 100, 60) == BODY_COLORS[1]  # neck = middle of the shoulders
    assert px(img, 70, 60) == BODY_COLORS[2]  # right shoulder
    assert px(img, 78, 200) == BODY_COLORS[9]  # right knee
    assert px(img, 124, 250) == BODY_COLORS[13]  # left ankle
    assert px(img, 112, 28) == (0, 0, 0)  # left ear at score 0.2


def test_limbs_are_dimmed_sticks(img):
    # right hip -> right knee is OpenPose limb 8 (colour 7), drawn at 60 %.
    assert px(img, 79, 175) == dim(BODY_COLORS[7])
    # The stick is 4 px half-width: 3 px off the bone is still limb, 7 px is not.
    assert px(img, 79 + 3, 175) == dim(BODY_COLORS[7])
    assert px(img, 79 + 7, 175) == (0, 0, 0)


def test_feet_are_drawn(img):
    assert px(img, 118, 262) == FOOT_COLORS[2]  # left heel
    assert px(img, 60, 262) == FOOT_COLORS[3]  # right big toe
    assert px(img, 132, 256) == dim(FOOT_COLORS[0])  # left ankle -> big toe
    assert px(img, 70, 280) == (0, 0, 0)  # right small toe at score 0.2


def test_hands_and_face(img):
    assert px(img, 160, 157) == HAND_POINT_COLOR  # middle finger, first joint
    assert px(img, 160, 175) == HAND_EDGE_COLORS[10]  # middle finger, bone between joints 2 and 3
    assert px(img, 160, 181 + 6) == HAND_EDGE_COLORS[11]
    assert px(img, 100, 285) == (255, 255, 255)  # face point
    assert px(img, 20, 290) == (0, 0, 0)  # face point at score 0.1


def test_deterministic_and_off_image_points_ignored(img):
    assert np.array_equal(render_pose([skeleton()], H, W), img)
    gone = skeleton()
    gone[:, 0] += 1000  # a whole person outside the frame adds nothing
    assert np.array_equal(render_pose([skeleton(), gone], H, W), img)
    assert not render_pose([K.empty()], H, W).any()
    assert not render_pose([], H, W).any()


def test_openpose18_neck_scores_the_weaker_shoulder():
    kp = skeleton()
    kp[K.INDEX["right_shoulder"], 2] = 0.1
    body = openpose18(kp)
    assert body.shape == (18, 3)
    assert tuple(body[1]) == pytest.approx((100, 60, 0.1))
    assert tuple(body[2, :2]) == (70, 60) and tuple(body[5, :2]) == (130, 60)  # R / L shoulder
