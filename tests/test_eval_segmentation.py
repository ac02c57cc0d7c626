from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hoiforge.metrics.segmentation import confusion_matrix, segmentation_scores

NAMES = ["background", "visible", "wearable"]


def test_confusion_matrix_counts_rows_target_columns_prediction():
    target = np.array([[0, 0, 1, 2], [2, 2, 1, 0]])
    pred = np.array([[0, 1, 1, 2], [2, 0, 1, 0]])
    cm = confusion_matrix(pred, target, 3)
    assert cm.tolist() == [[2, 1, 0], [0, 2, 0], [1, 0, 2]]
    assert cm.sum() == target.size


def test_scores_match_hand_computation():
    cm = np.array([[2, 1, 0], [0, 2, 0], [1, 0, 2]])
    s = segmentation_scores(cm, NAMES)
    # background: TP 2, FN 1, FP 1 -> IoU 2/4, Acc 2/3; visible: TP 2, FP 1 -> IoU 2/3, Acc 1; wearable: TP 2, FN 1 -> 2/3, 2/3
    assert s["IoU"] == pytest.approx({"background": 50.0, "visible": 200 / 3, "wearable": 200 / 3})
    assert s["Acc"] == pytest.approx({"background": 200 / 3, "visible": 100.0, "wearable": 200 / 3})
    assert s["mIoU"] == pytest.approx((50 + 200 / 3 + 200 / 3) / 3)
    assert s["mAcc"] == pytest.approx((200 / 3 + 100 + 200 / 3) / 3)
    assert s["aAcc"] == pytest.approx(100 * 6 / 8)
    assert s["pixels"] == 8


def test_perfect_prediction_is_100_and_ignore_index_is_skipped():
    rng = np.random.default_rng(0)
    target = rng.integers(0, 3, size=(2, 16, 16))
    target[0, :4] = 255
    pred = np.where(target == 255, 1, target)  # whatever is predicted on ignored pixels must not count
    s = segmentation_scores(confusion_matrix(pred, target, 3, ignore_index=255), NAMES)
    assert s["mIoU"] == s["mAcc"] == s["aAcc"] == 100.0
    assert s["pixels"] == (target != 255).sum()


def test_absent_class_is_nan_and_left_out_of_the_means():
    target = np.array([0, 0, 1, 1])
    pred = np.array([0, 1, 1, 1])
    s = segmentation_scores(confusion_matrix(pred, target, 3), NAMES)
    assert math.isnan(s["IoU"]["wearable"]) and math.isnan(s["Acc"]["wearable"])
    assert s["mIoU"] == pytest.approx((50 + 200 / 3) / 2)


def test_torch_tensors_and_accumulation():
    rng = np.random.default_rng(1)
    t = rng.integers(0, 3, size=(4, 8, 8))
    p = rng.integers(0, 3, size=(4, 8, 8))
    whole = confusion_matrix(p, t, 3)
    parts = sum(confusion_matrix(torch.from_numpy(p[i]), torch.from_numpy(t[i]), 3) for i in range(4))
    assert (whole == parts).all()


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(np.zeros((2, 2)), np.zeros((2, 3)), 3)
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix(np.array([0, 3]), np.array([0, 1]), 3)
    with pytest.raises(ValueError, match="class names"):
        segmentation_scores(np.eye(3), ["a", "b"])
