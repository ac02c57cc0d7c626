"""Shard fill: how full the shards of a build are, before and after finalize's compaction.

A Ray write task gets about ``shard_max_count`` rows, dropped rows included, and writes its own
shards per split; finalize merges the partial ones (pipeline/compact.py). This builds generated
images (64..128 px, mixed JPEG/PNG/WebP) of which ``--keep`` survive a resolution filter, then
prints, per split, the shards the write tasks left (from the manifest parts) and the final ones.
The last line is the final fill ratio: kept samples / (final shards x shard_max_count); with at
most one partial shard per split it approaches 1 as the build grows.

    python bench/shard_fill.py --images 400 --keep 0.5 --shard-max-count 50 --test-size 0.05
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from PIL import Image

FORMATS = (("PNG", "png"), ("JPEG", "jpg"), ("WEBP", "webp"))


def make_inputs(folder: Path, n: int, keep: float, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for i in range(n):
        fmt, ext = FORMATS[i % len(FORMATS)]
        w = int(rng.integers(64, 129))
        h = int(rng.integers(96, 129)) if rng.random() < keep else 48  # 48 px: dropped by resolution
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(folder / f"img-{i:05d}.{ext}", fmt)


def summary(sizes: list[int], limit: int) -> str:
    if not sizes:
        return "none"
    full = sum(n >= 0.9 * limit for n in sizes)
    return f"{len(sizes):4d} shards, {full:4d} >= 90% full, mean fill {sum(sizes) / (len(sizes) * limit):.2f}, smallest {min(sizes)}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=400)
    ap.add_argument("--keep", type=float, default=0.5)
    ap.add_argument("--shard-max-count", type=int, default=50)
    ap.add_argument("--test-size", type=float, default=0.05)
    ap.add_argument("--cpus", type=int, default=None)
    args = ap.parse_args()

    import ray

    from hoiforge.pipeline.recipe import parse_recipe
    from hoiforge.pipeline.runner import build

    recipe = parse_recipe(
        {
            "name": "shard-fill",
            "output": {"shard_max_count": args.shard_max_count, "test_size": args.test_size, "image_format": "jpg"},
            "stages": [{"stage": "decode"}, {"stage": "resolution", "min_short_side": 64}],
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        inputs, out = Path(tmp) / "inputs", Path(tmp) / "out"
        inputs.mkdir()
        make_inputs(inputs, args.images, args.keep)
        ray.init(num_cpus=args.cpus, include_dashboard=False, logging_level="ERROR")
        started = time.perf_counter()
        result = build([str(inputs)], out, recipe, progress=False)
        seconds = time.perf_counter() - started
        ray.shutdown()

        written: dict[str, list[int]] = defaultdict(list)
        for part in sorted((out / "_work" / "parts").glob("part-*.parquet")):
            for s in json.loads(pq.read_schema(part).metadata[b"hoiforge.shards"]):
                written[s["split"]].append(s["nsamples"])
        final: dict[str, list[int]] = defaultdict(list)
        for s in json.loads((out / "index.json").read_text())["shardlist"]:
            final[Path(s["url"]).name.split("-")[0]].append(s["nsamples"])

        from hoiforge.datasets.layout import OutLayout
        from hoiforge.pipeline import compact

        made, _ = compact.named_by_records(OutLayout(out))
        rewritten = sum(s["filesize"] for s in made.values())
        stats = result.stats
        limit = args.shard_max_count
        print(f"inputs {stats['inputs']}, kept {stats['kept']} ({stats['kept'] / stats['inputs']:.0%}), splits {stats['splits']}")
        print(f"build {seconds:.1f} s")
        for split in sorted(set(written) | set(final)):
            print(f"{split:5s} write tasks: {summary(written[split], limit)}")
            print(
                f"{split:5s} final:       {summary(final[split], limit)}  (fewest possible: {math.ceil(stats['splits'].get(split, 0) / limit)})"
            )
        print(f"compaction rewrote {rewritten / 1e6:.1f} MB of {stats['shard_bytes'] / 1e6:.1f} MB of shards")
        shards = sum(len(v) for v in final.values())
        print(f"fill ratio (kept / (final shards x shard_max_count)): {stats['kept'] / (shards * limit):.3f}")


if __name__ == "__main__":
    main()
