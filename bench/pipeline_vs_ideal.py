"""Pipeline vs ideal: how close a Ray build comes to the stages' own compute time.

ideal    = the CPU time of the same stages run in one process on the same images, without Ray,
           divided by the number of CPUs (perfect parallel scaling, no I/O, no scheduling); CPU
           time, not wall time, because the model libraries already use several threads. The
           stages run as one chain (pipeline/adapter.py ChainAdapter), as the pipeline runs them:
           each image is decoded once, so the ideal is not inflated by decodes the pipeline skips,
           in the batches the pipeline's actors get;
pipeline = the wall time of `build()` on a started local Ray (start-up measured separately).

The machine's load (other users' processes) stretches the pipeline's wall time but not the
ideal's CPU time: the load average is printed before and after, and --repeat N measures both N
times, printing every ratio and then the median as the last line.

    python bench/pipeline_vs_ideal.py --images 48 --recipe demo
    python bench/pipeline_vs_ideal.py --images 240 --repeat 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

from PIL import Image, ImageOps

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"


def make_inputs(folder: Path, n: int) -> None:
    """n distinct real photos: the fixtures, mirrored and rescaled (1x to 3.95x); past 240 images
    the same sizes again, each round cropped by one more pixel column so no two files are equal."""
    sources = [Image.open(DATA / name).convert("RGB") for name in ("astronaut.png", "basketball1.png")]
    for i in range(n):
        img = sources[i % len(sources)]
        img = ImageOps.mirror(img) if (i // 2) % 2 else img
        img = img.crop((i // 240, 0, img.width, img.height))
        scale = 1.0 + 0.05 * ((i // 4) % 60)
        img.resize((int(img.width * scale), int(img.height * scale))).save(folder / f"img{i:04d}.jpg", quality=92)


def sequential_seconds(folder: Path, recipe) -> tuple[float, float]:
    """(wall, CPU) seconds of the stages run one after the other in this process."""
    from hoiforge.pipeline.adapter import ChainAdapter, samples_to_batch, stage_batch_size
    from hoiforge.pipeline.runner import instantiate
    from hoiforge.stages.testing import sample_from_file

    chain = ChainAdapter(instantiate(recipe))
    for stage in chain.stages:  # load models outside the timing, as actors do once
        stage.setup()
        stage.ready = True
    files = sorted(folder.iterdir())
    # Batches as the pipeline's actors get them (the chain's largest stage batch): one batch of
    # every image would hold all their decoded pixels at once (GBs at 240 images; slower, and
    # killed at 960), which is not what the pipeline runs.
    size = max(stage_batch_size(s) for s in chain.stages)
    wall = cpu = 0.0
    for start in range(0, len(files), size):
        batch = samples_to_batch([sample_from_file(p, start + i) for i, p in enumerate(files[start : start + size])])
        started, cpu_started = time.perf_counter(), time.process_time()
        chain(batch)
        wall += time.perf_counter() - started
        cpu += time.process_time() - cpu_started
    return wall, cpu


class TreeCPU:
    """CPU seconds used by this process and every process it started (Ray's raylet, GCS and
    workers), sampled twice a second so that workers that exit (actors at the end of a plan)
    still count up to their last sample."""

    def __init__(self) -> None:
        import psutil

        self._psutil, self._seen, self._stop = psutil, {}, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        me = self._psutil.Process()
        for proc in [me, *me.children(recursive=True)]:
            try:
                t = proc.cpu_times()
                self._seen[(proc.pid, proc.create_time())] = t.user + t.system
            except self._psutil.Error:
                pass

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self._sample()

    def __enter__(self) -> TreeCPU:
        self._sample()
        self.start = dict(self._seen)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._sample()
        self._stop.set()
        self._thread.join()
        self.seconds = sum(v - self.start.get(k, 0.0) for k, v in self._seen.items())


def measure(inputs: Path, out: Path, recipe, n: int, cpus: int) -> float:
    import ray

    from hoiforge.pipeline.cluster import connect
    from hoiforge.pipeline.runner import build

    sequential, cpu_seconds = sequential_seconds(inputs, recipe)
    ideal = cpu_seconds / cpus
    t0 = time.perf_counter()
    os.environ["HOIFORGE_KEEP_RAY"] = "1"
    connect()  # as `hoiforge build` starts a local Ray
    startup = time.perf_counter() - t0
    t0 = time.perf_counter()
    with TreeCPU() as cpu:
        result = build([str(inputs)], out, recipe, progress=False)
    pipeline = time.perf_counter() - t0
    ray.shutdown()
    shutil.rmtree(out, ignore_errors=True)

    print(f"recipe {recipe.name}, {n} images, {cpus} CPUs, {result.stats['kept']} kept")
    print(f"sequential stages, one process : {sequential:8.2f} s wall, {cpu_seconds:.2f} s CPU ({1000 * sequential / n:.0f} ms/image)")
    print(f"ideal (CPU time / {cpus} CPUs)     : {ideal:8.2f} s")
    print(f"ray start-up                   : {startup:8.2f} s")
    print(f"pipeline build()               : {pipeline:8.2f} s  ({1000 * pipeline / n:.0f} ms/image)")
    # On a shared machine other users' load stretches wall time, not CPU time: these two lines say
    # how much of a high ratio is the pipeline's own overhead and how much is the machine's load.
    print(f"pipeline CPU (driver + Ray)    : {cpu.seconds:8.2f} s  ({cpu.seconds / cpu_seconds:.2f}x the stages' CPU time)")
    print(f"pipeline / (sequential wall / {cpus}): {pipeline / (sequential / cpus):6.2f}x   (the same under the same load)")
    print(f"pipeline / ideal               : {pipeline / ideal:8.2f}x   (load average now {os.getloadavg()[0]:.1f})", flush=True)
    return pipeline / ideal


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--recipe", default="demo")
    ap.add_argument("--repeat", type=int, default=1, help="measure N times; the last line is the median ratio")
    args = ap.parse_args()

    from hoiforge.pipeline.recipe import load_recipe

    recipe = load_recipe(args.recipe)
    work = Path(tempfile.mkdtemp(prefix="hoiforge-bench-"))
    try:
        inputs = work / "in"
        inputs.mkdir()
        make_inputs(inputs, args.images)
        cpus = os.cpu_count() or 1
        print(f"load average before: {os.getloadavg()[0]:.1f} on {cpus} CPUs", flush=True)
        ratios = [measure(inputs, work / f"out{i}", recipe, args.images, cpus) for i in range(args.repeat)]
        if len(ratios) > 1:
            print(f"ratios: {', '.join(f'{r:.2f}' for r in ratios)} (spread {min(ratios):.2f}..{max(ratios):.2f})")
            print(f"pipeline / ideal (median of {len(ratios)}): {statistics.median(ratios):8.2f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
