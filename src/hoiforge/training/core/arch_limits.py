"""Model configs checked BEFORE anything is built: bounded sizes, a buildable shape, a bounded parameter count.

A config is received data when it comes from a RUN (its ``config.yaml``, a module record, a saved
``config.json``) or from someone else's YAML: ``block_out_channels: [65536, 131072]`` used to
allocate 64 GB before the architecture's own check refused it, and ``num_train_timesteps:
10000000`` ran out of memory in the schedule. Three checks, cheapest first, each one sentence
naming the key:

1. ``check_values``: every number under a size key is at most the limit below (ours: a few times
   the largest known architecture's value, so every real SD 1.5/2.x/XL, DINOv2, CLIP, SegFormer,
   ViTPose config passes), lists are short, numbers are finite;
2. ``check_buildable``: the model is constructed on torch's ``meta`` device (no memory), so a
   shape the architecture refuses fails here, and its parameter count is bounded;
3. ``check_folder``: the ``*config*.json`` files of a pretrained folder go through (1).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hoiforge.errors import HoiforgeError

# key -> (largest accepted, the largest value a known architecture uses: for the message)
_WIDTH = (16_384, "SDXL/DINOv2-giant widths are at most 2,560")
_LAYERS = (128, "DINOv2-giant has 40 layers")
LIMITS: dict[str, tuple[int, str]] = {
    **dict.fromkeys(
        (
            "block_out_channels",
            "hidden_size",
            "hidden_sizes",
            "decoder_hidden_size",
            "cross_attention_dim",
            "projection_dim",
            "conditioning_embedding_out_channels",
            "expert_channels",
            "mask_channels",
            "hidden",
            "width",
            "time_embedding_dim",
        ),
        _WIDTH,
    ),
    "intermediate_size": (65_536, "DINOv2-giant's MLP is 6,144 wide"),
    **dict.fromkeys(("num_hidden_layers", "layers_per_block", "depth", "depths", "transformer_layers_per_block"), _LAYERS),
    **dict.fromkeys(("num_attention_heads", "attention_head_dim"), (1_024, "SDXL uses 64 heads")),
    **dict.fromkeys(
        ("sample_size", "image_size", "resolution", "size", "heatmap_size", "dino_image_size"), (8_192, "SD and SDXL train at 512-1024")
    ),
    **dict.fromkeys(("patch_size", "patch_sizes", "strides"), (256, "ViT patches are 14-16 pixels")),
    **dict.fromkeys(("num_train_timesteps", "timesteps"), (100_000, "Stable Diffusion uses 1,000 steps")),
    **dict.fromkeys(("steps", "validation_steps", "inference_steps"), (10_000, "DDIM uses 20-50 steps")),
    **dict.fromkeys(
        ("in_channels", "out_channels", "latent_channels", "num_channels", "conditioning_channels"), (1_024, "SD latents have 4 channels")
    ),
    "norm_num_groups": (1_024, "SD uses 32 groups"),
    **dict.fromkeys(("mlp_ratio", "mlp_ratios"), (64, "ViTs use 4")),
    "max_position_embeddings": (65_536, "CLIP has 77 positions"),
    "vocab_size": (1_000_000, "CLIP has 49,408 tokens"),
    "text_chunks": (64, "3 chunks of 77 tokens hold a long caption"),
    "sr_ratios": (256, "SegFormer uses at most 8"),
}
MAX_LIST = 10_000  # a list longer than this is never a model setting (SD's trained_betas has 1,000)
MAX_PARAMS = 20_000_000_000  # (ours) randomly built models: several times the largest we train (SDXL's UNet, 2.6 B)
MAX_CONFIG_BYTES = 1 << 20


class ArchitectureError(HoiforgeError):
    """A model config that is out of range or does not describe a buildable model."""


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_values(doc: Any, where: str) -> None:
    """ArchitectureError naming the first key whose value is out of range (see LIMITS)."""
    if isinstance(doc, dict):
        for key, value in doc.items():
            here = f"{where}.{key}"
            if isinstance(value, (list, tuple)) and len(value) > MAX_LIST:
                raise ArchitectureError(f"{here} holds {len(value):,} values, more than any model setting ({MAX_LIST:,})")
            limit = LIMITS.get(str(key))
            values = value if isinstance(value, (list, tuple)) else [value]
            for v in values:
                if _number(v) and not math.isfinite(v):
                    raise ArchitectureError(f"{here} is {v}, not a finite number")
                if limit is not None and _number(v) and not (0 <= v <= limit[0]):
                    shown = str(v) if len(str(v)) < 40 else f"{str(v)[:20]}..."
                    raise ArchitectureError(
                        f"{here} = {shown} is outside 0..{limit[0]:,}, the range this project builds ({limit[1]}); fix the config"
                    )
            check_values(value, here)
    elif isinstance(doc, (list, tuple)):
        if len(doc) > MAX_LIST:
            raise ArchitectureError(f"{where} holds {len(doc):,} values, more than any model setting ({MAX_LIST:,})")
        for i, item in enumerate(doc):
            if isinstance(item, (dict, list, tuple)):
                check_values(item, f"{where}[{i}]")


def count_parameters(build: Callable[[], Any]) -> int:
    """Parameters of ``build()`` constructed on the meta device: shapes only, no memory."""
    import torch

    with torch.device("meta"):
        model = build()
    modules = model.values() if isinstance(model, dict) else [model]
    return sum(p.numel() for m in modules if hasattr(m, "parameters") for p in m.parameters())


def check_buildable(where: str, build: Callable[[], Any], max_params: int = MAX_PARAMS) -> int:
    """The parameter count of ``build()`` (on meta); ArchitectureError if it cannot be built or is too large."""
    try:
        n = count_parameters(build)
    except HoiforgeError:
        raise
    except Exception as e:  # noqa: BLE001 - the architecture's own refusal, in one sentence
        first = (str(e).strip().splitlines() or [""])[0][:300]
        raise ArchitectureError(f"{where} does not describe a model that can be built ({type(e).__name__}: {first})") from None
    if n > max_params:
        raise ArchitectureError(
            f"{where} describes a model of {n / 1e9:.1f} B parameters, above the {max_params / 1e9:.0f} B this project builds"
        )
    return n


def check_folder(folder: Path, where: str | None = None) -> None:
    """Every ``*config*.json`` of a pretrained model folder (and its direct subfolders) through ``check_values``."""
    folder = Path(folder)
    for path in sorted([*folder.glob("*config*.json"), *folder.glob("*/*config*.json")]):
        name = f"{where}/{path.relative_to(folder)}" if where else str(path)
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ArchitectureError(f"{name} is {path.stat().st_size:,} bytes, too large for a model config")
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise ArchitectureError(f"{name} is not readable JSON ({e})") from None
        check_values(doc, name)
