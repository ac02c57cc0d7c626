"""The VirtualModel shard loader: exactly-once eval splits, resampled training streams, one geometry for every
member, precomputed members and their fallbacks, and one-sentence errors."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from hoiforge.datasets.loader import ShardStream, first_sample, inspect_dataset, normalise, shard_urls, vm_loader
from hoiforge.datasets.render import render_pose
from hoiforge.datasets.vm_sample import (
    SampleDecoder,
    SampleSpec,
    ShardDataError,
    crop_padded,
    decode_image,
    jpeg_scale,
    mask_u8,
    product_mask,
    resize_crop,
    training_size,
)
from tests.vm_shards import write_out

pytestmark = pytest.mark.usefixtures("torch_one_thread")

SPEC = SampleSpec(resolution=64, view_size=32)


@pytest.fixture(scope="module")
def out10(tmp_path_factory) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("out10")
    return root, write_out(root, 10, per_shard=2)


def test_eval_mode_gives_each_rank_and_worker_disjoint_samples_covering_all_once(out10):
    out, keys = out10
    urls = shard_urls(out)
    seen: dict[tuple[int, int], list[str]] = {}
    for rank in range(2):
        stream = ShardStream(urls, SampleDecoder(SPEC), batch_size=3, mode="eval", rank=rank, world=2)
        for worker in range(2):
            seen[rank, worker] = [s["__key__"] for s in stream.samples(worker, 2)]
    counts = Counter(k for ks in seen.values() for k in ks)
    assert sorted(counts) == sorted(keys) and set(counts.values()) == {1}
    assert all(seen[slot] for slot in seen)  # 5 shards over 4 slots: nobody idle, nobody overlapping

    # Through a real DataLoader with 2 worker processes: batches, last one partial, every sample once.
    loader = vm_loader([out], SPEC, batch_size=3, mode="eval", workers=2, rank=0, world=1)
    batches = list(loader)
    got = [k for b in batches for k in b["key"]]
    assert sorted(got) == sorted(keys) and len(got) == len(set(got))
    assert batches[0]["image"].shape == (3, 64, 64, 3) and batches[0]["image"].dtype == torch.uint8
    b = normalise(batches[0])  # where the model is: floats, channels first, o = image x m
    assert b["image"].shape == (3, 3, 64, 64) and b["image"].min() >= -1 and b["image"].max() <= 1
    assert b["mask"].shape == (3, 1, 64, 64) and set(b["mask"].unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(b["object"], b["image"] * b["mask"]) and b["object"][(b["mask"] == 0).expand_as(b["object"])].abs().max() == 0


def test_training_stream_is_endless_reproducible_and_different_per_rank(out10):
    out, keys = out10
    urls = shard_urls(out)

    def first(rank, seed=0, start=0, n=25):
        stream = ShardStream(urls, SampleDecoder(SPEC), batch_size=2, mode="train", rank=rank, world=2, seed=seed, start_step=start)
        it = stream.samples(0, 1)
        return [(s["__key__"], s["product"], s["crop"]) for s, _ in zip(it, range(n))]

    a = first(0)
    assert len(a) == 25 and {k for k, _, _ in a} <= set(keys)  # resampled: more draws than samples
    assert a == first(0)  # same seed, rank, start: the same stream
    assert a != first(1) and a != first(0, start=7)


def test_one_resize_and_crop_for_image_mask_edges_pose_and_keypoints(tmp_path):
    out = tmp_path / "out"
    write_out(out, 1, sizes=((120, 80),))
    raw = first_sample(shard_urls(out)[0])
    ann = json.loads(raw["json"])
    s = SampleDecoder(SampleSpec(resolution=64, view_size=32, crop="random"))(raw, np.random.default_rng(3))
    size = training_size(120, 80, 64)
    assert size == (96, 64)
    x0, y0 = s["crop"]
    assert x0 % 8 == 0 and y0 % 8 == 0 and 0 <= x0 <= 32 and y0 == 0

    full = np.asarray(Image.open(io.BytesIO(raw["jpg"])).convert("RGB"))
    assert np.array_equal(s["image"], resize_crop(full, size, x0, y0, 64))
    # resize_crop computes only the crop; it lines up with cropping the full resize (what a latent is encoded from).
    reference = cv2.resize(full, size, interpolation=cv2.INTER_AREA)[y0 : y0 + 64, x0 : x0 + 64]
    assert np.abs(s["image"].astype(int) - reference).mean() < 3
    # The pose is drawn at training size from the crop's keypoints; or, on request, pose.png goes through the same crop.
    assert np.array_equal(s["pose"], render_pose(list(s["keypoints"]), 64, 64))
    member = SampleDecoder(SampleSpec(resolution=64, view_size=32, pose_source="member"))(raw, np.random.default_rng(3))
    pose = cv2.cvtColor(cv2.imdecode(np.frombuffer(raw["pose.png"], np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert member["crop"] == (x0, y0) and np.array_equal(member["pose"], resize_crop(pose, size, x0, y0, 64))
    ids = cv2.imdecode(np.frombuffer(raw["mask.png"], np.uint8), cv2.IMREAD_UNCHANGED)
    whole = (ids == ann["products"][s["product"]]["mask_index"]).astype(np.uint8) * 255
    assert np.array_equal(s["mask"], (resize_crop(whole, size, x0, y0, 64) >= 128).astype(np.uint8))
    assert not s["edges"][s["mask"] == 0].any()  # e inside m
    kp = np.asarray(ann["persons"][0]["keypoints"], np.float32)
    inside = (kp[:, 0] * 0.8 - x0 >= 0) & (kp[:, 0] * 0.8 - x0 < 64)
    assert np.allclose(s["keypoints"][0, inside, 0], kp[inside, 0] * 0.8 - x0, atol=1e-3)
    assert np.allclose(s["keypoints"][0, :, 1], kp[:, 1] * 0.8, atol=1e-3)
    assert (s["keypoints"][0, ~inside, 2] == 0).all()


def test_precomputed_latent_is_cropped_at_offset_over_8_and_used_only_for_matching_models(tmp_path):
    def precompute(ann, members, image):
        w, h = training_size(image.shape[1], image.shape[0], 64)
        yy, xx = np.mgrid[0 : h // 8, 0 : w // 8]
        latent = np.stack([yy * 100 + xx] * 4).astype(np.float16)  # each latent cell names its own position
        buf = io.BytesIO()
        np.save(buf, latent)
        members["latent.npy"] = buf.getvalue()
        ann["precompute"] = {"vae": "org/sd-test", "scaling_factor": 0.18215, "text_encoder": "x", "dino": "y", "resolution": 64}

    out = tmp_path / "out"
    write_out(out, 1, sizes=((80, 136),), precompute=precompute)
    raw = first_sample(shard_urls(out)[0])
    matching = SampleDecoder(SampleSpec(resolution=64, view_size=32, precomputed={"vae": "/weights/sd-test"}))
    for seed in range(4):
        s = matching(raw, np.random.default_rng(seed))
        x0, y0 = s["crop"]
        assert s["latent"].shape == (4, 8, 8)
        assert s["latent"][0, 0, 0] == (y0 // 8) * 100 + x0 // 8 and s["latent"][0, 7, 7] == (y0 // 8 + 7) * 100 + x0 // 8 + 7
    other = SampleDecoder(SampleSpec(resolution=64, view_size=32, precomputed={"vae": "another-vae"}))
    assert "latent" not in other(raw, np.random.default_rng(0))


def test_rle_keeps_an_overlapped_product_whole_and_the_instance_map_is_the_fallback():
    h, w = 40, 60
    under = np.zeros((h, w), np.uint8)
    under[5:30, 5:40] = 1
    over = np.zeros((h, w), np.uint8)
    over[15:35, 25:55] = 1
    ids = np.where(over > 0, 2, np.where(under > 0, 1, 0)).astype(np.uint8)
    from tests.vm_shards import _rle

    ann = {"products": [{"mask_index": 1, "rle": _rle(under)}, {"mask_index": 2, "rle": _rle(over)}]}
    assert np.array_equal(product_mask(ann, 0, ids, ids.shape), under.astype(bool))  # whole, although product 2 covers part of it
    del ann["products"][0]["rle"]
    assert np.array_equal(product_mask(ann, 0, ids, ids.shape), (ids == 1))  # fallback: only its visible pixels
    ann["products"][0]["rle"] = {"size": [], "counts": ""}  # the one-schema typed empty: no whole mask either
    assert np.array_equal(product_mask(ann, 0, ids, ids.shape), (ids == 1))


def test_close_view_is_the_views_tile_when_present_else_cut_from_the_image(tmp_path):
    with_views, without = tmp_path / "a", tmp_path / "b"
    write_out(with_views, 1, views=32, rle=True)
    write_out(without, 1)
    raw = first_sample(shard_urls(with_views)[0])
    s = SampleDecoder(SPEC)(raw, np.random.default_rng(0))
    strip = np.asarray(Image.open(io.BytesIO(raw["views.jpg"])).convert("RGB"))
    i = s["product"]
    assert np.array_equal(s["view"], strip[:, 32 * i : 32 * (i + 1)])
    # Same photo window without views.jpg: the fallback crop of the same square box is close to the tile.
    raw_b = first_sample(shard_urls(without)[0])
    s_b = SampleDecoder(SPEC)(raw_b, np.random.default_rng(0))
    assert s_b["view"].shape == (32, 32, 3)
    assert np.abs(s_b["view"].astype(int) - s["view"].astype(int)).mean() < 12


def test_inspect_dataset_gives_random_access(out10):
    out, keys = out10
    ds = inspect_dataset(out)
    assert len(ds) == 10 and ds[7]["__key__"] == keys[7] and "pose.png" in ds[7]
    decoded = inspect_dataset(out, spec=SPEC)
    assert decoded[4]["image"].shape == (64, 64, 3) and decoded[4]["__key__"] == keys[4]


def test_clear_errors_for_outputs_that_cannot_feed_the_trainer(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "manifest.parquet").write_bytes(b"")
    with pytest.raises(ShardDataError, match="no kept train samples"):
        vm_loader([empty], SPEC, batch_size=1, workers=0)
    zero = tmp_path / "zero"
    write_out(zero, 1)
    (zero / "index.train.json").write_text(json.dumps({"shardlist": [{"url": "shards/train-000000.tar", "nsamples": 0}]}))
    with pytest.raises(ShardDataError, match="lists no kept samples"):
        vm_loader([zero], SPEC, batch_size=1, workers=0)

    # edge.png is not needed: e is computed from the crop (test_edges_are_computed_from_the_crop_as_generation_does).
    cases = {("edge.png",): None, ("txt",): None, ("mask.png",): "'mask.png'.*`products` stage"}
    for drop, pattern in cases.items():
        out = tmp_path / f"no-{drop[0]}"
        write_out(out, 2, drop=drop)
        if pattern is None:  # the caption is also in the json: the txt member is not needed; edges come from the crop
            vm_loader([out], SPEC, batch_size=1, workers=0)
            continue
        with pytest.raises(ShardDataError, match=pattern):
            vm_loader([out], SPEC, batch_size=1, workers=0)
    with pytest.raises(ShardDataError, match="'latent.npy'.*`precompute` stage"):
        vm_loader([tmp_path / "no-txt"], SPEC, batch_size=1, workers=0, require=("latent.npy",))


ABANDON = """
import sys
from hoiforge.datasets.loader import vm_loader
from hoiforge.datasets.vm_sample import SampleSpec

