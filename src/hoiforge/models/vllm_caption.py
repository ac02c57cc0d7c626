"""Captions at scale: Qwen2-VL / Qwen2.5-VL served by a vLLM engine inside the caption actor.

Why an engine inside the actor (not ``ray.data.llm``'s processor): the caption stage is a
hoiforge Stage (backend slot, ``process(samples)``, per-sample drops, provenance, the optional
translator after it); ``ray.data.llm`` is a Dataset-level transform with its own row schema
and its own actor pool, which would move captioning out of the stage contract (stages import
no Ray) and out of the adapter's failure isolation. An ``LLM`` engine per actor keeps every one
of those, and vLLM still does what makes it fast:

- continuous batching: all requests of a Ray batch go to ``LLM.generate`` at once, and the
  scheduler keeps up to ``max_num_seqs`` sequences decoding, admitting a new one as soon as
  another finishes (give the stage a large ``resources.batch_size``, e.g. 256, so the
  scheduler is never starved between Ray batches);
- paged KV cache and prefix caching (the chat template and prompt are shared by every request);
- bounded image tokens: ``min_pixels``/``max_pixels`` go to the Qwen2-VL processor
  (``mm_processor_kwargs``), so one image costs at most ``max_pixels / 28**2`` visual tokens.

The prompt is the same chat turn the transformers backend builds (the model's own chat
template, image then prompt, generation prompt on), and decoding is greedy by default, so the
caption document ``{text, backend, prompt, model, truncated}`` has the same shape and meaning as
``qwen2-vl``'s. Request building and output parsing are plain functions, tested without vLLM.

Install: ``pip install 'hoiforge[vllm]'`` on a CUDA machine (vLLM runs on GPUs only). Not
verified on a GPU in this repository's CI: see docs/performance.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import numpy as np

from hoiforge.models.base import require
from hoiforge.models.registry import Weights
from hoiforge.models.vlm_caption import MAX_PIXELS, MIN_PIXELS, PAPER_PROMPT, GeneratedText, image_only_processor_class
from hoiforge.models.weights.hf_local import resolve_model_dir

VLLM_HINT = "install it with `pip install 'hoiforge[vllm]'` on a CUDA machine, or choose captioner backend qwen2-vl"

# The transformers backend's bounds (448²..672², ~256–576 visual tokens), so both backends caption
# the same resized image; the processor's own default allows 16384 tokens.
PATCH = 28
DEFAULT_MIN_PIXELS = MIN_PIXELS
DEFAULT_MAX_PIXELS = MAX_PIXELS


def chat_prompt(processor: Any, prompt: str) -> str:
    """The text of one request: the model's chat template over (image, prompt), generation prompt on."""
    chat = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
    return processor.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)


def build_requests(prompt_text: str, images: Sequence[np.ndarray]) -> list[dict[str, Any]]:
    """vLLM prompts (``{"prompt", "multi_modal_data"}``), one per image, in order."""
    from PIL import Image

    return [{"prompt": prompt_text, "multi_modal_data": {"image": Image.fromarray(np.asarray(im))}} for im in images]


def engine_args(
    model_dir: str,
    *,
    dtype: str,
    min_pixels: int,
    max_pixels: int,
    max_model_len: int,
    max_num_seqs: int,
    gpu_memory_utilization: float,
    tensor_parallel_size: int,
    seed: int,
    engine_kwargs: dict[str, Any] | None,
) -> dict[str, Any]:
    """Keyword arguments of ``vllm.LLM``: one image per prompt, bounded visual tokens."""
    if min_pixels > max_pixels:
        raise ValueError(f"min_pixels {min_pixels} > max_pixels {max_pixels}")
    if max_model_len <= max_pixels // (PATCH * PATCH):
        raise ValueError(
            f"max_model_len {max_model_len} cannot hold the {max_pixels // (PATCH * PATCH)} visual tokens of max_pixels {max_pixels}"
        )
    return {
        "model": str(model_dir),
        "dtype": dtype,
        "max_model_len": max_model_len,
        "max_num_seqs": max_num_seqs,
        "gpu_memory_utilization": gpu_memory_utilization,
        "tensor_parallel_size": tensor_parallel_size,
        "seed": seed,
        "limit_mm_per_prompt": {"image": 1},
        "mm_processor_kwargs": {"min_pixels": min_pixels, "max_pixels": max_pixels},
        "enable_prefix_caching": True,
        **(engine_kwargs or {}),
    }


