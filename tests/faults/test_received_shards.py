"""A received OUT attacking the trainer's loader, eval and validate (issue #27 items 1, 2, 13):
crafted RLE sizes, unbounded members, non-finite json, a pixel bomb in a header, a hard-link
member, a shard whose bytes are not the ones index.json lists. Each is a skipped-and-counted
sample, a one-line error or a reported violation; none kills the process."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from hoiforge.datasets.loader import ShardStream, shard_urls
from hoiforge.datasets.shard_read import ShardChecksumError
from hoiforge.datasets.vm_sample import SampleDecoder, SampleSpec, ShardDataError
from tests.conftest import DATA, png_with_declared_size
from tests.vm_shards import make_sample

SPEC = SampleSpec(resolution=64, view_size=32, crop="center")
ROOT = Path(__file__).resolve().parents[2]


def _samples(n: int, seed: int = 0) -> list[tuple[dict, dict]]:
    rng = np.random.default_rng(seed)
    photo = np.asarray(Image.open(DATA / "coffee.png").convert("RGB"))
    out = []
    for _ in range(n):
        ann, members, _, _ = make_sample(rng, photo, size=(96, 72), rle=True, views=None)
        out.append((ann, members))
    return out


def write_shards(root: Path, shards: list[list[tuple[dict, dict]]], split: str = "train") -> list[str]:
    """An OUT whose index lists each shard with its sha256; members in contract order; returns the keys."""
    (root / "shards").mkdir(parents=True, exist_ok=True)
    shardlist, keys = [], []
    for n, samples in enumerate(shards):
        url = f"shards/{split}-{n:06d}.tar"
        with tarfile.open(root / url, "w", format=tarfile.USTAR_FORMAT) as tar:
            for ann, members in samples:
                key = ann["id"]
                keys.append(key)
                body = {**members, "json": members.get("json", json.dumps(ann).encode())}
                for ext in ("jpg", "json", *sorted(k for k in body if k not in ("jpg", "json"))):
                    value = body[ext]
                    info = tarfile.TarInfo(f"{key}.{ext}")
                    if isinstance(value, tarfile.TarInfo):  # a link member, as given
                        value.name = info.name
                        tar.addfile(value)
                        continue
                    info.size = len(value)
                    tar.addfile(info, io.BytesIO(value))
        data = (root / url).read_bytes()
        shardlist.append({"url": url, "nsamples": len(samples), "filesize": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    index = {"__kind__": "wids-shard-index-v1", "wids_version": 1, "name": root.name, "shardlist": shardlist}
    for name in (f"index.{split}.json", "index.json"):
        (root / name).write_text(json.dumps(index))
    return keys


def _crafted(ann: dict, members_in: dict, **changes) -> tuple[dict, dict]:
    ann = json.loads(json.dumps(ann))
    members = dict(members_in)
    if "rle_size" in changes:
        for p in ann["products"]:
            p["rle"]["size"] = changes["rle_size"]
    if "json" in changes:
        members["json"] = changes["json"](ann)
    members.update(changes.get("members", {}))
    ann["id"] = changes.get("id", ann["id"])
    return ann, members


def _unique(samples):
    """Distinct keys per sample (the crafted copies share their source's id otherwise)."""
    return [(dict(a, id=f"{i:020x}"), m) for i, (a, m) in enumerate(samples)]


# -- item 1: RLE sizes ---------------------------------------------------------------------------------
CHILD = """
import logging, sys
logging.basicConfig(level=logging.WARNING, format="%(message)s")
from hoiforge.datasets.loader import ShardStream, shard_urls
from hoiforge.datasets.vm_sample import SampleDecoder, SampleSpec
stream = ShardStream(shard_urls(sys.argv[1]), SampleDecoder(SampleSpec(resolution=64, view_size=32, crop="center")),
                     batch_size=1, mode="eval")
print("KEYS", " ".join(s["__key__"] for s in stream.samples(0, 1)))
"""


def test_a_crafted_rle_size_is_refused_before_pycocotools_sees_it(tmp_path):
    good, other, third = _samples(3)
    samples = _unique([good, _crafted(*other, rle_size=[3_000_000_000, 3_000_000_000]), _crafted(*third, rle_size=[20000, 20000])])
    keys = write_shards(tmp_path, [samples])
    # In a child: a regression is pycocotools' SIGSEGV, which must fail this test, not end the test session.
    done = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("KEYS", 1)[1].split() == [keys[0]]
    lines = [ln for ln in done.stderr.splitlines() if ln.startswith("skipped sample")]
    assert len(lines) == 2, done.stderr[-2000:]
    assert "rle.size [3000000000, 3000000000] is not the image's [72, 96]" in lines[0] and "(1 skipped" in lines[0]
    assert "rle.size [20000, 20000]" in lines[1] and "(2 skipped" in lines[1]


def test_eval_refuses_a_crafted_rle_in_one_sentence(tmp_path):
    from hoiforge.errors import EvalError
    from hoiforge.eval.virtualmodel_eval import read_condition

    ann, members = _crafted(*_samples(1)[0], rle_size=[3_000_000_000, 3_000_000_000])
    members["json"] = json.dumps(ann).encode()
    with pytest.raises(EvalError, match=r"test sample x: products\[0\]: rle.size \[3000000000, 3000000000\] is not the image's"):
        read_condition("x", members)
    ann, members = _crafted(*_samples(1)[0], members={"jpg": png_with_declared_size(100_000, 100_000)})
    members["json"] = json.dumps(ann).encode()
    with pytest.raises(EvalError, match="test sample x: member .jpg declares more pixels than Pillow opens, above the reader's limit"):
        read_condition("x", members)


def _finished_out(root: Path, samples) -> list[str]:
    """write_shards plus what validate needs of a finished build (manifest, stats)."""
    keys = write_shards(root, [samples])
    rows = [{"key": f"in{i}.jpg", "status": "kept", "id": k, "shard": "shards/train-000000.tar"} for i, k in enumerate(keys)]
    pq.write_table(pa.Table.from_pylist(rows), root / "manifest.parquet")
    (root / "stats.json").write_text("{}")
    return keys


def test_validate_reports_crafted_rle_nan_and_a_hard_link_member(tmp_path):
    from hoiforge.datasets.validate import validate

    a, b, c, d = _samples(4)
    link = tarfile.TarInfo("x")
    link.type, link.linkname = tarfile.LNKTYPE, "/etc/passwd"
    samples = _unique(
        [
            a,
            _crafted(*b, rle_size=[3_000_000_000, 3_000_000_000]),
            _crafted(*c, json=lambda ann: json.dumps(ann).replace('"score": 0.8', '"score": NaN').encode()),
            _crafted(*d, members={"txt": link}),
        ]
    )
    keys = _finished_out(tmp_path, samples)
    problems = validate(tmp_path)  # before the fix: KeyError: "linkname '/etc/passwd' not found"
    joined = "\n".join(problems)
    assert f"{keys[1]}: products[0]: rle.size [3000000000, 3000000000] is not the image's [72, 96]" in joined
    assert f"{keys[2]}: json holds NaN" in joined
    assert f"{keys[3]}.txt is a hard link (to '/etc/passwd'), not a regular file" in joined
    assert not any(keys[0] in p and ("rle" in p or "json" in p or "link" in p) for p in problems)


# -- item 2: unbounded members, non-finite json ------------------------------------------------------------
def _bad_samples():
    good, big_txt, nan, inf, bomb, good2 = _samples(6, seed=1)
    return _unique(
        [
            good,
            _crafted(*big_txt, members={"txt": b"a" * 100_000_000}),  # 100 MB caption
            _crafted(*nan, json=lambda ann: json.dumps(ann).replace('"score": 0.8', '"score": NaN').encode()),
            _crafted(*inf, json=lambda ann: json.dumps(ann).replace('"score": 0.8', '"score": 1e999').encode()),
            _crafted(*bomb, members={"edge.png": png_with_declared_size(200_000, 200_000)}),
            good2,
        ]
    )


def test_oversized_members_nan_and_pixel_bombs_are_skipped_and_counted(tmp_path, caplog):
    keys = write_shards(tmp_path, [_bad_samples()])
    urls = shard_urls(tmp_path)
    caplog.set_level(logging.WARNING, "hoiforge.datasets")
    evald = [s["__key__"] for s in ShardStream(urls, SampleDecoder(SPEC), batch_size=1, mode="eval").samples(0, 1)]
    assert evald == [keys[0], keys[5]]
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("skipped sample")]
    assert len(lines) == 4, lines
    assert "member .txt is 100000000 bytes, above the reader's limit of 65536" in lines[0]
    assert "json holds NaN" in lines[1] and "json holds the non-finite number 1e999" in lines[2]
    assert "member .edge.png declares more pixels than Pillow opens" in lines[3] and lines[3].endswith(
        "(4 skipped by loader worker 0 of rank 0 so far)"
    )

    caplog.clear()  # the training stream: the same samples skipped, the run goes on
    train = ShardStream(urls, SampleDecoder(SPEC), batch_size=1, mode="train", shuffle_buffer=4)
    drawn = [s["__key__"] for _, s in zip(range(20), train.samples(0, 1), strict=False)]
    assert set(drawn) == {keys[0], keys[5]}
    assert any("member .txt is 100000000 bytes" in r.getMessage() for r in caplog.records)


