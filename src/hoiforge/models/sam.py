"""SAM box-prompted segmentation: segment-anything (original checkpoints) or transformers SamModel.

Weights each backend loads (nothing is downloaded):

- ``sam`` (segment-anything): one original checkpoint file, ``sam_vit_h_4b8939.pth``
  (``vit_h``), ``sam_vit_l_0b3195.pth`` (``vit_l``) or ``sam_vit_b_01ec64.pth`` (``vit_b``),
  read with ``torch.load(weights_only=True)`` into the architecture built from
  segment-anything's own classes.
- ``hf-sam`` (transformers): a directory (or Hugging Face cache entry) written by
  ``SamModel.save_pretrained`` + ``SamProcessor.save_pretrained``, e.g. ``facebook/sam-vit-huge``.

Both run the image encoder once per batch of images and the prompt encoder + mask decoder once
per image with all its boxes (single-mask output, SAM's choice for box prompts); image encoders
run in bf16/fp16 on GPU. segment-anything's package ``__init__`` imports torchvision only for its predictor's resize
helper; when torchvision is missing we import its ``modeling`` subpackage directly and resize
with PIL exactly as that helper does (``ResizeLongestSide``: PIL bilinear on the longest side).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from functools import partial
from pathlib import Path
from typing import Annotated

import numpy as np
from PIL import Image

from hoiforge.errors import BackendUnavailable
from hoiforge.models.base import require
from hoiforge.models.device import Dtype, device_dtype
from hoiforge.models.registry import Weights
from hoiforge.models.weights.hf_local import resolve_model_dir

SAM_INSTALL = "pip install segment-anything==1.0 torch"
HF_INSTALL = "pip install 'transformers>=4.40' torch"

# segment-anything's sam_model_registry, as data (build_sam.py): encoder size per model type.
SAM_ARCHS: dict[str, dict] = {
    "vit_h": {
        "encoder_embed_dim": 1280,
        "encoder_depth": 32,
        "encoder_num_heads": 16,
        "encoder_global_attn_indexes": [7, 15, 23, 31],
    },
    "vit_l": {
        "encoder_embed_dim": 1024,
        "encoder_depth": 24,
        "encoder_num_heads": 16,
        "encoder_global_attn_indexes": [5, 11, 17, 23],
    },
    "vit_b": {
        "encoder_embed_dim": 768,
        "encoder_depth": 12,
        "encoder_num_heads": 12,
        "encoder_global_attn_indexes": [2, 5, 8, 11],
    },
}
# The parts build_sam.py fixes for every model type (a tiny test architecture overrides them).
SAM_FIXED = {
    "image_size": 1024,
    "patch_size": 16,
    "prompt_embed_dim": 256,
    "window_size": 14,
    "decoder_depth": 2,
    "decoder_mlp_dim": 2048,
    "decoder_num_heads": 8,
    "iou_head_hidden_dim": 256,
    "mask_in_chans": 16,
}


def sam_modeling():
    """segment_anything.modeling, without the package __init__'s torchvision import when needed."""
    if importlib.util.find_spec("torchvision") is not None or "segment_anything" in sys.modules:
        return importlib.import_module("segment_anything.modeling")
    spec = importlib.util.find_spec("segment_anything")
    if spec is None:
        raise BackendUnavailable(f"python package 'segment_anything' is not installed: {SAM_INSTALL}")
    # The package module made but not executed: its submodules import, its __init__ doesn't run.
    sys.modules["segment_anything"] = importlib.util.module_from_spec(spec)
    return importlib.import_module("segment_anything.modeling")


