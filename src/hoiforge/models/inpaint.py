"""Inpainting: fill masked pixels from their surroundings. Three backends, one call shape.

``inpaint(images, masks)`` takes RGB uint8 HxWx3 images and uint8 HxW masks (non-zero = fill)
and returns new RGB images in which only masked pixels differ: every backend composites its
fill into the original, so pixels outside the mask keep their exact values.

- ``telea`` (embedded): OpenCV's fast-marching inpainting. Fast; smears over large holes.
- ``patchmatch`` (embedded): ``pypatchmatch``, copies texture patches from the image.
- ``lama`` (paper-grade): LaMa's ``big-lama.pt`` TorchScript file (the one
  ``simple-lama-inpainting`` downloads) loaded from a local path by the few lines below; the
  package itself pins numpy<2, pillow<10, opencv<5 and torchvision, so it is not a dependency.
  The file's forward is ``(image [B,3,H,W] float 0-1 RGB, mask [B,1,H,W] 0/1) -> [B,3,H,W]``
  with H, W multiples of 8. Images whose long side exceeds ``hd_threshold`` are inpainted by
  crops around each masked region (resized down to the threshold when a crop is larger), as
  LaMa was trained at 256-512 px and loses structure when run on a whole large image.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np

from hoiforge.errors import BackendUnavailable
from hoiforge.models.base import require
from hoiforge.models.device import Dtype, device_dtype
from hoiforge.models.registry import Weights


def dilate(mask: np.ndarray, margin_px: int) -> np.ndarray:
    """The mask grown by ``margin_px`` pixels in every direction (elliptic kernel), as 0/255 uint8."""
    import cv2

    mask = (mask > 0).astype(np.uint8) * 255
    if margin_px <= 0:
        return mask
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin_px + 1, 2 * margin_px + 1))
    return cv2.dilate(mask, kernel)


def composite(original: np.ndarray, filled: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Filled pixels where the mask is set, original pixels everywhere else."""
    return np.where((mask > 0)[..., None], filled, original).astype(np.uint8)


class TeleaInpainter:
    package = "opencv-python-headless"

    name = "telea"

    def __init__(self, radius: int = 5):
        require("cv2", "pip install opencv-python-headless")
        self.radius = radius

    @classmethod
    def check(cls, **options) -> None:
        require("cv2", "pip install opencv-python-headless")

    def inpaint(self, images: list[np.ndarray], masks: list[np.ndarray]) -> list[np.ndarray]:
        import cv2

        out = []
        for img, mask in zip(images, masks, strict=True):
            m = (mask > 0).astype(np.uint8)
            filled = cv2.inpaint(np.ascontiguousarray(img), m, self.radius, cv2.INPAINT_TELEA)
            out.append(composite(img, filled, m))
        return out


class PatchMatchInpainter:
    package = "pypatchmatch"

    name = "patchmatch"
    INSTALL = "pip install pypatchmatch==2.2.0"

    def __init__(self, patch_size: int = 3):
        require("patchmatch", self.INSTALL)
        import patchmatch

        if not patchmatch.patchmatch_available:
            raise BackendUnavailable("pypatchmatch is installed but its compiled library did not load; reinstall it")
        self._pm, self.patch_size = patchmatch, patch_size

    @classmethod
    def check(cls, **options) -> None:
        require("patchmatch", cls.INSTALL)

    def inpaint(self, images: list[np.ndarray], masks: list[np.ndarray]) -> list[np.ndarray]:
        out = []
        for img, mask in zip(images, masks, strict=True):
            m = (mask > 0).astype(np.uint8) * 255
            filled = self._pm.inpaint(np.ascontiguousarray(img), m, patch_size=self.patch_size)
            out.append(composite(img, filled, m))
        return out


@dataclass
class _Job:
    """One forward input: a crop (or the whole image) of one image, at the size the model sees."""

    image_index: int
    window: tuple[int, int, int, int]  # x0, y0, x1, y1 of the crop in the image
    rgb: np.ndarray  # the crop, resized to the model size
    mask: np.ndarray  # 0/1 uint8, same size as rgb


