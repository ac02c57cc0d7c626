"""Paper-grade captions: a Qwen2-VL / Qwen2.5-VL model (transformers) from local weights, batched.

HoIHuman asked QwenVL "please describe this image in detail, including human, object and
background". One chat turn per image (image + prompt), greedy decoding by default so reruns
give the same caption, left padding so a batch generates together. Each image is resized by the
processor to between ``min_pixels`` and ``max_pixels`` (default 448²..672², the paper-like range:
~256-576 visual tokens; unbounded, one large photo costs up to 16k tokens at batch 16). Precision:
bf16 where the GPU supports it, else fp32 (never fp16: gibberish on some inputs). A caption that
used all ``max_new_tokens`` without reaching the end-of-text token is returned flagged
``truncated`` (the caption stage records it). Translation of non-English captions: models/translate.py.

Weights (local directory or cached hub id, never downloaded): the model directory of
``Qwen/Qwen2-VL-7B-Instruct`` / ``Qwen/Qwen2.5-VL-7B-Instruct`` (config.json, *.safetensors,
tokenizer files, preprocessor_config.json, chat template).
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np

from hoiforge.errors import BackendUnavailable
from hoiforge.models.base import require
from hoiforge.models.device import Dtype, bf16_or_fp32
from hoiforge.models.registry import Weights
from hoiforge.models.weights.hf_local import resolve_model_dir

TORCH_HINT = "pip install torch transformers (the paper-grade backends need them)"

PAPER_PROMPT = "please describe this image in detail, including human, object and background"
MIN_PIXELS = 448 * 448  # the paper-like bounds on the resized image (pixels, not side lengths)
MAX_PIXELS = 672 * 672


class GeneratedText(str):
    """A generated text (a plain ``str``) that knows whether generation stopped at ``max_new_tokens``."""

    truncated: bool = False

    def __new__(cls, text: str, truncated: bool = False) -> GeneratedText:
        obj = super().__new__(cls, text)
        obj.truncated = truncated
        return obj


def hit_token_limit(new_tokens, eos_ids: set[int], max_new_tokens: int, forced_eos: bool = False) -> list[bool]:
    """Per row of ``new_tokens`` [B, T] (generate's output after the prompt): True when the row never
    emitted an end token and generation ran the full ``max_new_tokens`` (its text is cut off).

    ``forced_eos``: the model's generation config forces an end token at the last position
    (Marian/opus-mt do), so an end token there does not mean the text was finished.
    """
    if new_tokens.shape[1] < max_new_tokens:
        return [False] * new_tokens.shape[0]  # generate stops early only when every row has finished
    span = slice(0, -1) if forced_eos else slice(None)
    return [not any(int(t) in eos_ids for t in row[span]) for row in new_tokens]


def eos_token_ids(model, tokenizer) -> set[int]:
    """Every id that ends generation: the generation config's eos ids plus the tokenizer's eos."""
    ids = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = set(ids if isinstance(ids, list | tuple) else [] if ids is None else [ids])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return {int(i) for i in ids}


def image_only_processor_class():
    """Qwen2-VL's processor without its video processor.

    transformers' Qwen2VLProcessor insists on a video-processor slot whose class needs
    torchvision; captions never use video, so this subclass declares only the image processor
    and tokenizer (the image processor itself falls back to its PIL backend without torchvision).
    Everything else (chat template, image-token expansion, batching) is transformers' own code.
    """
    from transformers import Qwen2VLProcessor
    from transformers.processing_utils import ProcessorMixin

    class ImageOnlyQwen2VLProcessor(Qwen2VLProcessor):
        def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
            self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
            self.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
            self.image_token_id = getattr(tokenizer, "image_token_id", None) or tokenizer.convert_tokens_to_ids(self.image_token)
            self.video_token_id = getattr(tokenizer, "video_token_id", None) or tokenizer.convert_tokens_to_ids(self.video_token)
            ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template, **kwargs)

    return ImageOnlyQwen2VLProcessor


class QwenVLCaptioner:
    """caption(images) -> one caption per image, in order."""

    name = "qwen2-vl"
    package = "transformers"

    def __init__(
        self,
        model: Annotated[str | None, Weights("qwen2-vl-7b-instruct")] = None,
        prompt: str = PAPER_PROMPT,
        max_new_tokens: int = 256,
        device: str | None = None,
        dtype: Dtype | None = None,
        min_pixels: int = MIN_PIXELS,
        max_pixels: int = MAX_PIXELS,
        generate_kwargs: dict[str, Any] | None = None,
    ):
        self.check(model=model, min_pixels=min_pixels, max_pixels=max_pixels)
        from transformers import AutoModelForImageTextToText

        model_dir = resolve_model_dir(model, "caption qwen2-vl")
        self.device, self.dtype = bf16_or_fp32(device, dtype, "Qwen2-VL")
        self.processor = image_only_processor_class().from_pretrained(model_dir)
        self.processor.tokenizer.padding_side = "left"  # batched generation continues every row at the end
        self.model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=self.dtype).to(self.device).eval()
        self.prompt, self.max_new_tokens = prompt, max_new_tokens
        # Qwen2-VL's processor names its pixel bounds shortest_edge/longest_edge; both count pixels.
        self.size = {"shortest_edge": min_pixels, "longest_edge": max_pixels}
        self.min_pixels, self.max_pixels = min_pixels, max_pixels
        self.generate_kwargs = {"do_sample": False, **(generate_kwargs or {})}
        self.eos_ids = eos_token_ids(self.model, self.processor.tokenizer)
        self.model_id = str(model)

    @classmethod
    def check(
        cls, model: str | None = None, min_pixels: int = MIN_PIXELS, max_pixels: int = MAX_PIXELS, dtype: str | None = None, **_
    ) -> None:
        require("torch", TORCH_HINT)
        require("transformers", TORCH_HINT)
        if not 0 < min_pixels <= max_pixels:
            raise BackendUnavailable(f"caption qwen2-vl: need 0 < min_pixels <= max_pixels, got {min_pixels} and {max_pixels}")
        if dtype in ("fp16", "float16"):
            raise BackendUnavailable("caption qwen2-vl: Qwen2-VL produces gibberish in fp16; use dtype bf16 or fp32 (or leave it unset)")
        resolve_model_dir(model, "caption qwen2-vl")

    def caption(self, images: list[np.ndarray], annotations: list[dict[str, Any]] | None = None) -> list[GeneratedText]:
        """One caption per image; the VLM sees only the pixels (``annotations`` serve the template backend)."""
        import torch
        from PIL import Image

        chat = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": self.prompt}]}]
        text = self.processor.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
        extra = {"size": self.size} if self.size else {}
        inputs = self.processor(
            text=[text] * len(images), images=[Image.fromarray(np.asarray(im)) for im in images], padding=True, return_tensors="pt", **extra
        ).to(self.device)
        inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, **self.generate_kwargs)
        new_tokens = out[:, inputs["input_ids"].shape[1] :]
        cut = hit_token_limit(new_tokens, self.eos_ids, self.max_new_tokens)
        texts = self.processor.batch_decode(new_tokens, skip_special_tokens=True)
        return [GeneratedText(t.strip(), c) for t, c in zip(texts, cut, strict=True)]
