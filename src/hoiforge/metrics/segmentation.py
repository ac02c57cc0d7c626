"""Semantic-segmentation scores from a confusion matrix (ShoeModel Table 5: WD IoU/Acc per class, mIoU, mAcc, aAcc).

The definitions are mmsegmentation's ``IoUMetric`` (the WD module was trained and scored with
mmseg): per class, IoU = TP / (TP + FP + FN) and Acc = TP / (TP + FN) (the class's recall);
aAcc = all TP / all labelled pixels; mIoU and mAcc are means over the classes that have a value
(a class absent from both target and prediction has no IoU; one absent from the target has no
Acc: NaN, left out of the means, as mmseg's ``nanmean``). Scores are in percent, as the papers
print them.

Accumulate over a test set by adding the per-batch matrices::

    cm = sum(confusion_matrix(p, t, 3, ignore_index=255) for p, t in batches)
    scores = segmentation_scores(cm, ["background", "visible", "wearable"])
"""

from __future__ import annotations

import math

import numpy as np


def _as_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor, possibly on a GPU
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def confusion_matrix(pred, target, num_classes: int, ignore_index: int | None = None) -> np.ndarray:
    """``num_classes`` x ``num_classes`` int64 counts, rows = target class, columns = predicted class.

    ``pred`` and ``target`` are integer label maps of the same shape (numpy arrays or torch
    tensors, any leading batch dimensions). Pixels whose target is ``ignore_index`` are not
    counted. A target or prediction outside ``[0, num_classes)`` (other than the ignored value)
    is an error, not silently dropped: it means the model and the labels disagree on the classes.
    """
    p, t = _as_numpy(pred), _as_numpy(target)
    if p.shape != t.shape:
        raise ValueError(f"prediction shape {p.shape} differs from target shape {t.shape}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    p, t = p.reshape(-1).astype(np.int64), t.reshape(-1).astype(np.int64)
    if ignore_index is not None:
        keep = t != ignore_index
        p, t = p[keep], t[keep]
    for name, values in (("target", t), ("prediction", p)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            bad = values[(values < 0) | (values >= num_classes)][0]
            raise ValueError(f"{name} holds class {bad}, outside [0, {num_classes}); set ignore_index for unlabelled pixels")
    return np.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _percent(numerator: float, denominator: float) -> float:
    return 100.0 * numerator / denominator if denominator > 0 else math.nan


def _nanmean(values: list[float]) -> float:
    present = [v for v in values if not math.isnan(v)]
    return sum(present) / len(present) if present else math.nan


def segmentation_scores(cm, class_names: list[str] | tuple[str, ...]) -> dict:
    """Per-class IoU and Acc, mIoU, mAcc, aAcc (percent) from a confusion matrix.

    Returns ``{"IoU": {name: float}, "Acc": {name: float}, "mIoU": float, "mAcc": float,
    "aAcc": float, "pixels": int}``; a class without a value holds NaN (see the module doc).
    """
    cm = _as_numpy(cm).astype(np.float64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"a confusion matrix is square, got shape {cm.shape}")
    if len(class_names) != cm.shape[0]:
        raise ValueError(f"{len(class_names)} class names for a {cm.shape[0]}-class confusion matrix")
    tp = np.diag(cm)
    label_area = cm.sum(axis=1)  # TP + FN
    pred_area = cm.sum(axis=0)  # TP + FP
    union = label_area + pred_area - tp
    iou = {name: _percent(tp[i], union[i]) for i, name in enumerate(class_names)}
    acc = {name: _percent(tp[i], label_area[i]) for i, name in enumerate(class_names)}
    return {
        "IoU": iou,
        "Acc": acc,
        "mIoU": _nanmean(list(iou.values())),
        "mAcc": _nanmean(list(acc.values())),
        "aAcc": _percent(tp.sum(), cm.sum()),
        "pixels": int(cm.sum()),
    }
