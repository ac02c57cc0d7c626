"""Text reading (OCR): one result type, two backends running the PP-OCR models.

- ``rapidocr`` (embedded): ``rapidocr-onnxruntime`` ships the PP-OCRv4 detection/recognition and
  the direction classifier as ONNX files inside its wheel, so it reads text offline.
- ``paddleocr`` (paper-grade): PaddleOCR 3.x on paddlepaddle, with its detection and recognition
  models loaded from local directories (PaddleOCR downloads them at run time otherwise, which
  these machines cannot do).

Both return, per image, a list of ``TextRegion``: the detector's quadrilateral in pixels of the
input image, the recognised text and the recognition score.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Protocol

import numpy as np

from hoiforge.errors import BackendUnavailable
from hoiforge.models.base import require
from hoiforge.models.registry import Weights


@dataclass
class TextRegion:
    polygon: list[tuple[float, float]]  # detector quadrilateral (4+ points), x, y in pixels
    text: str
    score: float

    @property
    def box(self) -> tuple[float, float, float, float]:
        xs, ys = zip(*self.polygon)
        return min(xs), min(ys), max(xs), max(ys)

    def to_json(self) -> dict:
        return {
            "polygon": [[round(float(x), 1), round(float(y), 1)] for x, y in self.polygon],
            "box": [round(float(v), 1) for v in self.box],
            "text": self.text,
            "score": round(float(self.score), 4),
        }


class TextReader(Protocol):
    name: str

    def read(self, images: list[np.ndarray]) -> list[list[TextRegion]]: ...


class RapidOCRReader:
    """PP-OCRv4 on onnxruntime. One image per call (the library batches the text lines inside)."""

    package = "rapidocr-onnxruntime"

    name = "rapidocr"
    INSTALL = "pip install --no-deps rapidocr-onnxruntime==1.4.4 pyclipper shapely six (run scripts/install.sh)"

    def __init__(self, min_score: float = 0.5, box_thresh: float = 0.5, unclip_ratio: float = 1.6, threads: int = -1):
        require("rapidocr_onnxruntime", self.INSTALL)
        from rapidocr_onnxruntime import RapidOCR

        self.min_score, self.box_thresh, self.unclip_ratio = min_score, box_thresh, unclip_ratio
        self._ocr = RapidOCR(text_score=min_score, intra_op_num_threads=threads)

    @classmethod
    def check(cls, **options) -> None:
        require("rapidocr_onnxruntime", cls.INSTALL)
        require("onnxruntime", cls.INSTALL)

    def read(self, images: list[np.ndarray]) -> list[list[TextRegion]]:
        return [self._read_one(img) for img in images]

    def _read_one(self, rgb: np.ndarray) -> list[TextRegion]:
        # A numpy input is taken as BGR (OpenCV order) by RapidOCR.
        bgr = np.ascontiguousarray(rgb[..., ::-1])
        found, _ = self._ocr(bgr, box_thresh=self.box_thresh, unclip_ratio=self.unclip_ratio, text_score=self.min_score)
        return [TextRegion([(float(x), float(y)) for x, y in quad], str(text), float(score)) for quad, text, score in found or []]


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
        min_score: float = 0.5,
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
        import yaml

        return (yaml.safe_load(meta.read_text()) or {}).get("Global", {}).get("model_name")
    return None


def regions_from_paddle(result, min_score: float) -> list[TextRegion]:
    """TextRegions of one PaddleOCR 3.x result (a mapping with rec_polys, rec_texts, rec_scores)."""
    polys, texts, scores = result["rec_polys"], result["rec_texts"], result["rec_scores"]
    return [
        TextRegion([(float(x), float(y)) for x, y in np.asarray(poly).reshape(-1, 2)], str(text), float(score))
        for poly, text, score in zip(polys, texts, scores, strict=True)
        if float(score) >= min_score
    ]