def main():
    spec = SampleSpec(resolution=64, view_size=32)
    loader = vm_loader([sys.argv[1]], spec, batch_size=2, mode="train", workers=2, shuffle_buffer=4)
    first = iter(loader)
    for _ in range(3):
        next(first)
    del first  # stopped mid-stream with batches in flight, as a trainer does at --max-steps
    second = iter(loader)
    next(second)
    return second  # this one is still running when the interpreter exits

if __name__ == "__main__":
    keep = main()
    print("stopped")
"""


def test_a_script_that_stops_iterating_exits_cleanly(out10, tmp_path):
    """Workers told to stop with a batch still in their queue's feeder thread used to die of SIGABRT
    ("terminate called without an active exception") and the parent printed a traceback from ``__del__``.
    That is a race (about 1 run in 3 of 512-px batches with 4 workers, none in 30+ since ``_exit_now``);
    at this test's size it rarely fires even without the fix, so this checks the exit path stays clean
    rather than reliably reproducing the old abort."""
    out, _ = out10
    script = tmp_path / "abandon.py"
    script.write_text(ABANDON)
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root / "src"), "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([sys.executable, str(script), str(out)], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "stopped"
    for line in ("Traceback", "terminate called", "Aborted"):
        assert line not in done.stderr, done.stderr


def _pil_decode(data: bytes, at_least=None) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        if at_least is not None:
            img.draft("RGB", at_least)
        return np.asarray(img.convert("RGB"))


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_jpeg_decode_through_opencv_equals_pil_at_every_dct_scale(mode):
    """decode_image reads RGB/greyscale JPEGs with cv2.imdecode (one copy less, ~35% less CPU): the pixels
    and the reduced DCT scale PIL's draft would pick must be the same, so nothing downstream changes."""
    photo = Image.open(Path(__file__).parent / "data" / "scenetext01.jpg").convert(mode)
    buf = io.BytesIO()
    photo.save(buf, "JPEG", quality=90)
    data = buf.getvalue()
    w, h = photo.size
    for at_least in (None, (w, h), (w // 2, h // 2), (w // 3, h // 3), (w // 5, h // 4), (w // 9, h // 9), (2 * w, h)):
        got, want = decode_image(data, at_least), _pil_decode(data, at_least)
        assert got.shape == want.shape and got.dtype == np.uint8 and np.array_equal(got, want), at_least
    assert jpeg_scale((800, 600), (400, 300)) == 2 and jpeg_scale((800, 600), (401, 300)) == 1 and jpeg_scale((800, 600), None) == 1


def test_fast_close_view_shrink_stays_within_a_few_grey_levels_of_inter_area():
    """Close views (DINOv2 input) shrink with an integer INTER_AREA step then bilinear, not INTER_AREA by a
    non-integer factor (5-8x the CPU); on a text-heavy photo the result stays close to INTER_AREA's."""
    photo = np.asarray(Image.open(Path(__file__).parent / "data" / "scenetext01.jpg").convert("RGB"))
    for side in (300, 450, 599):
        box = (40, 0, 40 + side, side)
        fast = crop_padded(photo, box, 224, fast=True)
        reference = cv2.resize(np.ascontiguousarray(photo[:side, 40 : 40 + side]), (224, 224), interpolation=cv2.INTER_AREA)
        assert fast.shape == reference.shape == (224, 224, 3)
        assert np.abs(fast.astype(int) - reference).mean() < 6, side
    assert np.array_equal(crop_padded(photo, (0, 0, 224, 224), 224, fast=True), photo[:224, :224])  # no resize: untouched


def test_rle_mask_to_uint8_in_row_order_is_exact():
    """RLE masks decode column-major; mask_u8 turns them row-major 0/255 without numpy's slow strided copy."""
    from tests.vm_shards import _rle

    rng = np.random.default_rng(0)
    mask = rng.random((47, 61)) > 0.6
    decoded = product_mask({"products": [{"rle": _rle(mask.astype(np.uint8))}]}, 0, None, mask.shape)
    assert decoded.flags.f_contiguous and not decoded.flags.c_contiguous  # pycocotools' layout, the case that matters
    for m in (decoded, mask):
        out = mask_u8(m)
        assert out.flags.c_contiguous and out.dtype == np.uint8 and np.array_equal(out, mask.astype(np.uint8) * 255)


def test_edges_are_computed_from_the_crop_as_generation_does(tmp_path):
    """e at training resolution: Canny 75/100 of the crop inside m, equal to what generation computes from the same pixels."""
    from hoiforge.training.virtualmodel.pipeline import product_conditions

    out = tmp_path / "out"
    write_out(out, 2, sizes=((640, 480), (480, 640)), drop=("edge.png",))
    for url in shard_urls(out):
        raw = first_sample(url)
        s = SampleDecoder(SampleSpec(resolution=128, view_size=32))(raw, np.random.default_rng(0))
        generated = product_conditions(s["image"], s["mask"], 32)
        assert np.array_equal(s["edges"], generated["edges"])
        assert s["edges"].any() and set(np.unique(s["edges"])) <= {0, 255}  # 1-px lines at full strength, not shrunk to grey
        assert not s["edges"][s["mask"] == 0].any()
    # The build's edge.png at source size, shrunk as the loader once did, leaves faint lines: what this replaced.
    big = tmp_path / "big"
    write_out(big, 1, sizes=((640, 480),))
    member = cv2.imdecode(np.frombuffer(first_sample(shard_urls(big)[0])["edge.png"], np.uint8), cv2.IMREAD_GRAYSCALE)
    shrunk = cv2.resize(member, (160, 120), interpolation=cv2.INTER_AREA)
    assert 0 < shrunk[shrunk > 0].mean() < 128


class FailingDecoder(SampleDecoder):
    """The loader's decoder, failing on the given keys as a damaged member would (module level: the
    DataLoader's spawned workers unpickle it)."""

    def __init__(self, spec: SampleSpec, bad: set[str]):
        super().__init__(spec)
        self.bad = bad

    def __call__(self, sample, rng):
        if sample["__key__"] in self.bad:
            raise ValueError("a damaged member")
        return super().__call__(sample, rng)


def test_batches_carry_how_many_samples_their_worker_skipped(out10):
    """A sample whose decode fails is skipped, and the next batch of that worker says so (the
    trainer sums these into metrics.jsonl): here every sample of one shard fails, in eval mode
    (each sample once), in a real DataLoader with two worker processes."""
    out, keys = out10
    urls = shard_urls(out)
    bad = set(keys[:2])
    from hoiforge.datasets.loader import make_loader

    stream = ShardStream(urls, FailingDecoder(SPEC, bad), batch_size=2, mode="eval", rank=0, world=1, drop_last=False)
    batches = list(make_loader(stream, 2))
    got = [k for b in batches for k in b["key"]]
    assert sorted(got) == sorted(set(keys) - bad)
    assert sum(b["skipped"] for b in batches) == len(bad)
