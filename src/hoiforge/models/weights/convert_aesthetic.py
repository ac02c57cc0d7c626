"""Convert the LAION improved-aesthetic-predictor MLP (.pth) to safetensors with the same keys.

The published ``sac+logos+ava1-l14-linearMSE.pth`` is a pickled state dict of an
``nn.Sequential`` stored as ``layers``: Linear(768,1024), Dropout, Linear(1024,128), Dropout,
Linear(128,64), Dropout, Linear(64,16), Linear(16,1). Backends load the safetensors file (no
pickle at run time); the conversion reads the pickle once with ``weights_only=True``.

    python -m hoiforge.models.weights.convert_aesthetic SRC.pth DST.safetensors
"""

from __future__ import annotations

from pathlib import Path

from hoiforge.errors import ConversionError
from hoiforge.models.weights.convert_cli import converter_main

# key -> shape of the published layout; anything else is not the LAION MLP.
LAYOUT: dict[str, tuple[int, ...]] = {}
for _i, (_fan_in, _fan_out) in zip((0, 2, 4, 6, 7), ((768, 1024), (1024, 128), (128, 64), (64, 16), (16, 1)), strict=True):
    LAYOUT[f"layers.{_i}.weight"] = (_fan_out, _fan_in)
    LAYOUT[f"layers.{_i}.bias"] = (_fan_out,)


def build_mlp():
    """The predictor's MLP as published (dropout is inactive in eval mode)."""
    from torch import nn

    class AestheticMLP(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = nn.Sequential(
                nn.Linear(768, 1024), nn.Dropout(0.2),
                nn.Linear(1024, 128), nn.Dropout(0.2),
                nn.Linear(128, 64), nn.Dropout(0.1),
                nn.Linear(64, 16),
                nn.Linear(16, 1),
            )  # fmt: skip

        def forward(self, embedding):
            return self.layers(embedding)

    return AestheticMLP()


def check_layout(state: dict) -> None:
    wrong = [k for k in LAYOUT if k not in state or tuple(state[k].shape) != LAYOUT[k]]
    extra = sorted(set(state) - set(LAYOUT))
    if wrong or extra:
        raise ConversionError(
            "not the LAION aesthetic MLP layout: "
            + "; ".join([f"{k}: expected {LAYOUT[k]}, got {tuple(state[k].shape) if k in state else 'absent'}" for k in wrong]
                        + ([f"unexpected keys {extra}"] if extra else []))
        )  # fmt: skip


def convert(src: Path, dst: Path) -> Path:
    """Read ``src`` (.pth state dict, weights only) and write ``dst`` (.safetensors) with identical tensors."""
    import torch
    from safetensors.torch import save_file

    try:
        state = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - a pickle with code in it, or not a checkpoint at all
        raise ConversionError(f"{src}: cannot load as a weights-only checkpoint: {type(e).__name__}: {str(e).splitlines()[0]}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConversionError(f"{src}: expected a state dict of tensors")
    check_layout(state)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp")
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp), metadata={"source": src.name, "format": "pt"})
    tmp.replace(dst)  # a present .safetensors is a complete one
    return dst


def main(argv: list[str] | None = None) -> int:
    return converter_main(convert, "python -m hoiforge.models.weights.convert_aesthetic SRC.pth DST.safetensors", argv)


if __name__ == "__main__":
    raise SystemExit(main())
