"""Shared by the eval tests: a tiny CLIP of the real architecture, saved as a model folder."""

from __future__ import annotations

from pathlib import Path


def build_tiny_clip(root: Path) -> Path:
    """CLIPModel (tiny, random, seeded) + a real CLIP BPE tokenizer over the byte alphabet (one token per
    character, bos/eos ids 0/1 inside the small vocabulary) + the PIL image processor, saved to ``root``."""
    import torch
    from tokenizers import pre_tokenizers
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {tok: i for i, tok in enumerate(["<|startoftext|>", "<|endoftext|>", *alphabet, *(c + "</w>" for c in alphabet)])}
    torch.manual_seed(0)
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(vocab),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=77,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        ),
        vision_config=dict(image_size=224, patch_size=32, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2),
        projection_dim=16,
    )
    CLIPModel(config).eval().save_pretrained(root)
    CLIPTokenizer(vocab=vocab, merges=[]).save_pretrained(root)
    CLIPImageProcessorPil().save_pretrained(root)
    return root
