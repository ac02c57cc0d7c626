"""RapidOCR batched across images: the detector runs once per same-shape group, and the batch
reads exactly what RapidOCR's own per-image call reads (boxes, text, scores, order)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hoiforge.stages.testing import decoded

pytest.importorskip("rapidocr_onnxruntime")
DATA = Path(__file__).parent / "data"


def test_batched_read_equals_per_image_read_and_groups_same_shapes():
    from hoiforge.models.ocr import RapidOCRReader

    reader = RapidOCRReader()
    scene = decoded(DATA / "scenetext01.jpg").rgb()
    images = [scene, scene[:, ::-1].copy(), decoded(DATA / "coffee.png").rgb(), (255 - scene).copy()]

    calls = []
    infer = reader._ocr.text_det.infer
    reader._ocr.text_det.infer = lambda x: calls.append(x.shape[0]) or infer(x)
    batched = reader.read(images)
    reader._ocr.text_det.infer = infer

    assert sorted(calls) == [1, 3]  # the three scene-text images share a detector input shape
    assert batched == reader.read_one_by_one(images)
    assert any(r.score >= 0.9 and r.det_score > 0.7 for r in batched[0])  # read text, with its detection score
    assert all(r.score < 0.5 for r in batched[2])  # the cup's pattern may be detected, never read as text
