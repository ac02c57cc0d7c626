"""Paper-grade person detectors: transformers RT-DETR (tiny random model of the real architecture,
saved and loaded like real weights) and ultralytics YOLO (skipped where it cannot import)."""

from pathlib import Path

import numpy as np
import pytest

from hoiforge.errors import BackendUnavailable
from hoiforge.models.registry import BACKENDS
from hoiforge.pipeline.adapter import run_stage
from hoiforge.stages.person import Person
from hoiforge.stages.testing import decoded

DATA = Path(__file__).parent / "data"
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

NUM_QUERIES = 4


def tiny_rtdetr(path: Path, person_logit: float) -> Path:
    """A 66k-parameter RT-DETR (ResNet backbone, hybrid encoder, 1 decoder layer), saved with its processor.

    The class heads are set so that every query says "person" with logit ``person_logit``: the
    boxes stay random, the label decision is known.
    """
    from transformers import RTDetrConfig, RTDetrForObjectDetection, RTDetrImageProcessorPil, RTDetrResNetConfig

    torch.manual_seed(0)
    backbone = RTDetrResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 16, 16], depths=[1, 1, 1, 1], layer_type="basic",
                                  out_features=["stage2", "stage3", "stage4"])  # fmt: skip
    config = RTDetrConfig(
        backbone_config=backbone, encoder_in_channels=[16, 16, 16], encoder_hidden_dim=16, encoder_ffn_dim=32,
        encoder_attention_heads=2, encoder_layers=1, d_model=16, decoder_in_channels=[16, 16, 16], decoder_ffn_dim=32,
        decoder_attention_heads=2, decoder_layers=1, num_queries=NUM_QUERIES, num_denoising=0,
        id2label={0: "person", 1: "cup"}, label2id={"person": 0, "cup": 1},
    )  # fmt: skip
    model = RTDetrForObjectDetection(config).eval()
    with torch.no_grad():
        for head in model.model.decoder.class_embed:
            head.weight.zero_()
            head.bias.copy_(torch.tensor([person_logit, -8.0]))
    model.save_pretrained(path)
    RTDetrImageProcessorPil(size={"height": 128, "width": 128}).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def all_person_model(tmp_path_factory):
    return tiny_rtdetr(tmp_path_factory.mktemp("rtdetr_person"), person_logit=8.0)


def test_registered():
    assert {"mediapipe", "yolo", "rtdetr"} <= set(BACKENDS["person-detector"])


