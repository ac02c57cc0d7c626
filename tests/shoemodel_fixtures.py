"""A real shoe-leg OUT without Ray: the shoeleg recipe's stages run in-process on basketball1.png, written by the shard writer.

The sample gets its wearable-area label from the hand-made fixture label
(tests/data/wear_labels/shoe_crop.png: visible = the traced left shoe, wearable = a patch at its
collar, pasted at the crop's origin in basketball1.png) through the real wear_labels stage, so the
WD tests see all three classes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

DATA = Path(__file__).parent / "data"
CROP_ORIGIN = (100, 436)  # where shoe_crop.png was cut from basketball1.png (tests/data/SOURCES.md)


def full_frame_wear_label(folder: Path) -> Path:
    """labels_dir/basketball1.png: the fixture's hand label at its place in the 640x480 photo."""
    crop = np.asarray(Image.open(DATA / "wear_labels" / "shoe_crop.png"))
    full = np.zeros((480, 640), np.uint8)
    x, y = CROP_ORIGIN
    full[y : y + crop.shape[0], x : x + crop.shape[1]] = crop
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(full, mode="L").save(folder / "basketball1.png")
    return folder


def shoeleg_samples(tmp: Path, wear: bool = True):
    """basketball1.png through decode, person, pose (leg_json), shoes (cut-off shoes kept) and, with ``wear``, wear_labels."""
    from hoiforge.pipeline.adapter import run_stage
    from hoiforge.stages.person import Person
    from hoiforge.stages.pose import Pose
    from hoiforge.stages.shoes import Shoes
    from hoiforge.stages.testing import decoded
    from hoiforge.stages.wear_labels import WearLabels

    samples = [decoded(DATA / "basketball1.png", 0)]
    samples = run_stage(Person(Person.Params(stage="person")), samples)
    samples = run_stage(Pose(Pose.Params(stage="pose", min_score=0.3, leg_json=True)), samples)
    samples = run_stage(Shoes(Shoes.Params(stage="shoes", cut_off="keep", bootstrap_wear=wear)), samples)
    if wear:
        labels = full_frame_wear_label(tmp / "labels")
        samples = run_stage(WearLabels(WearLabels.Params(stage="wear_labels", labels_dir=str(labels))), samples)
    assert all(s.live for s in samples), [s.reason for s in samples]
    return samples


def write_out(
    out: Path, samples, drop_members: tuple[str, ...] = (), split: str = "train", copies: int = 1, caption: str | None = None
) -> Path:
    """OUT/shards/<split>-000000.tar + OUT/index.<split>.json (wids), as a build writes them.

    ``copies`` > 1 writes each sample that many times under distinct ids (the id's last two hex
    digits replaced), ``caption`` adds a ``txt`` member: a test split of several captioned samples
    from the one fixture photo.
    """
    from hoiforge.datasets.contract import sample_id
    from hoiforge.pipeline.writer import sample_members, write_tar

    (out / "shards").mkdir(parents=True, exist_ok=True)
    rows = []
    for s in samples:
        members = {k: v for k, v in sample_members(s).items() if k not in drop_members}
        if caption is not None:
            members["txt"] = caption.encode()
        key = sample_id(s.image)
        rows += [(key if copies == 1 else f"{key[:-2]}{k:02x}", members) for k in range(copies)]
    url = f"shards/{split}-000000.tar"
    info = write_tar(out / url, rows)
    index = {
        "__kind__": "wids-shard-index-v1",
        "wids_version": 1,
        "name": f"out-{split}",
        "shardlist": [{"url": url, "nsamples": len(rows), "filesize": info.get("filesize", 0)}],
    }
    (out / f"index.{split}.json").write_text(json.dumps(index))
    return out
