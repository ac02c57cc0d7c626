"""Shard writer MB/s vs a raw ``tarfile`` write of the same bytes.

The writer under test is ``pipeline.writer.write_part``, what every Ray write task runs: exact
dedup, split assignment, rolling into shards by count and bytes, tar members laid out as
webdataset does (sorted extensions, USTAR), sha256 + size of every tar for the index, atomic
rename, and the parquet manifest part (the commit marker). The baseline writes the very same
``(name, bytes)`` members with ``tarfile.open(path, "w")`` and nothing else. Samples look like
HoIHuman's: a ~250 KB JPEG-sized payload, the json annotations, a caption, an edge PNG and a
products mask PNG (random bytes: nothing here compresses or decodes them).

Both write into the same folder and both make every tar durable (the writer's commit fsyncs
each tar before its rename, so the baseline fsyncs each of its tars too; ``--no-fsync`` drops the
baseline's fsync to compare against page-cache writes).
Each side runs ``--repeats`` times, alternating, and the best run counts (shared CPUs are noisy).

    python bench/writer_throughput.py --samples 2000 --repeats 5

Last line: writer/raw MB/s ratio (target >= 0.9).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import shutil
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np


def synthetic_samples(n: int, seed: int = 0):
    from hoiforge.stages.base import Sample

    rng = np.random.default_rng(seed)
    samples = []
    for i in range(n):
        image = rng.integers(0, 256, int(rng.integers(150_000, 350_000)), dtype=np.uint8).tobytes()
        sid = hashlib.sha256(image[:4096] + i.to_bytes(8, "little")).hexdigest()[:20]
        ann = {
            "id": sid,
            "source": {
                "uri": f"s3://bucket/photos/{i:09d}.jpg",
                "member": None,
                "sha256": hashlib.sha256(image).hexdigest(),
                "size": len(image),
            },
            "image": {"ext": "jpg", "width": 1024, "height": 1365},
            "persons": [{"box": [10.5, 20.25, 500.0, 1300.0], "score": 0.93, "keypoints": rng.random((133, 3)).round(2).tolist()}],
            "products": [{"label": "bottle", "box": [300, 400, 420, 700], "area": 0.03, "score": 0.61}],
            "caption": {
                "text": "a woman holding a bottle in front of a grey wall " * 4,
                "backend": "qwen2-vl",
                "prompt": "describe",
                "model": "Qwen",
            },
        }
        members = {
            "txt": ann["caption"]["text"].encode(),
            "edges.png": rng.integers(0, 256, 12_000, dtype=np.uint8).tobytes(),
            "products.png": rng.integers(0, 256, 6_000, dtype=np.uint8).tobytes(),
        }
        samples.append(
            Sample(
                key=ann["source"]["uri"],
                index=i,
                uri=ann["source"]["uri"],
                member=None,
                image=image,
                ann=ann,
                members=members,
                metrics={"caption_words": 40},
            )
        )
    return samples


def raw_tar(path: Path, named: list[tuple[str, bytes]], sync: bool) -> None:
    with open(path, "wb") as f:
        with tarfile.open(fileobj=f, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for name, data in named:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        if sync:
            f.flush()
            os.fsync(f.fileno())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--shard-max-count", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--dir", default=None, help="where to write (default: a temp dir)")
    ap.add_argument("--no-fsync", action="store_true", help="baseline without fsync (the writer always fsyncs its tars)")
    ap.add_argument("--no-hash", action="store_true", help="attribution: the writer with its sha256 (index checksum) replaced by a no-op")
    args = ap.parse_args()

    from hoiforge.datasets.layout import OutLayout
    from hoiforge.pipeline.recipe import OutputSpec
    from hoiforge.pipeline.writer import sample_members, write_part, write_tar

    if args.no_hash:
        import hoiforge.pipeline.writer as writer_module

        class _NoHash:
            def update(self, data) -> None:
                pass

            def hexdigest(self) -> str:
                return ""

        writer_module.hashlib = type("hashlib", (), {"sha256": _NoHash})

    spec = OutputSpec(shard_max_count=args.shard_max_count, test_size=0.0016)
    samples = synthetic_samples(args.samples)
    # The bytes the writer puts in its tars (annotation json as the writer encodes it, after the split is set).
    named = []
    for s in samples:
        s.ann["split"] = "train"
        s.ann["shard"] = "shards/train-000000.tar"
        named += [(f"{s.ann['id']}.{ext}", data) for ext, data in sorted(sample_members(s).items())]
    payload = sum(len(d) for _, d in named)
    per_tar = max(1, args.shard_max_count)
    print(f"{args.samples} samples, {payload / 1e6:.0f} MB of members, shards of {per_tar} samples")

    root = Path(args.dir or tempfile.mkdtemp(prefix="writer-bench-"))
    best = {"writer": float("inf"), "raw": float("inf")}
    try:
        for r in range(args.repeats):
            out = root / f"w{r}"
            layout = OutLayout(out)
            layout.make()
            for s in samples:  # write_part sets these again; reset the state a stage run leaves
                s.ann.pop("split", None)
                s.ann.pop("shard", None)
            seq = iter(range(10**6))
            started = time.perf_counter()
            write_part(layout, spec, samples, lambda split, seq=seq: next(seq))
            best["writer"] = min(best["writer"], time.perf_counter() - started)
            shutil.rmtree(out)

            out = root / f"r{r}"
            out.mkdir()
            members_per_sample = len(named) // len(samples)
            started = time.perf_counter()
            for k, start in enumerate(range(0, len(named), per_tar * members_per_sample)):
                raw_tar(out / f"raw-{k:06d}.tar", named[start : start + per_tar * members_per_sample], not args.no_fsync)
            best["raw"] = min(best["raw"], time.perf_counter() - started)
            shutil.rmtree(out)
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)

    # CPU seconds (not wall), robust to a loaded machine: where the writer's extra time goes.
    def cpu_seconds(fn) -> float:
        best_cpu = float("inf")
        for _ in range(args.repeats):
            t0 = time.process_time()
            fn()
            best_cpu = min(best_cpu, time.process_time() - t0)
        return best_cpu

    scratch = Path(tempfile.mkdtemp(prefix="writer-cpu-", dir=args.dir)) / "cpu.tar"
    pairs = [(s.ann["id"], sample_members(s)) for s in samples]
    cpu = {
        "raw tar write": cpu_seconds(lambda: raw_tar(scratch, named, False)),
        "sha256 of the same bytes": cpu_seconds(lambda: [hashlib.sha256(d).digest() for _, d in named]),
        "annotation json + members": cpu_seconds(lambda: [sample_members(s) for s in samples]),
        "write_tar (tar + sha256 on its thread)": cpu_seconds(lambda: write_tar(scratch, pairs)),
    }
    shutil.rmtree(scratch.parent, ignore_errors=True)
    print("CPU seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in cpu.items()))

    mb = payload / 1e6
    writer, raw = mb / best["writer"], mb / best["raw"]
    what = "tars + manifest part, hash OFF" if args.no_hash else "tars + sha256 + manifest part"
    print(f"shard writer (write_part: {what}): {writer:.0f} MB/s ({best['writer']:.2f} s)")
    print(f"raw tarfile write of the same members{'' if args.no_fsync else ' + fsync'}:        {raw:.0f} MB/s ({best['raw']:.2f} s)")
    print(f"writer/raw MB/s: {writer / raw:.2f}")


if __name__ == "__main__":
    main()
