"""Every model stage whose backend batches: a batch gives each image what it gets alone.

Tiny random checkpoints of the real architectures (the other test modules' builders), four
photos of four sizes in one batch vs one at a time through ``run_stage``. Numbers may differ in
the last float bits (padding, batched kernels), so floats compare with a tolerance; arrays in
members (latents, features) likewise. (pose/vitpose, caption/qwen2-vl and LaMa have their own
batched-vs-alone tests; OCR: tests/test_ocr_batch.py.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hoiforge.datasets.precomputed import decode_array
from hoiforge.pipeline.adapter import run_stage
from hoiforge.stages.testing import decoded
from tests.test_precompute import dino_dir, sd_dir  # noqa: F401 (fixtures)
from tests.test_quality import tiny_clip  # noqa: F401 (fixture)
from tests.test_segment_backends import PROMPT, tiny_grounding_dino, tiny_hf_sam  # noqa: F401 (fixtures)

DATA = Path(__file__).parent / "data"
PHOTOS = ["astronaut.png", "coffee.png", "basketball1.png", "scenetext01.jpg"]


def assert_close(a, b, path="ann"):
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            assert_close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_close(x, y, f"{path}[{i}]")
    elif isinstance(a, float):
        assert a == pytest.approx(b, rel=1e-3, abs=1e-3), path
    else:
        assert a == b, path


def batched_vs_alone(stage, prepare=lambda s: s):
    stage.preflight()
    batch = run_stage(stage, [prepare(decoded(DATA / n, i)) for i, n in enumerate(PHOTOS)])
    alone = [run_stage(stage, [prepare(decoded(DATA / n, i))])[0] for i, n in enumerate(PHOTOS)]
    for b, a in zip(batch, alone, strict=True):
        assert b.live == a.live and b.reason == a.reason
        drop = {"stages"}  # per-run timing and provenance
        assert_close({k: v for k, v in b.ann.items() if k not in drop}, {k: v for k, v in a.ann.items() if k not in drop})
        assert_close(
            {k: v for k, v in b.metrics.items() if not k.startswith("time")},
            {k: v for k, v in a.metrics.items() if not k.startswith("time")},
        )
        assert b.members.keys() == a.members.keys()
        for k in b.members:
            if k.endswith(".npy"):
                x, y = decode_array(b.members[k]).astype(np.float32), decode_array(a.members[k]).astype(np.float32)
                assert x.shape == y.shape and np.allclose(x, y, atol=1e-3), k
    return batch


def test_person_rtdetr(tmp_path):
    from hoiforge.stages.person import Person
    from tests.test_person_backends import tiny_rtdetr

    model = tiny_rtdetr(tmp_path / "rtdetr", 2.0)
    options = {"model": str(model), "device": "cpu"}
    out = batched_vs_alone(
        Person(Person.Params(stage="person", detector={"backend": "rtdetr", "options": options}, min_persons=0, max_persons=100))
    )
    assert all(s.ann["persons"] for s in out)


def test_quality_laion_aesthetic(tiny_clip):  # noqa: F811
    from hoiforge.stages.quality import Quality

    root = tiny_clip[0]
    options = {"clip_model": str(root / "clip"), "mlp_weights": str(root / "sac+logos+ava1-l14-linearMSE.pth"), "device": "cpu"}
    batched_vs_alone(
        Quality(Quality.Params(stage="quality", scorer={"backend": "laion-aesthetic", "options": options}, min_aesthetic=None))
    )


def test_products_grounding_dino_and_hf_sam(tiny_grounding_dino, tiny_hf_sam):  # noqa: F811
    from hoiforge.stages.products import Products

    stage = Products(Products.Params(stage="products", prompt=PROMPT, min_area=0.0, nms_iou=1.0, drop_if_none=False,
            detector={"backend": "grounding-dino", "options": {"model": tiny_grounding_dino, "box_threshold": 0.0, "text_threshold": 0.0}},
            segmenter={"backend": "hf-sam", "options": {"model": tiny_hf_sam}}))  # fmt: skip
    out = batched_vs_alone(stage)
    assert any(s.ann["products"] for s in out)


def test_precompute_vae_text_dino(sd_dir, dino_dir):  # noqa: F811
    from tests.test_precompute import _stage

    def prepare(s):
        s.members["txt"] = b"a person holding a red cup in front of a grey wall"
        h, w = s.rgb().shape[:2]
        from hoiforge.datasets.views import encode_strip

        s.members["views.jpg"] = encode_strip([np.ascontiguousarray(s.rgb()[: min(h, w), : min(h, w)])])
        return s

    batched_vs_alone(_stage(sd_dir, dino_dir, short_side=64), prepare)
