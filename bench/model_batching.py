"""Images/s of every model stage at batch 1 vs its configured batch, tiny random models on CPU.

Each model stage runs through ``pipeline.adapter.run_stage`` (what a Ray actor runs per batch)
over the same images, once one image per call and once ``--batch`` (default: the stage's
``default_batch_size``) images per call. Models are the tests' tiny random checkpoints of the
real architectures (RT-DETR, CLIP + LAION MLP, GroundingDINO + SAM, ViTPose, PP-OCR + LaMa,
Qwen2-VL, SD VAE + CLIP text + DINOv2), so the numbers measure the code path (pre/post
processing, padding, per-call overhead), not GPU arithmetic: on CPU a tiny model's batch gain
is the per-call overhead a batch amortises. Real-size random-weight models on a GPU:
bench/caption_throughput.py --size 2b and docs/performance.md.

    python bench/model_batching.py                       # every stage, 16 images, best of 3
    python bench/model_batching.py --stages person pose --images 32

Last line: geometric mean over the stages of (batched images/s) / (batch-1 images/s).
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT / "tests" / "data"
PHOTOS = ["astronaut.png", "coffee.png", "basketball1.png", "scenetext01.jpg"]


class TmpFactory:
    """Stands in for pytest's tmp_path_factory, so the tests' model builders serve the bench."""

    def __init__(self, root: Path):
        self.root, self.n = root, 0

    def mktemp(self, name: str) -> Path:
        self.n += 1
        path = self.root / f"{name}{self.n}"
        path.mkdir()
        return path


def fixture(fn, *args):
    return fn.__wrapped__(*args)  # a pytest fixture's own function


def clone(sample):
    import copy

    return copy.deepcopy(sample)


def with_persons(samples):
    for s in samples:
        h, w = s.rgb().shape[:2]
        s.ann["persons"] = [{"box": [0.2 * w, 0.1 * h, 0.7 * w, 0.95 * h], "score": 0.9}]
    return samples


def stages(tmp: TmpFactory) -> dict:
    """name -> (stage factory, sample preparation). Built lazily: only the stages asked for."""
    from hoiforge.stages.caption import Caption
    from hoiforge.stages.cleanup import Cleanup
    from hoiforge.stages.person import Person
    from hoiforge.stages.pose import Pose
    from hoiforge.stages.products import Products
    from hoiforge.stages.quality import Quality

    def person():
        from tests.test_person_backends import tiny_rtdetr

        path = tiny_rtdetr(tmp.mktemp("rtdetr"), 2.0)
        return Person(
            Person.Params(
                stage="person",
                detector={"backend": "rtdetr", "options": {"model": str(path), "device": "cpu"}},
                min_persons=0,
                max_persons=1000,
            )
        )

    def quality():
        import tests.test_quality as t

        root, _, _ = fixture(t.tiny_clip, tmp)
        options = {"clip_model": str(root / "clip"), "mlp_weights": str(root / "sac+logos+ava1-l14-linearMSE.pth"), "device": "cpu"}
        return Quality(Quality.Params(stage="quality", scorer={"backend": "laion-aesthetic", "options": options}, min_aesthetic=None))

    def products():
        import tests.test_segment_backends as t

        gd, sam = fixture(t.tiny_grounding_dino, tmp), fixture(t.tiny_hf_sam, tmp)
        return Products(Products.Params(stage="products", prompt=t.PROMPT, min_area=0.0, nms_iou=1.0, drop_if_none=False,
            detector={"backend": "grounding-dino", "options": {"model": gd, "box_threshold": 0.0, "text_threshold": 0.0}},
            segmenter={"backend": "hf-sam", "options": {"model": sam}}))  # fmt: skip

    def pose():
        import tests.test_vitpose as t

        converted = fixture(t.converted, tmp)
        return Pose(
            Pose.Params(
                stage="pose",
                estimator={"backend": "vitpose", "options": {"model": str(converted[False][1]), "device": "cpu"}},
                min_score=0.0,
            )
        )

    def cleanup():
        import torch

        from tests.test_ocr_inpaint import TinyFFCLama

        path = tmp.mktemp("lama") / "big-lama.pt"
        torch.jit.script(TinyFFCLama().eval()).save(str(path))
        return Cleanup(
            Cleanup.Params(
                stage="cleanup", ocr="rapidocr", inpaint={"backend": "lama", "options": {"model_path": str(path), "device": "cpu"}}
            )
        )

    def caption():
        from tests.random_qwen2_vl import write_random_qwen2_vl

        path = write_random_qwen2_vl(tmp.mktemp("qwen2vl"), size="tiny")
        options = {"model": str(path), "device": "cpu", "max_new_tokens": 8, "generate_kwargs": {"min_new_tokens": 8}}
        return Caption(Caption.Params(stage="caption", captioner={"backend": "qwen2-vl", "options": options}))

    def precompute():
        import tests.test_precompute as t

        sd, dino = fixture(t.sd_dir, tmp), fixture(t.dino_dir, tmp)
        return t._stage(sd, dino, short_side=64)

    def precompute_inputs(samples):
        from hoiforge.pipeline.adapter import run_stage

        out = run_stage(Products(Products.Params(stage="products", min_products=0, drop_if_none=False)), samples)
        for s in out:
            s.members["txt"] = b"a person holding a red cup in front of a grey wall"
            if not s.members.get("views.jpg"):
                s.members["views.jpg"] = next(x for x in out if x.members.get("views.jpg")).members["views.jpg"]
        return out

    return {
        "person": (person, None),
        "quality": (quality, None),
        "products": (products, with_persons),
        "cleanup": (cleanup, with_persons),
        "pose": (pose, with_persons),
        "caption": (caption, None),
        "precompute": (precompute, precompute_inputs),
    }


def images_per_second(stage, samples, batch: int) -> float:
    from hoiforge.pipeline.adapter import run_stage

    run_stage(stage, [clone(s) for s in samples[:batch]])  # warm-up: lazy init, first-call kernels
    fresh = [clone(s) for s in samples]
    started = time.perf_counter()
    for i in range(0, len(fresh), batch):
        run_stage(stage, fresh[i : i + batch])
    return len(fresh) / (time.perf_counter() - started)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--stages", nargs="+", default=["person", "quality", "products", "cleanup", "pose", "caption", "precompute"])
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--batch", type=int, default=None, help="default: each stage's default_batch_size")
    ap.add_argument("--repeats", type=int, default=3, help="alternating runs of each setting; the best counts")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: the shared-CPU setting of the tests)")
    args = ap.parse_args()

    import torch

    from hoiforge.stages.testing import decoded

    torch.set_num_threads(args.threads)
    root = Path(tempfile.mkdtemp(prefix="model-batching-"))
    ratios = []
    try:
        table = stages(TmpFactory(root))
        base = [decoded(DATA / PHOTOS[i % len(PHOTOS)], i) for i in range(args.images)]
        for name in args.stages:
            build, prepare = table[name]
            stage = build()
            stage.preflight()
            samples = prepare([clone(s) for s in base]) if prepare else base
            batch = args.batch or stage.default_batch_size
            # Alternate the two settings and keep each one's best: the CPUs are shared and noisy.
            one = many = 0.0
            for _ in range(args.repeats):
                one = max(one, images_per_second(stage, samples, 1))
                many = max(many, images_per_second(stage, samples, batch))
            ratios.append(many / one)
            print(
                f"{name:<11} {stage.backend_name:<32} batch 1: {one:7.2f} img/s   batch {batch:>2}: {many:7.2f} img/s   x{many / one:.2f}",
                flush=True,
            )
            stage.teardown()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"batched/batch-1 images/s (geometric mean over {len(ratios)} stages): {math.exp(sum(map(math.log, ratios)) / len(ratios)):.2f}")


if __name__ == "__main__":
    main()
