"""The COCO-WholeBody 133 layout: part ranges, names, official sigmas, skeleton, subsets."""

import numpy as np

from hoiforge.datasets import keypoints as K


def test_parts_cover_the_133_points_once_in_the_official_order():
    assert len(K.NAMES) == K.NUM_KEYPOINTS == 133
    assert len(set(K.NAMES)) == 133
    order = K.BODY + K.FEET + K.FACE + K.LEFT_HAND + K.RIGHT_HAND
    assert order == tuple(range(133))
    assert (len(K.BODY), len(K.FEET), len(K.FACE), len(K.LEFT_HAND), len(K.RIGHT_HAND)) == (17, 6, 68, 21, 21)
    # The foot order the issue names: L big toe, L small toe, L heel, R big toe, R small toe, R heel.
    assert K.NAMES[17:23] == ("left_big_toe", "left_small_toe", "left_heel", "right_big_toe", "right_small_toe", "right_heel")
    assert K.NAMES[91] == "left_hand_root" and K.NAMES[112] == "right_hand_root"
    assert K.NAMES[111] == "left_pinky_finger4" and K.NAMES[132] == "right_pinky_finger4"


def test_official_sigmas():
    assert K.SIGMAS.shape == (133,)
    # Spot values from COCO-WholeBody's myeval_wholebody.py.
    assert K.SIGMAS[0] == 0.026 and K.SIGMAS[11] == 0.107 and K.SIGMAS[16] == 0.089
    assert K.SIGMAS[17:23].tolist() == [0.068, 0.066, 0.066, 0.092, 0.094, 0.094]
    assert K.SIGMAS[23] == 0.042 and K.SIGMAS[70] == 0.034 and K.SIGMAS[90] == 0.008
    assert np.array_equal(K.SIGMAS[91:112], K.SIGMAS[112:133])
    assert K.SIGMAS[95] == 0.047
    assert round(float(K.SIGMAS.sum()), 3) == 3.861  # checksum of the whole official list


def test_skeleton_links_parts_the_expected_way():
    assert len(K.BODY_SKELETON) == 19 and len(K.FOOT_SKELETON) == 6 and len(K.HAND_EDGES) == 20
    assert len(K.SKELETON) == 19 + 6 + 40
    assert all(0 <= a < 133 and 0 <= b < 133 and a != b for a, b in K.SKELETON)
    # Each foot point hangs off its own ankle.
    for a, b in K.FOOT_SKELETON:
        side = K.NAMES[b].split("_")[0]
        assert K.NAMES[a] == f"{side}_ankle"
    # A hand is a tree: 20 edges over 21 points, every joint reachable from the root (wrist).
    reached = {0}
    for a, b in K.HAND_EDGES:
        assert a in reached
        reached.add(b)
    assert reached == set(range(21))


def test_flip_index_is_an_involution_swapping_sides():
    flip = K.FLIP_INDEX
    assert all(flip[flip[i]] == i for i in range(133))
    assert K.NAMES[flip[K.INDEX["left_heel"]]] == "right_heel"
    assert K.NAMES[flip[K.INDEX["left_thumb3"]]] == "right_thumb3"
    assert flip[23] == 39 and flip[23 + 8] == 23 + 8  # jaw end <-> jaw end, chin stays


def test_shoemodel_subsets():
    assert len(K.SHOE_LEG) == 12 and len(set(K.SHOE_LEG)) == 12
    assert [K.NAMES[i] for i in K.SHOE_LEG[:6]] == ["left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle"]
    assert K.SHOE_LEG[6:] == K.FEET
    assert len(K.SHOE_FOOT) == 8 and set(K.SHOE_FOOT) < set(K.SHOE_LEG)
    assert set(K.SUBSETS) >= {"body", "feet", "face", "hands", "shoe_leg", "shoe_foot"}


def test_visible_count_and_json():
    kp = K.empty()
    kp[K.FEET, 2] = [0.9, 0.0, 0.5, 0.29, 0.3, 1.0]
    assert K.visible_count(kp, K.FEET, 0.3) == 3  # 0.3 itself is not above 0.3
    assert K.visible_count(kp, K.FEET, 0.0) == 5
    doc = K.to_json(kp)
    assert len(doc) == 133 and doc[17] == [0.0, 0.0, 0.9]
