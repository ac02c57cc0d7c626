"""Near-duplicate cost per image vs decode cost per image, and the 3M-hash grouping time.

near-dup cost per image = the pHash the decode stage adds (grey 32x32 thumbnail of the pixels it
                          decoded anyway + an 8x32 DCT), measured on its own
                        + the neardup stage per image (reads the hash, looks it up in an earlier
                          run's index of --prior hashes), in batches of 64
                        + this image's share of the finalize grouping of --hashes hashes;
decode cost per image   = the decode stage per image without the pHash (its total minus the
                          pHash time measured above);
both on the fixture photos (tests/data: three PNGs and one JPEG), least CPU time of --repeat
rounds (every step here is single-threaded; CPU time is what an idle core would take).

    python bench/neardup_cost.py                      # 3.16M hashes, recipe LSH (4 bands x 4 tables)
    python bench/neardup_cost.py --hashes 300000      # quicker

The last line is the ratio near-dup / decode (target <= 0.3).
"""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import numpy as np
from PIL import Image

from hoiforge.datasets.neardup import HashIndex, greedy_keep, phash, recall
from hoiforge.stages.decode import Decode
from hoiforge.stages.neardup import Neardup
from hoiforge.stages.testing import sample_from_file

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
PHOTOS = ("astronaut.png", "basketball1.png", "coffee.png", "scenetext01.jpg")


def best_of(fn, repeat: int) -> float:
    """Least CPU seconds of ``repeat`` calls: on a shared machine wall time measures the neighbours."""
    times = []
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return min(times)


def synthetic_hashes(n: int, dup_fraction: float, seed: int = 0) -> np.ndarray:
    """n random 64-bit hashes, the last dup_fraction of them copies of earlier ones with 1-6 bits flipped."""
    rng = np.random.default_rng(seed)
    h = rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True)
    k = int(n * dup_fraction)
    if k:
        flips = rng.integers(0, 64, (k, 6)).astype(np.uint64)
        mask = np.zeros(k, dtype=np.uint64)
        for c in range(int(rng.integers(1, 7))):
            mask |= np.uint64(1) << flips[:, c]
        h[n - k :] = h[rng.integers(0, n - k, k)] ^ mask
    return h


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hashes", type=int, default=3_160_000, help="synthetic hashes to group (the HoIHuman size)")
    ap.add_argument("--dup-fraction", type=float, default=0.05)
    ap.add_argument("--prior", type=int, default=1_000_000, help="hashes in the earlier-run index the stage queries")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--max-distance", type=int, default=8)
    ap.add_argument("--bands", type=int, default=4)
    ap.add_argument("--tables", type=int, default=4)
    args = ap.parse_args()

    decode = Decode(Decode.Params(stage="decode"))
    decode.setup()
    decode_s, hash_s = [], []
    decoded = []
    for name in PHOTOS:
        path = DATA / name

        def run_decode(path=path):
            s = sample_from_file(path)
            decode.process([s])
            return s

        total = best_of(run_decode, args.repeat)  # best of: the least disturbed by other processes
        img = Image.open(io.BytesIO(path.read_bytes()))
        img.load()
        img = img.convert("RGB") if img.mode not in ("RGB", "L") else img
        hashing = best_of(lambda img=img: phash(img), args.repeat * 4)
        decode_s.append(total - hashing)
        hash_s.append(hashing)
        decoded.append(run_decode())
        print(f"{name:18s} {img.width}x{img.height}: decode {1000 * (total - hashing):6.2f} ms, pHash {1000 * hashing:5.3f} ms")

    # The stage on a batch of 64 decoded samples, querying an earlier run's index of --prior hashes.
    stage = Neardup(Neardup.Params(stage="neardup", max_distance=args.max_distance, bands=args.bands, tables=args.tables))
    prior = synthetic_hashes(args.prior, 0.0, seed=1)
    t0 = time.perf_counter()
    index = HashIndex(prior, np.arange(len(prior)), args.bands, args.tables)
    print(f"earlier-run index of {len(prior):,} hashes built in {time.perf_counter() - t0:.2f} s (once per worker process)")
    batch = [decoded[i % len(decoded)] for i in range(64)]
    queries = np.array([int(s.ann["image"]["phash"], 16) for s in batch], dtype=np.uint64)

    def run_stage():
        stage.process(batch)
        index.nearest(queries, args.max_distance)

    stage_s = best_of(run_stage, args.repeat) / len(batch)

    hashes = synthetic_hashes(args.hashes, args.dup_fraction)
    t0, c0 = time.perf_counter(), time.process_time()
    decision = greedy_keep(hashes, np.arange(len(hashes)), args.max_distance, args.bands, args.tables)
    group_s, group_cpu = time.perf_counter() - t0, time.process_time() - c0
    planted = int(len(hashes) * args.dup_fraction)
    print(
        f"finalize grouping of {len(hashes):,} hashes ({args.bands} bands x {args.tables} tables, distance <= {args.max_distance}): "
        f"{group_s:.1f} s wall, {group_cpu:.1f} s CPU (one thread; on a shared machine the CPU time is the figure), "
        f"{int((~decision.kept).sum()):,} near-duplicates dropped of {planted:,} planted at 1-6 bits "
        f"(LSH recall at 6 bits: {recall(6, args.bands, args.tables):.3f}, at {args.max_distance}: "
        f"{recall(args.max_distance, args.bands, args.tables):.3f})"
    )

    decode_per = float(np.mean(decode_s))
    near_per = float(np.mean(hash_s)) + stage_s + group_s / len(hashes)
    print(
        f"per image: decode {1000 * decode_per:.2f} ms; near-dup {1000 * near_per:.3f} ms "
        f"(pHash {1000 * np.mean(hash_s):.3f} + stage {1000 * stage_s:.3f} + grouping {1000 * group_s / len(hashes):.3f})"
    )
    print(f"neardup/decode ratio: {near_per / decode_per:.3f}")


if __name__ == "__main__":
    main()
