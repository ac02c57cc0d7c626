"""Wear labels: matched by relative path (a/001.jpg and b/001.jpg never share one), ambiguous names
refused, and a COCO RLE's declared size checked before anything is allocated for it."""

from __future__ import annotations

import io
import json
import tarfile
import tracemalloc

import numpy as np
import pytest
from PIL import Image

from hoiforge.datasets import wearable as W
from hoiforge.pipeline.adapter import run_stage
from hoiforge.pipeline.inputs import list_inputs
from hoiforge.stages.decode import Decode
from hoiforge.stages.testing import sample_from_file
from hoiforge.stages.wear_labels import WearLabels
from tests.conftest import DATA

SHOE = DATA / "shoe_crop.png"  # 64x44


def labels(value: int) -> np.ndarray:
    return np.full((44, 64), value, np.uint8)


def sample_at(relpath: str, index: int = 0):
    """A sample as the read step makes it for an input found at ``relpath`` under its input folder."""
    s = sample_from_file(SHOE, index)
    s.ann["source"]["path"] = relpath
    return run_stage(Decode(Decode.Params(stage="decode")), [s])[0]


def wear(sample) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(sample.members["wear.png"])))


def test_the_listing_records_each_inputs_relative_path(tmp_path):
    (tmp_path / "in" / "a").mkdir(parents=True)
    (tmp_path / "in" / "b").mkdir()
    for d in ("a", "b"):
        (tmp_path / "in" / d / "001.png").write_bytes(SHOE.read_bytes())
    with tarfile.open(tmp_path / "in" / "t.tar", "w") as tar:
        tar.add(SHOE, arcname="c/001.png")
    refs = list_inputs([str(tmp_path / "in")])
    assert sorted(r.relpath for r in refs) == ["a/001.png", "b/001.png", "c/001.png"]
    assert [r.relpath for r in list_inputs([str(tmp_path / "in" / "a" / "001.png")])] == ["001.png"]


def test_same_stem_in_two_folders_gets_two_labels(tmp_path):
    root = tmp_path / "labels"
    for d, value in (("a", 1), ("b", 2)):
        (root / d).mkdir(parents=True)
        Image.fromarray(labels(value)).save(root / d / "001.png")
    stage = WearLabels(WearLabels.Params(stage="wear_labels", labels_dir=str(root)))
    a, b, c = run_stage(stage, [sample_at("a/001.jpg", 0), sample_at("b/001.jpg", 1), sample_at("c/001.jpg", 2)])
    assert (wear(a) == 1).all() and (wear(b) == 2).all()
    assert c.status == "dropped" and c.reason == "no wear label for 'c/001'"


def test_a_bare_stem_label_is_not_given_to_nested_inputs(tmp_path):
    root = tmp_path / "labels"
    root.mkdir()
    Image.fromarray(labels(1)).save(root / "001.png")
    stage = WearLabels(WearLabels.Params(stage="wear_labels", labels_dir=str(root), if_missing="fail"))
    top, a, b = run_stage(stage, [sample_at("001.jpg", 0), sample_at("a/001.jpg", 1), sample_at("b/001.jpg", 2)])
    assert top.live and (wear(top) == 1).all()
    assert (a.status, a.reason) == ("failed", "no wear label for 'a/001'") and b.status == "failed"


def test_names_two_labels_claim_are_refused(tmp_path):
    root = tmp_path / "labels"
    (root / "a").mkdir(parents=True)
    Image.fromarray(labels(1)).save(root / "a" / "001.png")
    Image.fromarray(labels(2)).save(root / "a" / "001.PNG")
    coco = tmp_path / "wear.json"
    coco.write_text(
        json.dumps(
            {
                "images": [
                    {"id": 1, "file_name": "x/002.jpg", "width": 64, "height": 44},
                    {"id": 2, "file_name": "x/002.png", "width": 64, "height": 44},
                ],
                "annotations": [],
                "categories": [{"id": 1, "name": "visible"}, {"id": 2, "name": "wearable"}],
            }
        )
    )
    stage = WearLabels(WearLabels.Params(stage="wear_labels", labels_dir=str(root), coco_json=str(coco)))
    folder, in_coco = run_stage(stage, [sample_at("a/001.jpg", 0), sample_at("x/002.jpg", 1)])
    assert folder.status == "failed" and "ambiguous label: 2 labels claim 'a/001'" in folder.reason
    assert in_coco.status == "failed" and "ambiguous label: 2 labels claim 'x/002' (x/002.jpg, x/002.png)" in in_coco.reason


def test_a_coco_rle_is_size_checked_before_it_is_decoded():
    # 4000 x 4000 declared for a 64 x 44 image: decoding first would allocate 16 MB (and, scaled up,
    # any size the json claims) before the size comparison refused it.
    rle = {"size": [4000, 4000], "counts": [4000 * 4000]}
    tracemalloc.start()
    try:
        with pytest.raises(W.LabelError, match=r"RLE: declared size \[4000, 4000\] \(h, w\), image is 64x44"):
            W.rasterise(rle, 64, 44)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000, f"{peak} bytes allocated for a label that was refused"
    ok = W.rle_encode(labels(1).astype(bool))
    assert W.rasterise(ok, 64, 44).all()
