"""Chunked CLIP text encoding of long captions, with a tiny CLIP text model and a CLIP tokenizer built here."""

from __future__ import annotations

import pytest
import torch

from hoiforge.models.text_encoding import CLIP_CONTEXT, LongPromptEncoder, chunk_token_ids

HIDDEN = 32


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    """A Stable-Diffusion-layout folder (tokenizer/, text_encoder/) holding a tiny CLIP text model and
    a real CLIP BPE tokenizer whose vocabulary is the byte alphabet (no merges: one token per character)."""
    from tokenizers import pre_tokenizers
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    root = tmp_path_factory.mktemp("sd")
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {tok: i for i, tok in enumerate(["<|startoftext|>", "<|endoftext|>", *alphabet, *(c + "</w>" for c in alphabet)])}
    CLIPTokenizer(vocab=vocab, merges=[]).save_pretrained(root / "tokenizer")
    torch.manual_seed(0)
    config = CLIPTextConfig(
        vocab_size=len(vocab),
        hidden_size=HIDDEN,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=CLIP_CONTEXT,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    CLIPTextModel(config).save_pretrained(root / "text_encoder")
    return root


def caption_of(n_tokens: int, tokenizer) -> str:
    words, text = ["shirt", "woman", "cup", "red", "holding", "street"], ""
    i = 0
    while len(tokenizer(text, add_special_tokens=False)["input_ids"]) < n_tokens:
        text = (text + " " + words[i % len(words)]).strip()
        i += 1
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return tokenizer.decode(ids[:n_tokens]).strip() if len(ids) > n_tokens else text


def test_chunk_token_ids_layout():
    chunks = chunk_token_ids(list(range(10, 210)), bos=0, eos=1, pad=2)
    assert [len(c) for c in chunks] == [77, 77, 77]
    assert all(c[0] == 0 for c in chunks)
    assert chunks[0][1:76] == list(range(10, 85)) and chunks[0][76] == 1
    assert chunks[2][1:51] == list(range(160, 210)) and chunks[2][51] == 1 and set(chunks[2][52:]) == {2}
    assert chunk_token_ids([], 0, 1, 2) == [[0, 1] + [2] * 75]
    assert len(chunk_token_ids([5] * 10, 0, 1, 2, n_chunks=3)) == 3


def test_200_token_caption_gives_three_chunks_concatenated(encoder_dir):
    enc = LongPromptEncoder.from_pretrained(encoder_dir, device="cpu")
    caption = caption_of(200, enc.tokenizer)
    assert len(enc.tokenizer(caption, add_special_tokens=False)["input_ids"]) == 200

    chunks = enc.token_chunks([caption])[0]
    assert len(chunks) == 3
    out = enc.encode([caption])
    assert out.shape == (1, 3 * CLIP_CONTEXT, HIDDEN)
    # Each 77-slice is that chunk encoded on its own: concatenation, not one long sequence.
    with torch.no_grad():
        for k, ids in enumerate(chunks):
            alone = enc.text_encoder(input_ids=torch.tensor([ids])).last_hidden_state[0]
            assert torch.allclose(out[0, k * CLIP_CONTEXT : (k + 1) * CLIP_CONTEXT], alone, atol=1e-5)
    assert not torch.allclose(out[0, :CLIP_CONTEXT], out[0, CLIP_CONTEXT : 2 * CLIP_CONTEXT])


def test_short_prompt_matches_standard_clip_encoding_and_batches_pad(encoder_dir):
    enc = LongPromptEncoder.from_pretrained(encoder_dir, device="cpu")
    short, long = "a woman holding a red cup", caption_of(160, enc.tokenizer)
    standard = enc.tokenizer([short], padding="max_length", max_length=CLIP_CONTEXT, truncation=True, return_tensors="pt")
    with torch.no_grad():
        reference = enc.text_encoder(input_ids=standard["input_ids"]).last_hidden_state
    assert torch.allclose(enc.encode([short]), reference, atol=1e-5)

    both = enc.encode([short, long])
    assert both.shape == (2, 3 * CLIP_CONTEXT, HIDDEN)  # 160 tokens -> 3 chunks; the short one padded with empty chunks
    assert torch.allclose(both[0, :CLIP_CONTEXT], reference[0], atol=1e-5)

    capped = LongPromptEncoder(enc.tokenizer, enc.text_encoder, max_chunks=2).encode([long])
    assert capped.shape == (1, 2 * CLIP_CONTEXT, HIDDEN)