def build_sam(arch: dict):
    """A segment-anything Sam from its classes, as build_sam._build_sam does, for any size."""
    import torch

    m = sam_modeling()
    a = {**SAM_FIXED, **arch}
    grid = a["image_size"] // a["patch_size"]
    return m.Sam(
        image_encoder=m.ImageEncoderViT(
            depth=a["encoder_depth"],
            embed_dim=a["encoder_embed_dim"],
            img_size=a["image_size"],
            mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=a["encoder_num_heads"],
            patch_size=a["patch_size"],
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=a["encoder_global_attn_indexes"],
            window_size=a["window_size"],
            out_chans=a["prompt_embed_dim"],
        ),
        prompt_encoder=m.PromptEncoder(
            embed_dim=a["prompt_embed_dim"],
            image_embedding_size=(grid, grid),
            input_image_size=(a["image_size"], a["image_size"]),
            mask_in_chans=a["mask_in_chans"],
        ),
        mask_decoder=m.MaskDecoder(
            num_multimask_outputs=3,
            transformer=m.TwoWayTransformer(
                depth=a["decoder_depth"],
                embedding_dim=a["prompt_embed_dim"],
                mlp_dim=a["decoder_mlp_dim"],
                num_heads=a["decoder_num_heads"],
            ),
            transformer_dim=a["prompt_embed_dim"],
            iou_head_depth=3,
            iou_head_hidden_dim=a["iou_head_hidden_dim"],
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )


class SegmentAnythingSegmenter:
    """Original SAM checkpoints through Meta's segment-anything package."""

    package = "segment-anything"

    def __init__(
        self,
        checkpoint: Annotated[str | None, Weights("sam-vit-h", "sam_vit_h_4b8939.pth")] = None,
        model_type: str | dict = "vit_h",
        device: str | None = None,
        dtype: Dtype | None = None,
    ):
        import torch

        self.check(checkpoint=checkpoint, model_type=model_type)
        arch = SAM_ARCHS[model_type] if isinstance(model_type, str) else model_type
        self.model = build_sam(arch)
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        self.model.load_state_dict(state)
        self.device, self.dtype = device_dtype(device, dtype)
        # Half precision for the image encoder only (all the compute): segment-anything's prompt
        # encoder mixes float32 coordinates with its buffers, so it and the small decoder stay fp32.
        self.model.to(self.device).eval()
        self.model.image_encoder.to(self.dtype)
        self._torch = torch

    @classmethod
    def check(cls, checkpoint: str | None = None, model_type: str | dict = "vit_h", **options) -> None:
        require("torch", SAM_INSTALL)
        require("segment_anything", SAM_INSTALL)
        if isinstance(model_type, str) and model_type not in SAM_ARCHS:
            raise BackendUnavailable(f"sam: unknown model_type {model_type!r}; choose one of {', '.join(SAM_ARCHS)}")
        if not checkpoint or not Path(checkpoint).is_file():
            raise BackendUnavailable(
                f"sam: checkpoint {checkpoint!r} not found; download the original SAM checkpoint "
                "(e.g. sam_vit_h_4b8939.pth from github.com/facebookresearch/segment-anything) and set "
                "segmenter_options.checkpoint to its path"
            )

    def _prepare(self, rgb: np.ndarray) -> tuple[np.ndarray, float]:
        """ResizeLongestSide.apply_image: PIL bilinear resize so the longest side is img_size."""
        size = self.model.image_encoder.img_size
        h, w = rgb.shape[:2]
        scale = size / max(h, w)
        new_w, new_h = int(w * scale + 0.5), int(h * scale + 0.5)
        return np.array(Image.fromarray(rgb).resize((new_w, new_h), Image.BILINEAR)), scale

    def segment(
        self,
        images: list[np.ndarray],
        boxes: list[list[tuple[float, float, float, float]]],
    ) -> list[list[tuple[np.ndarray, float]]]:
        torch = self._torch
        sam = self.model
        prepared = [self._prepare(np.ascontiguousarray(img)) for img in images]
        with torch.inference_mode():
            batch = torch.stack([sam.preprocess(torch.as_tensor(p, device=self.device).permute(2, 0, 1).float()) for p, _ in prepared]).to(
                self.dtype
            )
            embeddings = sam.image_encoder(batch).float()
            results = []
            for i, (img, bxs) in enumerate(zip(images, boxes, strict=True)):
                if not bxs:
                    results.append([])
                    continue
                resized, scale = prepared[i]
                b = torch.as_tensor(np.asarray(bxs, np.float32) * scale, device=self.device)
                sparse, dense = sam.prompt_encoder(points=None, boxes=b, masks=None)
                low_res, iou = sam.mask_decoder(
                    image_embeddings=embeddings[i : i + 1],
                    image_pe=sam.prompt_encoder.get_dense_pe(),
                    sparse_prompt_embeddings=sparse,
                    dense_prompt_embeddings=dense,
                    multimask_output=False,
                )
                masks = sam.postprocess_masks(low_res, resized.shape[:2], img.shape[:2]) > sam.mask_threshold
                results.append([(m[0].cpu().numpy(), float(s[0])) for m, s in zip(masks, iou.float())])
        return results


class HfSamSegmenter:
    """SAM through transformers SamModel + SamProcessor."""

    package = "transformers"

    def __init__(
        self,
        model: Annotated[str | None, Weights("sam-vit-huge-hf")] = None,
        device: str | None = None,
        dtype: Dtype | None = None,
    ):
        require("transformers", HF_INSTALL)
        import torch
        from transformers import SamModel, SamProcessor

        path = resolve_model_dir(model, "products segmenter hf-sam")
        self.device, self.dtype = device_dtype(device, dtype)
        self.processor = SamProcessor.from_pretrained(path, local_files_only=True)
        self.model = SamModel.from_pretrained(path, local_files_only=True, dtype=self.dtype).to(self.device).eval()
        self._torch = torch

    @classmethod
    def check(cls, model: str = "facebook/sam-vit-huge", **options) -> None:
        require("transformers", HF_INSTALL)
        require("torch", HF_INSTALL)
        resolve_model_dir(model, "products segmenter hf-sam")

    def segment(
        self,
        images: list[np.ndarray],
        boxes: list[list[tuple[float, float, float, float]]],
    ) -> list[list[tuple[np.ndarray, float]]]:
        torch = self._torch
        # One processor call per image (boxes differ in number), one encoder call for the batch.
        per_image = [
            self.processor(
                images=img,
                input_boxes=[[list(map(float, b)) for b in bxs]] if bxs else None,
                return_tensors="pt",
            )
            for img, bxs in zip(images, boxes, strict=True)
        ]
        pixels = torch.cat([p["pixel_values"] for p in per_image]).to(self.device, self.dtype)
        results = []
        with torch.inference_mode():
            embeddings = self.model.get_image_embeddings(pixels)
            for i, (inp, bxs) in enumerate(zip(per_image, boxes, strict=True)):
                if not bxs:
                    results.append([])
                    continue
                out = self.model(
                    image_embeddings=embeddings[i : i + 1],
                    input_boxes=inp["input_boxes"].to(self.device, self.dtype),
                    multimask_output=False,
                )
                masks = self.processor.post_process_masks(
                    out.pred_masks.float().cpu(),
                    inp["original_sizes"],
                    inp["reshaped_input_sizes"],
                )[0]
                results.append([(m[0].numpy().astype(bool), float(s[0])) for m, s in zip(masks, out.iou_scores[0].float().cpu())])
        return results