def test_rtdetr_batch_of_different_sizes_maps_boxes_to_each_image(all_person_model):
    from hoiforge.models.hf_person import HFPersonDetector

    det = HFPersonDetector(model=str(all_person_model), min_score=0.5)
    images = [decoded(DATA / "basketball1.png").rgb(), decoded(DATA / "coffee.png").rgb()]  # 640x480, 600x400
    found = det.detect(images)
    assert [len(d) for d in found] == [NUM_QUERIES, NUM_QUERIES]

    # Postprocessing by hand from the raw outputs: sigmoid scores, cxcywh in [0,1] -> pixels of
    # each image (width scales x, height scales y).
    inputs = det.processor(images=images, return_tensors="pt")
    assert tuple(inputs["pixel_values"].shape) == (2, 3, 128, 128)
    with torch.no_grad():
        raw = det.model(pixel_values=inputs["pixel_values"])
    for img, dets, boxes in zip(images, found, raw.pred_boxes, strict=True):
        h, w = img.shape[:2]
        cx, cy, bw, bh = boxes.T.numpy()
        expected = np.stack([(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h], 1)
        expected = np.clip(expected, 0, [w, h, w, h])
        got = np.array([d.box for d in dets])
        assert np.allclose(np.sort(got, 0), np.sort(expected, 0), atol=0.05)
        for d in dets:
            assert d.label == "person" and d.source == "transformers-rt_detr"
            assert d.score == pytest.approx(1 / (1 + np.exp(-8.0)), abs=1e-4)


def test_person_stage_filters_on_rtdetr_counts(all_person_model, tmp_path):
    opts = {"model": str(all_person_model)}
    keep = Person(Person.Params(stage="person", detector={"backend": "rtdetr", "options": opts}))
    keep.preflight()
    s = run_stage(keep, [decoded(DATA / "astronaut.png")])[0]
    assert s.live and len(s.ann["persons"]) == NUM_QUERIES and s.metrics["persons"] == NUM_QUERIES
    assert s.ann["stages"]["person"]["backend"] == "rtdetr"

    too_many = Person(Person.Params(stage="person", max_persons=3, detector={"backend": "rtdetr", "options": opts}))
    s = run_stage(too_many, [decoded(DATA / "astronaut.png")])[0]
    assert s.status == "dropped" and s.reason == f"{NUM_QUERIES} persons at score >= 0.5 (need 1-3)"

    nobody = tiny_rtdetr(tmp_path / "nobody", person_logit=-8.0)
    s = run_stage(
        Person(Person.Params(stage="person", detector={"backend": "rtdetr", "options": {"model": str(nobody)}})),
        [decoded(DATA / "astronaut.png")],
    )[0]
    assert s.status == "dropped" and s.reason.startswith("0 persons")


def test_rtdetr_preflight_says_what_to_do(tmp_path):
    with pytest.raises(BackendUnavailable, match="no config.json"):
        Person(Person.Params(stage="person", detector={"backend": "rtdetr", "options": {"model": str(tmp_path)}})).preflight()
    with pytest.raises(BackendUnavailable, match="never downloads"):
        Person(
            Person.Params(stage="person", detector={"backend": "rtdetr", "options": {"model": "hoiforge-test/not-cached-anywhere"}})
        ).preflight()


def _ultralytics_importable() -> bool:
    # Through the backend's own import: a bare `import ultralytics` here (at collection) would patch
    # PIL.Image.open for the whole test session (see hoiforge.models.ultralytics_person).
    try:
        from hoiforge.models.ultralytics_person import import_yolo

        import_yolo()
    except Exception:  # noqa: BLE001 - missing or broken (torchvision mismatch)
        return False
    return True


def test_yolo_preflight_explains_why_it_cannot_run(tmp_path):
    stage = Person(Person.Params(stage="person", detector={"backend": "yolo", "options": {"model": str(tmp_path / "missing.pt")}}))
    with pytest.raises(BackendUnavailable, match="ultralytics|torchvision|not found"):
        stage.preflight()


@pytest.mark.skipif(not _ultralytics_importable(), reason="ultralytics does not import here (needs a torchvision matching torch)")
def test_yolo_tiny_model_batch(tmp_path):
    from PIL import Image

    from hoiforge.datasets.images import BadImage, normalise
    from hoiforge.models.ultralytics_person import UltralyticsPersonDetector, import_yolo

    YOLO = import_yolo()

    weights = tmp_path / "tiny.pt"
    YOLO("yolov8n.yaml").save(str(weights))  # real architecture, random weights, no download
    import hashlib

    own = hashlib.sha256(weights.read_bytes()).hexdigest()  # a model we made: pinned by the caller, as a recipe would
    det = UltralyticsPersonDetector(model=str(weights), device="cpu", min_score=0.0, trusted_sha256=[own])
    images = [decoded(DATA / "basketball1.png").rgb(), decoded(DATA / "coffee.png").rgb()]
    found = det.detect(images)
    assert len(found) == 2
    for img, dets in zip(images, found, strict=True):
        h, w = img.shape[:2]
        for d in dets:
            assert d.label == "person" and 0 <= d.box[0] <= d.box[2] <= w and 0 <= d.box[1] <= d.box[3] <= h
    assert sum(len(d) for d in found) > 0  # min_score=0: the random model does return boxes

    # Loading the backend leaves Pillow alone: non-images stay "not an image" in this process.
    assert Image.open.__module__ == "PIL.Image"
    with pytest.raises(BadImage, match="not an image"):
        normalise(b"GIF89a not really", max_pixels=10**8)