def test_the_validation_batch_of_an_all_bad_out_is_one_error_not_a_traceback(tmp_path):
    samples = [s for i, s in enumerate(_bad_samples()) if i not in (0, 5)]
    write_shards(tmp_path, [samples])
    stream = ShardStream(shard_urls(tmp_path), SampleDecoder(SPEC), batch_size=1, mode="eval")
    assert next(iter(stream), None) is None  # train.py turns this into a ShardDataError naming the folder


# -- item 13: a shard that is not the one index.json lists ------------------------------------------------
def test_a_shard_whose_sha256_differs_is_never_trained_on(tmp_path, caplog):
    first, second = _samples(2, seed=2), _samples(2, seed=3)
    keys = write_shards(tmp_path, [_unique(first), [(dict(a, id=f"{i + 10:020x}"), m) for i, (a, m) in enumerate(second)]])
    urls = shard_urls(tmp_path)
    swapped = Path(urls[1])
    data = bytearray(swapped.read_bytes())
    data[600] ^= 0xFF  # one byte of the first member's data: the tar still reads
    swapped.write_bytes(bytes(data))

    caplog.set_level(logging.WARNING, "hoiforge.datasets")
    train = ShardStream(urls, SampleDecoder(SPEC), batch_size=1, mode="train", shuffle_buffer=2)
    drawn = {s["__key__"] for _, s in zip(range(12), train.samples(0, 1), strict=False)}
    assert drawn == set(keys[:2])
    assert any("sha256 differs from index.json" in r.getMessage() and "left out of training" in r.getMessage() for r in caplog.records)

    with pytest.raises(ShardChecksumError, match="train-000001.tar: its sha256 differs from index.json"):
        list(ShardStream(urls, SampleDecoder(SPEC), batch_size=1, mode="eval").samples(0, 1))
    with pytest.raises(ShardDataError, match="every shard of this run fails its sha256 check"):
        list(ShardStream(urls[1:], SampleDecoder(SPEC), batch_size=1, mode="train").samples(0, 1))
