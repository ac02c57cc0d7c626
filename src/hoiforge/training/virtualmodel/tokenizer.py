"""The tiny config's tokenizer: real CLIP BPE code over a byte vocabulary (no merges), built offline."""

from __future__ import annotations


def byte_clip_tokenizer():
    """A real CLIP BPE tokenizer whose vocabulary is the byte alphabet (no merges): the tiny config's."""
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {tok: i for i, tok in enumerate(["<|startoftext|>", "<|endoftext|>", *alphabet, *(c + "</w>" for c in alphabet)])}
    return CLIPTokenizer(vocab=vocab, merges=[])
