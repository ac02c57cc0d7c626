"""Scoring generated images against a test split's conditions (the body of ``eval virtualmodel``), with the real backends."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hoiforge.datasets import keypoints as K
from hoiforge.datasets.contract import sample_id
from hoiforge.datasets.masks import encode_mask
from hoiforge.eval.scoring import (
    VirtualModelCondition,
    iter_split_samples,
    scaled_to,
    score_virtualmodel,
    virtualmodel_condition,
    virtualmodel_row,
    write_split_images,
)
from hoiforge.eval.tables import GenerationSettings, markdown
from hoiforge.metrics.pose import PersonPose
from tests.eval_helpers import build_tiny_clip

DATA = Path(__file__).parent / "data"


def _png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    return buf.getvalue()


def build_test_split(out: Path, pose_backend) -> list[str]:
    """A one-shard test split in the sample contract: image, annotation (persons with 133 keypoints), caption, product mask."""
    from hoiforge.models.mediapipe_person import MediapipePersonDetector

    detector = MediapipePersonDetector()
    (out / "shards").mkdir(parents=True)
    ids = []
    with tarfile.open(out / "shards" / "test-000000.tar", "w") as tar:
        for name, caption in (
            ("basketball1.png", "basketball players"),
            ("coffee.png", "a cup of coffee"),
            ("astronaut.png", "an astronaut"),
        ):
            data = (DATA / name).read_bytes()
            rgb = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
            sid = sample_id(data)
            boxes = [tuple(d.box) for d in detector.detect([rgb])[0]]
            kps = pose_backend.estimate([rgb], [boxes])[0] if boxes else []
            ann = {
                "image": {"width": rgb.shape[1], "height": rgb.shape[0], "ext": "png"},
                "persons": [{"box": list(b), "keypoints": K.to_json(kp)} for b, kp in zip(boxes, kps, strict=True)],
                "products": [{"label": "cup"}] if name == "coffee.png" else [],
            }
            members = {"png": data, "json": json.dumps(ann).encode(), "txt": caption.encode()}
            if name == "coffee.png":
                members["mask.png"] = encode_mask(
                    (np.asarray(Image.open(DATA / "coffee_cup_mask.png").convert("L")) > 127).astype(np.uint8)
                )
            for ext, payload in members.items():
                info = tarfile.TarInfo(f"{sid}.{ext}")
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
            ids.append(sid)
    return ids


def test_conditions_are_rescaled_to_the_generated_size():
    kp = np.zeros((133, 3))
    kp[0] = [100, 50, 0.9]
    mask = np.zeros((200, 400), bool)
    mask[20:40, 100:200] = True
    cond = VirtualModelCondition("x" * 20, "c", [PersonPose((10, 20, 110, 220), kp)], mask, (200, 400))
    persons, m = scaled_to(cond, 100, 800)
    assert persons[0].box == (20, 10, 220, 110) and persons[0].keypoints[0].tolist() == [200, 25, 0.9]
    assert m.shape == (100, 800) and m.sum() == 10 * 200 and m[10:20, 200:400].all()  # rows halved, columns doubled
    assert cond.persons[0].keypoints[0, 0] == 100  # the condition itself is unchanged


def test_score_virtualmodel_on_generated_images_equal_to_the_real_ones(tmp_path):
    pytest.importorskip("mediapipe")
    from hoiforge.models.mediapipe_pose import MediapipeHolisticPose

    pose = MediapipeHolisticPose()
    out = tmp_path / "build"
    ids = build_test_split(out, pose)
    samples = list(iter_split_samples(out, "test"))
    assert [sid for sid, _ in samples] == ids and next(iter(iter_split_samples(out, "test", limit=1)))[0] == ids[0]
    conditions = [virtualmodel_condition(sid, members) for sid, members in samples]
    assert [len(c.persons) > 0 for c in conditions] == [True, False, True]
    assert conditions[1].product_mask is not None and conditions[1].caption == "a cup of coffee"

    real = write_split_images(out, tmp_path / "real")
    fake = tmp_path / "generated"
    fake.mkdir()
    for c in conditions:  # a "generator" that reproduces the test image: every metric at its best
        (fake / c.file).write_bytes((real / f"{c.id}.png").read_bytes())
    scores = score_virtualmodel(
        fake,
        real,
        conditions,
        pose_backend=pose,
        segment_backends={"segmenter": "embedded"},
        oer_box_scale=1.1,
        clip_model=str(build_tiny_clip(tmp_path / "clip")),
        resolution=256,
        fid_method="eigh",
        cache_dir=tmp_path / "cache",
        progress=False,
    )
    assert abs(scores["fid"]) < 1e-3 and (scores["n_real"], scores["n_fake"], scores["clip_n"]) == (3, 3, 3)
    assert scores["ap"] == pytest.approx(100.0) and scores["pose"]["body"]["AR"] == pytest.approx(100.0)
    assert 0 <= scores["oer_pct"] < 30 and scores["oer_n"] == 1  # the cup re-segmented on the same photo

    row = virtualmodel_row("VirtualModel", scores, GenerationSettings(steps=30, cfg=7.0, resolution="short side 256", seed=0, n=3))
    table = markdown("virtualmodel-table1", [row], compare=True)
    assert "| VirtualModel | OHG | 0.00 |" in table and "| VirtualModel (paper) | OHG | 18.37 |" in table

    (fake / conditions[0].file).unlink()
    with pytest.raises(Exception, match="1 generated image"):
        score_virtualmodel(
            fake, real, conditions, pose_backend=pose, resolution=256, fid_method="eigh", progress=False, cache_dir=tmp_path / "c2"
        )
