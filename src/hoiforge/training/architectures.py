"""The published architectures of the pretrained networks the paper configs start from, as configs.

``--dry-run`` and the real-size tests build these on the meta device (shapes, no weights), so the
per-device memory plan and parameter counts need neither downloads nor local weights. Each dict is
the ``config.json`` of the named checkpoint, reduced to the keys that decide shapes; a real run
loads the weights (and their own config) from the weights root or the Hugging Face cache instead.
"""

from __future__ import annotations

from typing import Any

# runwayml/stable-diffusion-v1-5: unet/config.json (859.5M parameters)
SD15_UNET: dict[str, Any] = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 2,
    "block_out_channels": [320, 640, 1280, 1280],
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
    "norm_num_groups": 32,
}
# vae/config.json (83.7M)
SD15_VAE: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "sample_size": 512,
}
# text_encoder/config.json: CLIP ViT-L/14's text tower (123.1M)
SD15_TEXT: dict[str, Any] = {
    "vocab_size": 49408,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "bos_token_id": 49406,
    "eos_token_id": 49407,
    "pad_token_id": 1,
}
# facebook/dinov2-base (86.6M)
DINOV2_BASE: dict[str, Any] = {
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "mlp_ratio": 4,
    "patch_size": 14,
    "image_size": 518,
}
# nvidia/mit-b5: SegFormer-B5's encoder; the all-MLP decoder of B5 has 768 channels
MIT_B5: dict[str, Any] = {
    "hidden_sizes": [64, 128, 320, 512],
    "depths": [3, 6, 40, 3],
    "num_attention_heads": [1, 2, 5, 8],
    "sr_ratios": [8, 4, 2, 1],
    "decoder_hidden_size": 768,
}
# usyd-community/vitpose-base-simple: ViTPose-B's backbone (ViT-B/16)
VITPOSE_BASE: dict[str, Any] = {
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "mlp_ratio": 4,
    "qkv_bias": True,
}

# Names the configs use for pretrained weights -> what they are.
STABLE_DIFFUSION = {"stable-diffusion-v1-5", "runwayml/stable-diffusion-v1-5", "stable-diffusion-v1-5/stable-diffusion-v1-5"}


def sd15_unet() -> dict[str, Any]:
    return dict(SD15_UNET)
