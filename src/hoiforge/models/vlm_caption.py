"""Paper-grade captions: a Qwen2-VL / Qwen2.5-VL model (transformers) from local weights, batched.

HoIHuman asked QwenVL "please describe this image in detail, including human, object and
background". One chat turn per image (image + prompt), greedy decoding by default so reruns
give the same caption, left padding so a batch generates together. An optional seq2seq
translation step (e.g. a Marian opus-mt model) turns non-English captions into English.

Weights (local directory or cached hub id, never downloaded): the model directory of
``Qwen/Qwen2-VL-7B-Instruct`` / ``Qwen/Qwen2.5-VL-7B-Instruct`` (config.json, *.safetensors,
tokenizer files, preprocessor_config.json, chat template).
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np

from hoiforge.models.base import require
from hoiforge.models.device import Dtype, device_dtype
from hoiforge.models.hf_local import resolve_model_dir
from hoiforge.models.registry import Weights

TORCH_HINT = "pip install torch transformers (the paper-grade backends need them)"

PAPER_PROMPT = "please describe this image in detail, including human, object and background"


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
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        generate_kwargs: dict[str, Any] | None = None,
    ):
        self.check(model=model)
        from transformers import AutoModelForImageTextToText

        model_dir = resolve_model_dir(model, "caption qwen2-vl")
        self.device, self.dtype = device_dtype(device, dtype)
        self.processor = image_only_processor_class().from_pretrained(model_dir)
        self.processor.tokenizer.padding_side = "left"  # batched generation continues every row at the end
        self.model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=self.dtype).to(self.device).eval()
        self.prompt, self.max_new_tokens = prompt, max_new_tokens
        self.size = None
        if min_pixels or max_pixels:
            ip = self.processor.image_processor
            self.size = {"shortest_edge": min_pixels or ip.size["shortest_edge"], "longest_edge": max_pixels or ip.size["longest_edge"]}
        self.generate_kwargs = {"do_sample": False, **(generate_kwargs or {})}
        self.model_id = str(model)

    @classmethod
    def check(cls, model: str | None = None, **_) -> None:
        require("torch", TORCH_HINT)
        require("transformers", TORCH_HINT)
        resolve_model_dir(model, "caption qwen2-vl")

    def caption(self, images: list[np.ndarray], annotations: list[dict[str, Any]] | None = None) -> list[str]:
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
        return [t.strip() for t in self.processor.batch_decode(new_tokens, skip_special_tokens=True)]


class Translator:
    """translate(texts) -> English texts with a local seq2seq model (e.g. Helsinki-NLP/opus-mt-zh-en), batched."""

    name = "marian"
    package = "transformers"

    def __init__(self, model: str | None = None, max_new_tokens: int = 512, device: str | None = None, dtype: Dtype | None = None):
        self.check(model=model)
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        model_dir = resolve_model_dir(model, "caption translation")
        self.device, dtype_ = device_dtype(device, dtype)
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModelForSeq2SeqLM.from_pretrained(model_dir, dtype=dtype_).to(self.device).eval()
        self.max_new_tokens = max_new_tokens
        self.model_id = str(model)

    @classmethod
    def check(cls, model: str | None = None, **_) -> None:
        require("torch", TORCH_HINT)
        require("transformers", TORCH_HINT)
        resolve_model_dir(model, "caption translation")

    def translate(self, texts: list[str]) -> list[str]:
        import torch

        inputs = self.tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt").to(self.device)
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        return [t.strip() for t in self.tokenizer.batch_decode(out, skip_special_tokens=True)]