def sampling_args(max_new_tokens: int, seed: int, sampling_kwargs: dict[str, Any] | None) -> dict[str, Any]:
    """Keyword arguments of ``vllm.SamplingParams``: greedy unless overridden, like the transformers backend."""
    return {"temperature": 0.0, "max_tokens": max_new_tokens, "seed": seed, **(sampling_kwargs or {})}


def parse_outputs(outputs: Sequence[Any], n: int) -> list[GeneratedText]:
    """One caption per request from vLLM ``RequestOutput``s (``.outputs[0].text``), stripped, marked
    ``truncated`` when generation stopped at ``max_tokens`` (``finish_reason == "length"``).

    A request without a completion gives "" (the stage drops that sample as ``caption.empty``);
    a count that does not match the requests is a bug in the engine call, never silently shifted.
    """
    if len(outputs) != n:
        raise RuntimeError(f"vLLM returned {len(outputs)} outputs for {n} requests")
    captions = []
    for out in outputs:
        done = out.outputs[0] if out.outputs else None
        text = (done.text or "").strip() if done is not None else ""
        captions.append(GeneratedText(text, truncated=done is not None and getattr(done, "finish_reason", None) == "length"))
    return captions


class VllmCaptioner:
    """caption(images) -> one caption per image, in order, through a vLLM engine (continuous batching)."""

    name = "vllm"
    package = "vllm"

    def __init__(
        self,
        model: Annotated[str | None, Weights("qwen2-vl-7b-instruct")] = None,
        prompt: str = PAPER_PROMPT,
        max_new_tokens: int = 256,
        dtype: str = "bfloat16",
        min_pixels: int = DEFAULT_MIN_PIXELS,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        max_model_len: int = 4096,
        max_num_seqs: int = 256,
        gpu_memory_utilization: float = 0.9,
        tensor_parallel_size: int = 1,
        seed: int = 0,
        sampling_kwargs: dict[str, Any] | None = None,
        engine_kwargs: dict[str, Any] | None = None,
    ):
        self.check(model=model)
        from vllm import LLM, SamplingParams

        model_dir = resolve_model_dir(model, "caption vllm")
        args = engine_args(
            str(model_dir),
            dtype=dtype,
            min_pixels=min_pixels,
            max_pixels=max_pixels,
            max_model_len=max_model_len,
            max_num_seqs=max_num_seqs,
            gpu_memory_utilization=gpu_memory_utilization,
            tensor_parallel_size=tensor_parallel_size,
            seed=seed,
            engine_kwargs=engine_kwargs,
        )
        self.llm = LLM(**args)
        self.sampling = SamplingParams(**sampling_args(max_new_tokens, seed, sampling_kwargs))
        # The transformers backend's processor and chat template: the very same prompt text.
        self.prompt_text = chat_prompt(image_only_processor_class().from_pretrained(model_dir), prompt)
        self.prompt, self.max_new_tokens = prompt, max_new_tokens
        self.model_id = str(model)

    @classmethod
    def check(cls, model: str | None = None, **_) -> None:
        require("vllm", VLLM_HINT)
        resolve_model_dir(model, "caption vllm")

    def caption(self, images: list[np.ndarray], annotations: list[dict[str, Any]] | None = None) -> list[GeneratedText]:
        """One caption per image; the VLM sees only the pixels (``annotations`` serve the template backend)."""
        requests = build_requests(self.prompt_text, images)
        outputs = self.llm.generate(requests, self.sampling, use_tqdm=False)
        return parse_outputs(outputs, len(requests))

    def close(self) -> None:
        self.llm = None
