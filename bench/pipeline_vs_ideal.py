"""Pipeline vs ideal: how close a Ray build comes to the stages' own compute time.

ideal    = the CPU time of the same stages run in one process on the same images, without Ray,
           divided by the number of CPUs (perfect parallel scaling, no I/O, no scheduling); CPU
           time, not wall time, because the model libraries already use several threads;
pipeline = the wall time of `build()` on a started local Ray (start-up measured separately).

    python bench/pipeline_vs_ideal.py --images 48 --recipe demo
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageOps

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"


def make_inputs(folder: Path, n: int) -> None:
    """n distinct real photos: the fixtures, mirrored, rotated and rescaled."""
    sources = [Image.open(DATA / name).convert("RGB") for name in ("astronaut.png", "basketball1.png")]
    for i in range(n):
        img = sources[i % len(sources)]
        img = ImageOps.mirror(img) if (i // 2) % 2 else img
        scale = 1.0 + 0.05 * (i // 4)
        img.resize((int(img.width * scale), int(img.height * scale))).save(folder / f"img{i:04d}.jpg", quality=92)


def sequential_seconds(folder: Path, recipe) -> tuple[float, float]:
    """(wall, CPU) seconds of the stages run one after the other in this process."""
    from hoiforge.pipeline.adapter import run_stage
    from hoiforge.pipeline.runner import instantiate
    from hoiforge.stages.testing import sample_from_file

    stages = instantiate(recipe)
    samples = [sample_from_file(p, i) for i, p in enumerate(sorted(folder.iterdir()))]
    for stage in stages:  # load models outside the timing, as actors do once
        stage.setup()
        stage._ready = True
    started, cpu = time.perf_counter(), time.process_time()
    for stage in stages:
        samples = run_stage(stage, samples)
    return time.perf_counter() - started, time.process_time() - cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--recipe", default="demo")
    args = ap.parse_args()

    import ray

    from hoiforge.pipeline.recipe import load_recipe
    from hoiforge.pipeline.runner import build

    recipe = load_recipe(args.recipe)
    work = Path(tempfile.mkdtemp(prefix="hoiforge-bench-"))
    try:
        inputs = work / "in"
        inputs.mkdir()
        make_inputs(inputs, args.images)
        cpus = os.cpu_count() or 1
        sequential, cpu_seconds = sequential_seconds(inputs, recipe)
        ideal = cpu_seconds / cpus

        t0 = time.perf_counter()
        os.environ["HOIFORGE_KEEP_RAY"] = "1"
        ray.init(include_dashboard=False, logging_level="ERROR")
        startup = time.perf_counter() - t0
        t0 = time.perf_counter()
        result = build([str(inputs)], work / "out", recipe, progress=False)
        pipeline = time.perf_counter() - t0
        ray.shutdown()

        print(f"recipe {args.recipe}, {args.images} images, {cpus} CPUs, {result.stats['kept']} kept")
        print(
            f"sequential stages, one process : {sequential:8.2f} s wall, {cpu_seconds:.2f} s CPU ({1000 * sequential / args.images:.0f} ms/image)"
        )
        print(f"ideal (CPU time / {cpus} CPUs)     : {ideal:8.2f} s")
        print(f"ray start-up                   : {startup:8.2f} s")
        print(f"pipeline build()               : {pipeline:8.2f} s  ({1000 * pipeline / args.images:.0f} ms/image)")
        print(f"pipeline / ideal               : {pipeline / ideal:8.2f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
