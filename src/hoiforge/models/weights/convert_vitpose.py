"""Convert an original ViTPose whole-body checkpoint into a transformers ``num_labels=133`` model.

The Hugging Face ViTPose/ViTPose++ checkpoints carry only the 17-keypoint COCO head: their
converter sets ``num_labels=17`` and drops ViTPose++'s other dataset heads. The original
checkpoints (ViTAE-Transformer/ViTPose, mmpose 0.x ``state_dict``) hold the whole-body head:

- ViTPose whole-body (e.g. ``wholebody.pth`` of ViTPose-H, ``ViTPose_huge_wholebody_256x192``):
  ``keypoint_head`` has 133 outputs;
- ViTPose++ (``vitpose+_{small,base,large,huge}.pth``): a mixture-of-experts MLP and
  ``associate_keypoint_heads.{0..4}`` = aic, mpii, ap10k, apt36k, wholebody. As the official
  ``tools/model_split.py`` does, COCO-WholeBody is head ``associate_keypoint_heads.4`` with
  expert 5 folded into ``fc2`` (the MoE output is ``cat(fc2(x), expert(x))``), giving a plain ViT.

Keys are renamed as transformers' own ``convert_vitpose_to_hf.py`` does. Usage::

    python -m hoiforge.models.weights.convert_vitpose wholebody.pth out_dir/   # then backend vitpose, options.model: out_dir/
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from pathlib import Path

from hoiforge.datasets.keypoints import NAMES, NUM_KEYPOINTS
from hoiforge.errors import ConversionError

# ViT widths of the ViTPose family -> attention heads (S, B, L, H); not recoverable from shapes.
HEADS_BY_WIDTH = {384: 12, 768: 12, 1024: 16, 1280: 16}
PLUS_WHOLEBODY_HEAD, PLUS_WHOLEBODY_EXPERT = 4, 5
_CLASSIC_HEAD = {
    "deconv_layers.0.weight": "deconv1.weight",
    **{f"deconv_layers.1.{p}": f"batchnorm1.{p}" for p in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")},
    "deconv_layers.3.weight": "deconv2.weight",
    **{f"deconv_layers.4.{p}": f"batchnorm2.{p}" for p in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")},
    "final_layer.weight": "conv.weight",
    "final_layer.bias": "conv.bias",
}


def _backbone_key(name: str) -> str:
    name = name.replace("patch_embed.proj", "embeddings.patch_embeddings.projection")
    name = name.replace("pos_embed", "embeddings.position_embeddings")
    name = name.replace("blocks", "encoder.layer")
    name = name.replace("attn.proj", "attention.output.dense")
    name = name.replace("norm1", "layernorm_before").replace("norm2", "layernorm_after")
    return name.replace("last_norm", "layernorm")


def convert_state_dict(state: dict, image_size: tuple[int, int] = (256, 192), num_heads: int | None = None):
    """(VitPoseConfig, transformers state dict) of the checkpoint's 133-keypoint model."""
    import torch
    from transformers import VitPoseBackboneConfig, VitPoseConfig

    state = {k.removeprefix("module."): v for k, v in state.items()}
    if "backbone.patch_embed.proj.weight" not in state:
        raise ConversionError("no backbone.patch_embed.proj.weight: not an original ViTPose checkpoint")
    if "keypoint_head.final_layer.weight" in state and state["keypoint_head.final_layer.weight"].shape[0] == NUM_KEYPOINTS:
        head, expert = "keypoint_head", None
    elif f"associate_keypoint_heads.{PLUS_WHOLEBODY_HEAD}.final_layer.weight" in state:
        head, expert = f"associate_keypoint_heads.{PLUS_WHOLEBODY_HEAD}", PLUS_WHOLEBODY_EXPERT
    else:
        raise ConversionError("no 133-keypoint head (neither keypoint_head with 133 outputs nor ViTPose++ associate_keypoint_heads.4)")

    width = state["backbone.patch_embed.proj.weight"].shape[0]
    layers = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"backbone\.blocks\.(\d+)\.", k)))
    heads = num_heads or HEADS_BY_WIDTH.get(width)
    if heads is None:
        raise ConversionError(f"unknown ViT width {width}: pass num_heads")
    fc1 = state["backbone.blocks.0.mlp.fc1.weight"]
    classic = f"{head}.deconv_layers.0.weight" in state
    backbone = VitPoseBackboneConfig(
        hidden_size=width, num_hidden_layers=layers, num_attention_heads=heads, mlp_ratio=fc1.shape[0] // width,
        image_size=list(image_size), patch_size=[16, 16], qkv_bias="backbone.blocks.0.attn.qkv.bias" in state,
        layer_norm_eps=1e-6, out_indices=[layers], num_experts=1,
    )  # fmt: skip
    config = VitPoseConfig(backbone_config=backbone, num_labels=NUM_KEYPOINTS, use_simple_decoder=not classic)
    config.id2label = dict(enumerate(NAMES))
    config.label2id = {n: i for i, n in config.id2label.items()}

    out = {}
    for key, value in state.items():
        if not key.startswith("backbone.") or ".mlp.experts." in key or key == "backbone.cls_token":
            continue
        if ".attn.qkv." in key:
            layer, kind = int(key.split(".")[2]), key.rsplit(".", 1)[1]
            for i, name in enumerate(("query", "key", "value")):
                out[f"backbone.encoder.layer.{layer}.attention.attention.{name}.{kind}"] = value[i * width : (i + 1) * width]
            continue
        if ".mlp.fc2." in key and expert is not None:
            # ViTPose++: the whole-body expert's slice of the MLP output, as model_split.py does.
            value = torch.cat([value, state[key.replace("fc2.", f"experts.{expert}.")]], 0)
        out[_backbone_key(key)] = value
    for key, value in state.items():
        if key.startswith(head + "."):
            rest = key[len(head) + 1 :]
            if classic:
                target = _CLASSIC_HEAD.get(rest)
            else:
                target = {"final_layer.weight": "conv.weight", "final_layer.bias": "conv.bias"}.get(rest)
            if target is None:
                raise ConversionError(f"unexpected head tensor {key}")
            out[f"head.{target}"] = value[:NUM_KEYPOINTS] if rest.startswith("final_layer") else value
    n_patches = out["backbone.embeddings.position_embeddings"].shape[1] - 1
    expected = ((image_size[0] + 4 - 16) // 16 + 1) * ((image_size[1] + 4 - 16) // 16 + 1)
    if n_patches != expected:
        raise ConversionError(f"position embeddings hold {n_patches} patches; image_size {image_size} needs {expected}")
    return config, out


def convert(checkpoint: str | Path, out_dir: str | Path, image_size: tuple[int, int] = (256, 192), num_heads: int | None = None) -> Path:
    """Convert ``checkpoint`` (a .pth) into a saved transformers model + processor in ``out_dir``."""
    import torch
    from transformers import VitPoseForPoseEstimation

    try:  # transformers 5 without torchvision: the PIL processor; same saved settings either way
        from transformers import VitPoseImageProcessorPil as Processor
    except ImportError:
        from transformers import VitPoseImageProcessor as Processor

    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    blob = torch.load(checkpoint, map_location="cpu", weights_only=True)
    state = blob.get("state_dict", blob) if isinstance(blob, dict) else blob
    config, converted = convert_state_dict(state, image_size, num_heads)
    model = VitPoseForPoseEstimation(config).eval()
    result = model.load_state_dict(converted, strict=True)
    assert not result.missing_keys and not result.unexpected_keys, result
    model.save_pretrained(out_dir)
    Processor(size={"height": image_size[0], "width": image_size[1]}).save_pretrained(out_dir)
    (out_dir / "conversion.json").write_text(json.dumps({
        "source": checkpoint.name, "source_sha256": hashlib.sha256(checkpoint.read_bytes()).hexdigest(),
        "num_labels": NUM_KEYPOINTS, "decoder": "simple" if config.use_simple_decoder else "classic",
    }, indent=2))  # fmt: skip
    return out_dir


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", help="original ViTPose whole-body or ViTPose++ .pth")
    ap.add_argument("out_dir", help="directory to write the transformers model into")
    ap.add_argument("--image-size", type=int, nargs=2, default=(256, 192), metavar=("H", "W"))
    ap.add_argument("--num-heads", type=int, default=None, help="attention heads (default from the ViT width)")
    args = ap.parse_args(argv)
    print(convert(args.checkpoint, args.out_dir, tuple(args.image_size), args.num_heads))


if __name__ == "__main__":
    main()