def padded_size(shape: tuple[int, ...]) -> tuple[int, int]:
    """(h, w) rounded up to multiples of 8, the sides LaMa's down/upsampling needs."""
    h, w = shape[:2]
    return -(-h // 8) * 8, -(-w // 8) * 8


def pad_to(array: np.ndarray, height: int, width: int, mode: str) -> np.ndarray:
    """``array`` (HxW or HxWxC) padded at the bottom/right to ``height`` x ``width``."""
    pad_h, pad_w = height - array.shape[0], width - array.shape[1]
    if pad_h == 0 and pad_w == 0:
        return array
    pads = [(0, pad_h), (0, pad_w)] + [(0, 0)] * (array.ndim - 2)
    return np.pad(array, pads, mode=mode)


class LamaInpainter:
    """LaMa from a local TorchScript file (``big-lama.pt``), batched, fp16 on GPU."""

    package = "torch"

    name = "lama"
    INSTALL = "pip install torch (CPU or CUDA build)"

    def __init__(
        self,
        model_path: Annotated[str | None, Weights("big-lama", "big-lama.pt")] = None,
        device: str | None = None,
        dtype: Dtype | None = None,
        batch_size: int = 4,
        hd_threshold: int = 1024,
        crop_margin: int = 128,
    ):
        self.check(model_path=model_path)
        import torch

        self.device, self.dtype = device_dtype(device, dtype)
        # torch.fft (LaMa's Fourier units) has no bf16: half precision here means fp16.
        if self.dtype == torch.bfloat16:
            self.dtype = torch.float16
        # torch.jit.load reads TorchScript code and tensors; it does not unpickle arbitrary objects.
        self.model = torch.jit.load(str(model_path), map_location=self.device).eval()
        if self.dtype == torch.float16:
            self.model = self.model.half()
        self.batch_size, self.hd_threshold, self.crop_margin = batch_size, hd_threshold, crop_margin

    @classmethod
    def check(cls, model_path: str | None = None, **options) -> None:
        require("torch", cls.INSTALL)
        if not model_path:
            raise BackendUnavailable(
                "cleanup: the lama backend needs options.model_path = a local big-lama.pt (TorchScript; the file "
                "simple-lama-inpainting downloads from its GitHub release); this machine cannot download it"
            )
        if not Path(model_path).is_file():
            raise BackendUnavailable(f"cleanup: LaMa model file {model_path!r} does not exist; copy big-lama.pt there")

    # -- planning: which crops the model sees ------------------------------------------------
    def plan(self, index: int, img: np.ndarray, mask: np.ndarray) -> list[_Job]:
        h, w = mask.shape
        binary = (mask > 0).astype(np.uint8)
        if max(h, w) <= self.hd_threshold:
            return [_Job(index, (0, 0, w, h), img, binary)]
        jobs = []
        for x0, y0, x1, y1 in self._windows(binary):
            crop, crop_mask = img[y0:y1, x0:x1], binary[y0:y1, x0:x1]
            scale = self.hd_threshold / max(x1 - x0, y1 - y0)
            if scale < 1:  # a crop larger than the model's comfortable size: run it downscaled
                import cv2

                size = (max(8, round((x1 - x0) * scale)), max(8, round((y1 - y0) * scale)))
                crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
                crop_mask = (cv2.resize(crop_mask, size, interpolation=cv2.INTER_NEAREST) > 0).astype(np.uint8)
            jobs.append(_Job(index, (x0, y0, x1, y1), crop, crop_mask))
        return jobs

    def _windows(self, binary: np.ndarray) -> list[tuple[int, int, int, int]]:
        """Context windows around each masked region; overlapping windows are merged."""
        import cv2

        h, w = binary.shape
        n, _, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
        boxes = []
        for x, y, bw, bh, _area in stats[1:n]:
            m = max(self.crop_margin, int(0.5 * max(bw, bh)))  # context grows with the hole
            boxes.append([max(0, x - m), max(0, y - m), min(w, x + bw + m), min(h, y + bh + m)])
        merged = True
        while merged:
            merged = False
            for i in range(len(boxes)):
                for j in range(i + 1, len(boxes)):
                    a, b = boxes[i], boxes[j]
                    if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]:
                        boxes[i] = [min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])]
                        del boxes[j]
                        merged = True
                        break
                if merged:
                    break
        return [tuple(int(v) for v in b) for b in boxes]

    # -- running -----------------------------------------------------------------------------
    def inpaint(self, images: list[np.ndarray], masks: list[np.ndarray]) -> list[np.ndarray]:
        jobs = [job for i, (img, mask) in enumerate(zip(images, masks, strict=True)) for job in self.plan(i, img, mask)]
        outputs = self._run(jobs)
        results = [img.copy() for img in images]
        for job, filled in zip(jobs, outputs, strict=True):
            x0, y0, x1, y1 = job.window
            if filled.shape[:2] != (y1 - y0, x1 - x0):
                import cv2

                filled = cv2.resize(filled, (x1 - x0, y1 - y0), interpolation=cv2.INTER_CUBIC)
            region = results[job.image_index][y0:y1, x0:x1]
            region[...] = composite(region, filled, masks[job.image_index][y0:y1, x0:x1])
        return results

    def _run(self, jobs: list[_Job]) -> list[np.ndarray]:
        """Forward the jobs, batching those of the same padded size.

        Crops in one bucket may differ by up to 7 px per side (266x276 and 268x277 both round up
        to 272x280): each is padded to the bucket size on its own (reflect for the image, as
        simple-lama/lama-cleaner do; zeros for the mask, so the padding is never filled) before
        stacking, and its own size is cut back out of the result.
        """
        import torch

        outputs: list[np.ndarray | None] = [None] * len(jobs)
        by_size: dict[tuple[int, int], list[int]] = {}
        for k, job in enumerate(jobs):
            by_size.setdefault(padded_size(job.mask.shape), []).append(k)
        for (ph, pw), members in by_size.items():
            for start in range(0, len(members), self.batch_size):
                chunk = members[start : start + self.batch_size]
                rgb = np.stack([pad_to(jobs[k].rgb, ph, pw, "reflect") for k in chunk])
                masks = np.stack([pad_to(jobs[k].mask, ph, pw, "constant") for k in chunk])
                image = torch.from_numpy(rgb).permute(0, 3, 1, 2).to(self.device, self.dtype) / 255.0
                mask = torch.from_numpy(masks)[:, None].to(self.device, self.dtype)
                result = self._forward(image, mask)
                result = (result.float().clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
                for k, out in zip(chunk, result, strict=True):
                    h, w = jobs[k].mask.shape
                    outputs[k] = np.ascontiguousarray(out[:h, :w])
        return outputs  # type: ignore[return-value]

    def _forward(self, image, mask):
        import torch

        with torch.inference_mode():
            try:
                return self.model(image, mask)
            except RuntimeError as e:
                # LaMa's Fourier units call torch.fft, and cuFFT computes half precision only on
                # power-of-two sizes: fall back to fp32 for this worker rather than fail the image.
                if self.dtype != torch.float16 or "power" not in str(e).lower():
                    raise
                self.model, self.dtype = self.model.float(), torch.float32
                return self.model(image.float(), mask.float())
