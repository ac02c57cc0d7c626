"""CLIP text encoding of prompts longer than CLIP's 77 tokens, by chunks (HoIHuman's captions).

The caption's tokens (without specials) are split into chunks of 75; each chunk becomes its own
77-token CLIP input ``[BOS] chunk [EOS] [PAD]...``, is encoded on its own, and the chunks'
hidden states are concatenated along the sequence axis: a caption of n tokens gives
``ceil(n / 75) * 77`` conditioning tokens. This is what diffusers' long-prompt-weighting
community pipelines and compel do; a prompt of <= 75 tokens encodes exactly as the usual
``tokenizer(..., padding="max_length", max_length=77)`` path does.

Used by the trainers (conditioning) and by the precompute stage (``<id>.text.npy``).
"""

from __future__ import annotations

from pathlib import Path

CLIP_CONTEXT = 77  # CLIP's position embeddings
CHUNK_TOKENS = CLIP_CONTEXT - 2  # room for BOS and EOS


def chunk_token_ids(
    ids: list[int], bos: int, eos: int, pad: int, n_chunks: int | None = None, chunk_tokens: int = CHUNK_TOKENS
) -> list[list[int]]:
    """Split caption token ids (no specials) into CLIP inputs of ``chunk_tokens + 2`` ids each.

    ``n_chunks`` pads with empty chunks (for batching captions of different lengths) or
    truncates; an empty caption is one empty chunk, as CLIP encodes the empty prompt.
    """
    pieces = [ids[i : i + chunk_tokens] for i in range(0, len(ids), chunk_tokens)] or [[]]
    if n_chunks is not None:
        pieces = (pieces + [[]] * n_chunks)[:n_chunks]
    return [[bos, *p, eos] + [pad] * (chunk_tokens - len(p)) for p in pieces]


class LongPromptEncoder:
    """encode(texts) -> (batch, n_chunks * 77, hidden) CLIP last hidden states, chunked."""

    def __init__(self, tokenizer, text_encoder, max_chunks: int | None = None):
        self.tokenizer = tokenizer
        self.text_encoder = text_encoder.eval()
        self.max_chunks = max_chunks  # bound on conditioning length (None: as long as the longest caption)

    @classmethod
    def from_pretrained(cls, model: str | Path, device: str | None = None, dtype: str | None = None, max_chunks: int | None = None):
        """CLIP tokenizer + text model from a local dir: a CLIP checkpoint, or a Stable Diffusion
        layout with ``tokenizer/`` and ``text_encoder/`` subfolders."""
        from transformers import CLIPTextModel, CLIPTokenizer

        from hoiforge.models.device import device_dtype

        root = Path(model)
        tok_dir, enc_dir = (root / "tokenizer", root / "text_encoder") if (root / "text_encoder").is_dir() else (root, root)
        device_, dtype_ = device_dtype(device, dtype)
        tokenizer = CLIPTokenizer.from_pretrained(tok_dir)
        encoder = CLIPTextModel.from_pretrained(enc_dir, dtype=dtype_).to(device_)
        return cls(tokenizer, encoder, max_chunks=max_chunks)

    def token_chunks(self, texts: list[str]) -> list[list[list[int]]]:
        """Per text, its 77-id chunks, all texts padded to the same number of chunks."""
        t = self.tokenizer
        ids = t(list(texts), add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
        n = max(max(1, -(-len(i) // CHUNK_TOKENS)) for i in ids)
        if self.max_chunks is not None:
            n = min(n, self.max_chunks)
        pad = t.pad_token_id if t.pad_token_id is not None else t.eos_token_id
        return [chunk_token_ids(i, t.bos_token_id, t.eos_token_id, pad, n_chunks=n) for i in ids]

    def encode(self, texts: list[str]):
        import torch

        chunks = self.token_chunks(texts)
        batch, n = len(chunks), len(chunks[0])
        device = self.text_encoder.device
        input_ids = torch.tensor([c for per_text in chunks for c in per_text], device=device)  # (batch*n, 77)
        with torch.inference_mode():
            hidden = self.text_encoder(input_ids=input_ids).last_hidden_state  # (batch*n, 77, d)
        return hidden.reshape(batch, n * CLIP_CONTEXT, hidden.shape[-1])
