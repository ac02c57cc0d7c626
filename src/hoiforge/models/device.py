"""One device and dtype policy for every torch backend, trainer and eval model.

CUDA when present, else CPU. On CUDA: bf16 where the GPU supports it (Ampere and newer), else
fp16; on CPU: fp32 (half precision on CPU is slow and, for some models, wrong). A recipe (or a
config) overrides either with a backend's ``device`` / ``dtype`` options. One policy matters
because models share a GPU: SAM, GroundingDINO, ViTPose and Qwen-VL used to pick different
precisions on the same card.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from hoiforge.errors import BackendUnavailable

if TYPE_CHECKING:
    import torch

# The names a recipe may use; the long forms are torch's own.
Dtype = Literal["bf16", "fp16", "fp32", "bfloat16", "float16", "float32"]
_TORCH_NAMES = {
    "bf16": "bfloat16",
    "fp16": "float16",
    "fp32": "float32",
    "bfloat16": "bfloat16",
    "float16": "float16",
    "float32": "float32",
}


def resolve_device(device: str | None = None) -> torch.device:
    import torch

    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailable(f"device {device!r} asked for, but torch sees no CUDA GPU here; remove the device option to run on CPU")
    return dev


def default_dtype(device: torch.device) -> torch.dtype:
    import torch

    if device.type != "cuda":
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def resolve_dtype(dtype: str | None, device: torch.device) -> torch.dtype:
    import torch

    if dtype is None:
        return default_dtype(device)
    if dtype not in _TORCH_NAMES:
        raise BackendUnavailable(f"unknown dtype {dtype!r}; use one of: bf16, fp16, fp32")
    return getattr(torch, _TORCH_NAMES[dtype])


def device_dtype(device: str | None = None, dtype: Dtype | None = None) -> tuple[torch.device, torch.dtype]:
    """(device, dtype) by the policy above, with the recipe's overrides applied."""
    dev = resolve_device(device)
    return dev, resolve_dtype(dtype, dev)


def bf16_or_fp32(device: str | None = None, dtype: Dtype | None = None, what: str = "this model") -> tuple[torch.device, torch.dtype]:
    """(device, dtype) for models that must not run in fp16: bf16 where the device supports it, else fp32.

    Qwen2-VL in fp16 overflows in some layers and generates gibberish on some inputs (its
    activations exceed fp16's range; bf16 shares fp32's exponent range). So the half precision
    the policy above picks is bf16 when the GPU has it and fp32 otherwise, and an explicit fp16 is
    refused with the reason.
    """
    import torch

    dev = resolve_device(device)
    if dtype is not None and _TORCH_NAMES.get(dtype) == "float16":
        raise BackendUnavailable(f"{what} produces gibberish in fp16; use dtype bf16 (Ampere or newer GPUs) or fp32")
    chosen = resolve_dtype(dtype, dev)
    if chosen == torch.float16:  # the default on a GPU without bf16
        chosen = torch.float32
    if chosen == torch.bfloat16 and dev.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise BackendUnavailable(f"{what}: dtype bf16 asked for, but this GPU does not support it; use fp32")
    return dev, chosen
