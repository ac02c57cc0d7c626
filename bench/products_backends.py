"""Per-image times of the products backends on this machine (CPU unless CUDA is present).

    python bench/products_backends.py              # embedded detector + box GrabCut on the fixtures
    python bench/products_backends.py --paper      # + GroundingDINO (Swin-T/BERT-base) and SAM vit_b, random weights

Paper-grade models use random weights of the real architectures (no weights offline): the
times are real, the outputs are not. GroundingDINO's tokenizer is a small local vocabulary, which
does not change the model's cost (the text is a few dozen tokens either way).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from hoiforge.datasets.images import decode_rgb
from hoiforge.stages.products import HOIHUMAN_PROMPT

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
FIXTURES = ("coffee.png", "astronaut.png", "basketball1.png", "scenetext01.jpg")


def timed(fn, repeat: int = 2) -> float:
    fn()  # warm-up (graph init, allocations)
    started = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - started) / repeat


def embedded(images: dict[str, np.ndarray]) -> None:
    from hoiforge.models.embedded_segment import (
        EmbeddedBoxSegmenter,
        EmbeddedProductDetector,
    )

    detector, boxes = EmbeddedProductDetector(), EmbeddedBoxSegmenter()
    for name, rgb in images.items():
        found = detector.detect([rgb])[0]
        t = timed(lambda rgb=rgb: detector.detect([rgb]))
        print(f"embedded detector   {name:16s} {rgb.shape[1]}x{rgb.shape[0]}  {t * 1000:7.0f} ms  {len(found)} products")
        if found:
            t = timed(lambda rgb=rgb, found=found: boxes.segment([rgb], [[p.box for p in found]]))
            print(f"embedded box-GrabCut {name:15s} {len(found)} boxes       {t * 1000:7.0f} ms")


def paper(images: dict[str, np.ndarray]) -> None:
    import torch
    from transformers import (
        BertConfig,
        BertTokenizerFast,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
    )

    from hoiforge.models.grounding_dino import GroundingDinoDetector
    from hoiforge.models.sam import SAM_ARCHS, SegmentAnythingSegmenter, build_sam

    rgb = images["astronaut.png"]
    with tempfile.TemporaryDirectory() as d:
        words = sorted({w for w in HOIHUMAN_PROMPT.replace(",", " ").split()})
        Path(d, "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", *words]) + "\n")
        tokenizer = BertTokenizerFast(str(Path(d, "vocab.txt")))
        config = GroundingDinoConfig(text_config=BertConfig(vocab_size=30522))  # Swin-T + BERT-base: grounding-dino-tiny's shape
        GroundingDinoForObjectDetection(config).save_pretrained(d)
        GroundingDinoProcessor(image_processor=GroundingDinoImageProcessor(), tokenizer=tokenizer).save_pretrained(d)
        det = GroundingDinoDetector(model=d, box_threshold=0.35)
        t = timed(lambda: det.detect([rgb], HOIHUMAN_PROMPT), repeat=1)
        print(f"grounding-dino (Swin-T, 800px)  {det.device} {det.dtype!s:14s} {t * 1000:7.0f} ms/image")
        ckpt = Path(d, "sam_vit_b.pth")
        torch.save(build_sam(SAM_ARCHS["vit_b"]).state_dict(), ckpt)
        sam = SegmentAnythingSegmenter(checkpoint=str(ckpt), model_type="vit_b")
        t = timed(
            lambda: sam.segment([rgb], [[(280, 340, 500, 512), (20, 150, 360, 512)]]),
            repeat=1,
        )
        print(f"sam vit_b (1024px, 2 boxes)     {sam.device} {sam.dtype!s:14s} {t * 1000:7.0f} ms/image")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--paper",
        action="store_true",
        help="also time the paper-grade architectures (random weights)",
    )
    args = ap.parse_args()
    images = {n: decode_rgb((DATA / n).read_bytes()) for n in FIXTURES}
    embedded(images)
    if args.paper:
        paper(images)


if __name__ == "__main__":
    main()
