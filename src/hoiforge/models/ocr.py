"""Text reading (OCR): one result type, two backends running the PP-OCR models.

- ``rapidocr`` (embedded): ``rapidocr-onnxruntime`` ships the PP-OCRv4 detection/recognition and
  the direction classifier as ONNX files inside its wheel, so it reads text offline.
- ``paddleocr`` (paper-grade): PaddleOCR 3.x on paddlepaddle, with its detection and recognition
  models loaded from local directories (PaddleOCR downloads them at run time otherwise, which
  these machines cannot do).

Both return, per image, a list of ``TextRegion``: the detector's quadrilateral in pixels of the
input image, the recognised text, the recognition score and (rapidocr; paddleocr when its result
carries ``dt_scores``) the detection score: the mean text probability of the DB detector inside
the box. Recognition does not filter by default (``min_score`` 0): a watermark the recogniser
cannot read (mirrored, stylised, faint) still has a confident detection box, and the cleanup
stage's policy decides on both scores (``min_det_score`` / ``min_rec_score``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import numpy as np

from hoiforge.errors import BackendUnavailable
from hoiforge.models.base import require
from hoiforge.models.registry import Weights
from hoiforge.models.tasks import TextRegion


class RapidOCRReader:
    """PP-OCRv4 on onnxruntime, batched across images where it can be exact.

    The text detector (the costly model: the whole image at up to 2000 px) runs once per group of
    images whose detector input has the same shape, as one onnxruntime call; a batch of photos
    from one source mostly shares a size. Classification and recognition then run per image as
    RapidOCR does (its recogniser pads each batch of lines to the widest, so mixing the lines of
    several images would change the text read). Everything else is RapidOCR 1.4.4's own steps,
    in its order, so a batch reads exactly what one image at a time reads (tests/test_ocr_batch.py).
    """

    package = "rapidocr-onnxruntime"

    name = "rapidocr"
    INSTALL = "pip install --no-deps rapidocr-onnxruntime==1.4.4 pyclipper shapely six (run scripts/install.sh)"

    def __init__(self, min_score: float = 0.0, box_thresh: float = 0.5, unclip_ratio: float = 1.6, threads: int = -1):
        require("rapidocr_onnxruntime", self.INSTALL)
        from rapidocr_onnxruntime import RapidOCR

        self.min_score, self.box_thresh, self.unclip_ratio = min_score, box_thresh, unclip_ratio
        self._ocr = RapidOCR(text_score=min_score, intra_op_num_threads=threads)
        # RapidOCR computes each box's detection score and then drops it; run its detection steps
        # here instead (same preprocessing, model, post-processing, filtering and reading order) so
        # the scores stay attached to their boxes.
        self._det_scores: list[float] = []
        self._ocr.auto_text_det = self._detect

    @classmethod
    def check(cls, **options) -> None:
        require("rapidocr_onnxruntime", cls.INSTALL)
        require("onnxruntime", cls.INSTALL)

    def read(self, images: list[np.ndarray]) -> list[list[TextRegion]]:
        ocr, det = self._ocr, self._ocr.text_det
        # What RapidOCR.__call__ sets from its keyword arguments.
        det.postprocess_op.box_thresh, det.postprocess_op.unclip_ratio = self.box_thresh, self.unclip_ratio
        ocr.text_score = self.min_score

        prepared, det_inputs = [], []
        for rgb in images:
            img = ocr.load_img(np.ascontiguousarray(rgb[..., ::-1]))  # a numpy input is taken as BGR
            raw_h, raw_w = img.shape[:2]
            img, ratio_h, ratio_w = ocr.preprocess(img)
            img, record = ocr.maybe_add_letterbox(img, {"preprocess": {"ratio_h": ratio_h, "ratio_w": ratio_w}})
            prepared.append((img, record, raw_h, raw_w))
            det_inputs.append(det.get_preprocess(max(img.shape[0], img.shape[1]))(img))  # (1, 3, H, W) or None

        maps: list[np.ndarray | None] = [None] * len(images)
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i, x in enumerate(det_inputs):
            if x is not None:
                by_shape.setdefault(x.shape, []).append(i)
        for indices in by_shape.values():
            preds = det.infer(np.concatenate([det_inputs[i] for i in indices]))[0]
            for k, i in enumerate(indices):
                maps[i] = preds[k : k + 1]
        return [self._finish(ocr, det, *p, m) for p, m in zip(prepared, maps, strict=True)]

    def _finish(self, ocr, det, img: np.ndarray, record: dict, raw_h: int, raw_w: int, pred: np.ndarray | None) -> list[TextRegion]:
        """RapidOCR's steps after detection, for one image (TextDetector + RapidOCR.__call__)."""
        if pred is None:
            return []
        shape = img.shape[0], img.shape[1]
        boxes, det_scores = self._boxes_with_scores(det, pred, shape)
        if boxes is None:
            return []
        crops = ocr.get_crop_img_list(img, boxes)
        cls_res = None
        if ocr.use_cls:
            crops, cls_res, _ = ocr.text_cls(crops)
        rec_res, _ = ocr.text_rec(crops, False)
        boxes = ocr._get_origin_points(boxes, record, raw_h, raw_w)
        found, _ = ocr.get_final_res(boxes, cls_res, rec_res, 0.0, 0.0, 0.0)
        return self._regions(found, det_scores)

    def _read_one(self, rgb: np.ndarray) -> list[TextRegion]:
        """RapidOCR's own per-image call (with the detection scores kept by ``_detect``)."""
        # A numpy input is taken as BGR (OpenCV order) by RapidOCR.
        bgr = np.ascontiguousarray(rgb[..., ::-1])
        self._det_scores = []
        found, _ = self._ocr(bgr, box_thresh=self.box_thresh, unclip_ratio=self.unclip_ratio, text_score=0.0)
        return self._regions(found, self._det_scores)

    def _regions(self, found, det_scores: list[float]) -> list[TextRegion]:
        # With text_score 0 RapidOCR keeps every detected box, in the order the detection returned them.
        scores = det_scores if len(det_scores) == len(found or []) else [None] * len(found or [])
        return [
            TextRegion([(float(x), float(y)) for x, y in quad], str(text), float(score), det)
            for (quad, text, score), det in zip(found or [], scores, strict=True)
            if float(score) >= self.min_score
        ]

    def _detect(self, img: np.ndarray):
        """RapidOCR's ``auto_text_det`` (TextDetector.__call__ + sorted_boxes), keeping the box scores."""
        det = self._ocr.text_det
        prepared = det.get_preprocess(max(img.shape[:2]))(img)
        if prepared is None:
            return None, 0.0
        ordered, scores = self._boxes_with_scores(det, det.infer(prepared)[0], img.shape[:2])
        self._det_scores = scores
        return ordered, 0.0

    def _boxes_with_scores(self, det, pred: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray | None, list[float]]:
        """The detector's post-processing, sliver filter and reading order, each box with its score."""
        h, w = shape
        boxes, scores = det.postprocess_op(pred, (h, w))
        kept = []
        for box, score in zip(boxes, scores, strict=True):
            box = det.clip_det_res(det.order_points_clockwise(box), h, w)
            if int(np.linalg.norm(box[0] - box[1])) <= 3 or int(np.linalg.norm(box[0] - box[3])) <= 3:
                continue  # as filter_tag_det_res: slivers are no text
            kept.append((box, float(score)))
        if not kept:
            return None, []
        ordered = self._ocr.sorted_boxes(np.array([b for b, _ in kept]))
        remaining, ordered_scores = list(kept), []
        for box in ordered:  # sorted_boxes reorders (and may swap) boxes: find each one's score
            k = next(i for i, (b, _) in enumerate(remaining) if np.array_equal(b, box))
            ordered_scores.append(remaining.pop(k)[1])
        return ordered, ordered_scores

    def read_one_by_one(self, images: list[np.ndarray]) -> list[list[TextRegion]]:
        """RapidOCR's own per-image call: the reference the batched path is tested against."""
        return [self._read_one(img) for img in images]


