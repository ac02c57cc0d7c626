"""Paper-grade person detector: ultralytics YOLO (the card's choice; the paper used YOLOX).

Loads a local ``.pt`` (e.g. ``yolo11x.pt``): ultralytics downloads weights by name at run time,
which these machines cannot do, so the file must exist. Batched ``predict`` on the person class
only, fp16 on GPU.

ultralytics unpickles ``.pt`` files in full (``torch.load(weights_only=False)``): loading one runs
any code it carries. So only a file whose sha256 is pinned is loaded: the registry's YOLO pins, or
ones the recipe lists in ``trusted_sha256`` (a model you trained yourself).

ultralytics imports torchvision at import time. PyPI's torchvision does not load beside
torch 2.13.0+cpu (``torchvision::nms does not exist``), so on such an install ``check()`` says
so; ``torch==2.14.1 torchvision==0.29.1`` (MODELS.md) is a pair where it works.

Importing ultralytics has process-wide side effects, undone or disabled by ``import_yolo``: it
replaces ``PIL.Image.open`` with a wrapper that, on bytes Pillow cannot identify, pip-installs
``pi-heif`` at run time ("AutoUpdate", when online) and otherwise raises ``ModuleNotFoundError``
instead of ``UnidentifiedImageError`` (so the decode stage would call a non-image "corrupt" in any
process that loaded this backend); and it checks the network and sends usage events when online.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import numpy as np

from hoiforge.errors import BackendUnavailable
from hoiforge.models.base import require
from hoiforge.models.device import Dtype, device_dtype
from hoiforge.models.registry import Weights
from hoiforge.models.tasks import Detection

INSTALL = "pip install ultralytics (needs a torchvision that loads beside your torch, e.g. torch==2.14.1 torchvision==0.29.1)"
COCO_PERSON = 0


def import_yolo() -> type:
    """``ultralytics.YOLO``, imported without installing packages, going online or patching Pillow."""
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")  # read once, when ultralytics is first imported
    os.environ.setdefault("YOLO_OFFLINE", "true")
    from PIL import Image

    pillow_open = Image.open
    from ultralytics import YOLO

    if getattr(Image.open, "__module__", "").startswith("ultralytics"):  # its HEIF/pi-heif wrapper
        Image.open = getattr(sys.modules.get("ultralytics.utils.patches"), "_image_open", pillow_open)
    return YOLO


def pinned_pt_sha256s(trusted: list[str] | None) -> set[str]:
    """sha256 of the .pt files this backend may load: the registry's pins plus the recipe's own."""
    from hoiforge.models.weights.registry import pinned_sha256s

    return pinned_sha256s("yolo") | {h.lower() for h in trusted or ()}


class UltralyticsPersonDetector:
    package = "ultralytics"

    def __init__(
        self,
        model: Annotated[str | None, Weights("yolo11x", "yolo11x.pt")] = None,
        device: str | None = None,
        dtype: Dtype | None = None,
        min_score: float = 0.3,
        imgsz: int = 640,
        trusted_sha256: list[str] | None = None,
    ):
        self.check(model, trusted_sha256=trusted_sha256)
        import torch

        YOLO = import_yolo()
        self.model = YOLO(str(Path(model).expanduser()))
        dev, dt = device_dtype(device, dtype)
        self.device = str(dev)
        # ultralytics has one half-precision switch (fp16): the policy's bf16 maps to it.
        self.half = dt in (torch.float16, torch.bfloat16)
        self.min_score, self.imgsz = min_score, imgsz

    @classmethod
    def check(cls, model: str | None = None, trusted_sha256: list[str] | None = None, **options) -> None:
        require("ultralytics", INSTALL)
        require("torchvision", INSTALL)
        try:
            import torchvision  # noqa: F401 - ultralytics needs it to import, and it fails on mismatched torch
        except Exception as e:  # noqa: BLE001 - any import failure means the backend cannot run
            raise BackendUnavailable(
                f"person backend 'yolo': torchvision does not load here ({type(e).__name__}: {e}); {INSTALL}"
            ) from None
        if not model or not Path(model).expanduser().is_file():
            raise BackendUnavailable(
                f"person backend 'yolo': weights {model} not found; give options.model the path of a local .pt "
                "(ultralytics would download it, which this tool never does)"
            )
        from hoiforge.models.weights.digest import sha256_of

        digest = sha256_of(Path(model).expanduser())
        if digest not in pinned_pt_sha256s(trusted_sha256):
            raise BackendUnavailable(
                f"person backend 'yolo': ultralytics unpickles .pt files in full (any code in them runs), so only pinned files "
                f"are loaded; {model} (sha256 {digest}) is not pinned. Fetch yolo11x (hoiforge models fetch yolo11x), or, for "
                "a model you made, add its sha256 to options.trusted_sha256"
            )

    def detect(self, images: list[np.ndarray]) -> list[list[Detection]]:
        # ultralytics reads numpy images as BGR (OpenCV order).
        bgr = [np.ascontiguousarray(img[..., ::-1]) for img in images]
        from ultralytics.cfg import DEFAULT_CFG_DICT

        # ultralytics 8.4 replaced `half` by `quantize` (16 = fp16, None = fp32) and warns on every call given `half`.
        precision = {"quantize": 16 if self.half else None} if "quantize" in DEFAULT_CFG_DICT else {"half": self.half}
        results = self.model.predict(bgr, conf=self.min_score, classes=[COCO_PERSON], device=self.device,
                                     imgsz=self.imgsz, verbose=False, **precision)  # fmt: skip
        out = []
        for res in results:
            boxes = res.boxes
            out.append([Detection(tuple(float(v) for v in xyxy), float(conf), "person", "ultralytics")
                        for xyxy, conf in zip(boxes.xyxy.tolist(), boxes.conf.tolist(), strict=True)])  # fmt: skip
        return out
