"""Paper-grade whole-body pose: RTMW / DWPose 133-keypoint ONNX models through onnxruntime.

A thin wrapper instead of ``rtmlib`` (which requires two OpenCV variants at once): the same
top-down steps as rtmlib/DWPose's ``onnxpose``. Each person box is padded 1.25x, fit to the
model's aspect ratio and warped to its input size; pixels are normalised with ImageNet mean/std
in RGB, as mmpose trained these models (``bgr_to_rgb=True``). rtmlib and controlnet_aux feed
OpenCV's BGR instead; ``channel_order="bgr"`` reproduces them exactly. The two SimCC outputs
(``simcc_x``: N x 133 x W*2, ``simcc_y``: N x 133 x H*2) are decoded by argmax, the score is the
smaller of the two maxima, and locations map back through the inverse warp.

Weights: a local ``.onnx`` file, e.g. rtmlib's RTMW-x 384x288 (``rtmw-x_simcc-cocktail13_...onnx``)
or DWPose's ``dw-ll_ucoco_384.onnx``. Batched when the model's batch axis is dynamic, one crop
at a time when it is fixed; CUDA execution provider when onnxruntime-gpu has one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import cv2
import numpy as np

from hoiforge.datasets import keypoints as K
from hoiforge.errors import BackendUnavailable
from hoiforge.models.base import require
from hoiforge.models.registry import Weights

INSTALL = "pip install onnxruntime (or onnxruntime-gpu)"
MEAN = np.array([123.675, 116.28, 103.53], dtype=np.float32)
STD = np.array([58.395, 57.12, 57.375], dtype=np.float32)
SIMCC_SPLIT_RATIO = 2.0
BOX_PADDING = 1.25


def box_center_scale(box, input_wh: tuple[int, int], padding: float = BOX_PADDING) -> tuple[np.ndarray, np.ndarray]:
    """Centre and (w, h) of the region to crop: the box padded, then widened/heightened to the input aspect."""
    x0, y0, x1, y1 = box
    center = np.array([(x0 + x1) / 2, (y0 + y1) / 2], dtype=np.float64)
    w, h = (x1 - x0) * padding, (y1 - y0) * padding
    aspect = input_wh[0] / input_wh[1]
    w, h = (h * aspect, h) if w < h * aspect else (w, w / aspect)
    return center, np.array([w, h], dtype=np.float64)


def crop(rgb: np.ndarray, center: np.ndarray, scale: np.ndarray, input_wh: tuple[int, int], bgr: bool = False) -> np.ndarray:
    """The normalised 3 x H x W model input of one region (mmpose's top-down affine, rotation 0)."""
    s = input_wh[0] / scale[0]  # same factor in y: the region has the input's aspect ratio
    warp = np.array([[s, 0, input_wh[0] / 2 - s * center[0]], [0, s, input_wh[1] / 2 - s * center[1]]], dtype=np.float64)
    patch = cv2.warpAffine(rgb, warp, input_wh, flags=cv2.INTER_LINEAR)
    if bgr:
        patch = patch[..., ::-1]
    return ((patch.astype(np.float32) - MEAN) / STD).transpose(2, 0, 1)


def decode_simcc(simcc_x: np.ndarray, simcc_y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N x K x 2 input-pixel locations, N x K scores) from SimCC logits."""
    x, y = simcc_x.argmax(-1), simcc_y.argmax(-1)
    scores = np.minimum(simcc_x.max(-1), simcc_y.max(-1))
    locs = np.stack([x, y], -1).astype(np.float64) / SIMCC_SPLIT_RATIO
    return locs, scores


class RTMWOnnxPose:
    package = "onnxruntime"

    name = "rtmw"

    def __init__(self, model: Annotated[str | None, Weights("rtmw-x-wholebody", "rtmw-x-384x288.onnx")] = None, providers: list[str] | None = None, threads: int | None = None,
                 channel_order: str = "rgb"):  # fmt: skip
        self.check(model)
        if channel_order not in ("rgb", "bgr"):
            raise ValueError(f"channel_order must be 'rgb' or 'bgr', not {channel_order!r}")
        self.bgr = channel_order == "bgr"
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        available = ort.get_available_providers()
        providers = providers or [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        self.session = ort.InferenceSession(str(Path(model).expanduser()), opts, providers=providers)
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        n, c, h, w = inp.shape
        if not (isinstance(h, int) and isinstance(w, int)) or c != 3:
            raise BackendUnavailable(f"pose backend 'rtmw': {model} input {inp.shape} is not N x 3 x H x W with a fixed size")
        self.input_wh = (w, h)
        self.fixed_batch = n if isinstance(n, int) else None
        outs = [o.name for o in self.session.get_outputs()]
        self.output_names = ["simcc_x", "simcc_y"] if {"simcc_x", "simcc_y"} <= set(outs) else outs[:2]

    @classmethod
    def check(cls, model: str | None = None, **options) -> None:
        require("onnxruntime", INSTALL)
        if not model or not Path(model).expanduser().is_file():
            raise BackendUnavailable(
                f"pose backend 'rtmw': ONNX model {model!r} not found; set options.model to a local RTMW/DWPose 133-keypoint .onnx "
                "(e.g. rtmlib's rtmw-x 384x288 or DWPose's dw-ll_ucoco_384.onnx)"
            )

    def _run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        step = self.fixed_batch or len(batch)
        xs, ys = [], []
        for i in range(0, len(batch), step):
            sx, sy = self.session.run(self.output_names, {self.input_name: batch[i : i + step]})
            xs.append(sx)
            ys.append(sy)
        return np.concatenate(xs), np.concatenate(ys)

    def estimate(self, images: list[np.ndarray], boxes: list[list[tuple[float, float, float, float]]]) -> list[list[np.ndarray]]:
        regions = [(i, *box_center_scale(box, self.input_wh)) for i, image_boxes in enumerate(boxes) for box in image_boxes]
        results: list[list[np.ndarray]] = [[] for _ in images]
        if not regions:
            return results
        batch = np.stack([crop(images[i], c, s, self.input_wh, self.bgr) for i, c, s in regions])
        simcc_x, simcc_y = self._run(batch)
        if simcc_x.shape[1] != K.NUM_KEYPOINTS:
            raise ValueError(f"rtmw model predicts {simcc_x.shape[1]} keypoints, not 133")
        locs, scores = decode_simcc(simcc_x, simcc_y)
        size = np.array(self.input_wh, dtype=np.float64)
        for (i, center, scale), loc, score in zip(regions, locs, scores, strict=True):
            kp = np.zeros((K.NUM_KEYPOINTS, 3), dtype=np.float32)
            kp[:, :2] = loc / size * scale + center - scale / 2
            kp[:, 2] = np.clip(score, 0, 1)
            results[i].append(kp)
        return results