class PaddleOCRReader:
    """PaddleOCR 3.x (``PaddleOCR.predict``) with local detection/recognition model directories.

    Files it loads: ``det_model_dir`` and ``rec_model_dir`` are PaddleOCR inference model
    directories (``inference.json`` or ``inference.pdmodel``, ``inference.pdiparams``,
    ``inference.yml``), e.g. PP-OCRv5_server_det and PP-OCRv5_server_rec. Document
    unwarping/orientation models are switched off: photos are upright after decode.
    """

    package = "paddleocr"

    name = "paddleocr"
    INSTALL = "pip install paddleocr paddlepaddle (large; optional extra), then give det_model_dir and rec_model_dir"

    def __init__(
        self,
        det_model_dir: Annotated[str | None, Weights("ppocr-v4-det")] = None,
        rec_model_dir: Annotated[str | None, Weights("ppocr-v4-rec")] = None,
        min_score: float = 0.0,
        device: str | None = None,
    ):
        self.check(det_model_dir=det_model_dir, rec_model_dir=rec_model_dir)
        # PaddleX probes its model hosters on import unless told not to; models here are local.
        os.environ.setdefault("PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK", "True")
        from paddleocr import PaddleOCR

        self.min_score = min_score
        self._ocr = PaddleOCR(
            text_detection_model_dir=det_model_dir,
            text_detection_model_name=_model_name(det_model_dir),
            text_recognition_model_dir=rec_model_dir,
            text_recognition_model_name=_model_name(rec_model_dir),
            use_doc_orientation_classify=False,
            use_doc_unwarping=False,
            use_textline_orientation=False,
            text_rec_score_thresh=min_score,
            device=device,
        )

    @classmethod
    def check(cls, det_model_dir: str | None = None, rec_model_dir: str | None = None, **options) -> None:
        require("paddleocr", cls.INSTALL)
        require("paddle", cls.INSTALL)
        for key, folder in (("det_model_dir", det_model_dir), ("rec_model_dir", rec_model_dir)):
            if not folder:
                raise BackendUnavailable(f"paddleocr: set options.{key} to a local PaddleOCR inference model directory (no downloads here)")
            if not (Path(folder) / "inference.pdiparams").is_file():
                raise BackendUnavailable(f"paddleocr: {key} {folder!r} holds no inference.pdiparams; export or copy the model there")

    def read(self, images: list[np.ndarray]) -> list[list[TextRegion]]:
        # PaddleOCR takes BGR arrays and predicts a list of inputs in one call.
        results = self._ocr.predict([np.ascontiguousarray(img[..., ::-1]) for img in images])
        return [regions_from_paddle(r, self.min_score) for r in results]


def _model_name(model_dir: str | None) -> str | None:
    """PaddleOCR checks a directory's model against its name; the name is in inference.yml."""
    if not model_dir:
        return None
    meta = Path(model_dir) / "inference.yml"
    if meta.is_file():
        from hoiforge import safe_yaml

        return (safe_yaml.load(meta.read_text()) or {}).get("Global", {}).get("model_name")
    return None


def regions_from_paddle(result, min_score: float) -> list[TextRegion]:
    """TextRegions of one PaddleOCR 3.x result (a mapping with rec_polys, rec_texts, rec_scores;
    detection scores when it carries ``dt_scores`` aligned with ``rec_polys``)."""
    polys, texts, scores = result["rec_polys"], result["rec_texts"], result["rec_scores"]
    det = result.get("dt_scores") if hasattr(result, "get") else None
    dets = list(det) if det is not None and len(det) == len(polys) else [None] * len(polys)
    return [
        TextRegion(
            [(float(x), float(y)) for x, y in np.asarray(poly).reshape(-1, 2)], str(text), float(score), None if d is None else float(d)
        )
        for poly, text, score, d in zip(polys, texts, scores, dets, strict=True)
        if float(score) >= min_score
    ]
