"""vllm captioner: request building, engine/sampling arguments and output parsing, without vLLM
(it is not installed here and needs a GPU), plus the preflight sentence when it is missing."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from hoiforge.errors import BackendUnavailable
from hoiforge.models import vllm_caption as V
from hoiforge.models.vlm_caption import PAPER_PROMPT, image_only_processor_class
from hoiforge.stages.caption import Caption

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def tiny_qwen2_vl(tmp_path_factory) -> Path:
    from tests.random_qwen2_vl import write_random_qwen2_vl

    return write_random_qwen2_vl(tmp_path_factory.mktemp("qwen2vl"), size="tiny")


def test_requests_carry_the_transformers_backends_chat_turn_and_one_image_each(tiny_qwen2_vl):
    processor = image_only_processor_class().from_pretrained(tiny_qwen2_vl)
    text = V.chat_prompt(processor, PAPER_PROMPT)
    # The same turn the qwen2-vl backend feeds generate: image placeholder, then the prompt, then the assistant turn.
    assert text.index("<|image_pad|>") < text.index(PAPER_PROMPT) < text.rindex("<|im_start|>assistant")
    assert text.count("<|image_pad|>") == 1  # vLLM expands it to the image's visual tokens itself

    images = [np.full((40, 60, 3), i * 50, np.uint8) for i in range(3)]
    requests = V.build_requests(text, images)
    assert [r["prompt"] for r in requests] == [text] * 3
    for im, r in zip(images, requests, strict=True):
        pil = r["multi_modal_data"]["image"]
        assert pil.mode == "RGB" and pil.size == (60, 40) and np.array_equal(np.asarray(pil), im)


def test_engine_args_bound_visual_tokens_and_allow_one_image():
    args = V.engine_args(
        "/m",
        dtype="bfloat16",
        min_pixels=V.DEFAULT_MIN_PIXELS,
        max_pixels=V.DEFAULT_MAX_PIXELS,
        max_model_len=4096,
        max_num_seqs=128,
        gpu_memory_utilization=0.85,
        tensor_parallel_size=1,
        seed=3,
        engine_kwargs={"enforce_eager": True},
    )
    assert args["mm_processor_kwargs"] == {"min_pixels": 448 * 448, "max_pixels": 672 * 672}  # the qwen2-vl backend's bounds
    assert args["limit_mm_per_prompt"] == {"image": 1} and args["max_num_seqs"] == 128 and args["enforce_eager"] is True
    with pytest.raises(ValueError, match="cannot hold the 576 visual tokens"):
        V.engine_args("/m", **{**{k: args[k] for k in ("dtype", "max_num_seqs", "gpu_memory_utilization", "tensor_parallel_size", "seed")},
                                 "min_pixels": 1, "max_pixels": V.DEFAULT_MAX_PIXELS, "max_model_len": 512, "engine_kwargs": None})  # fmt: skip
    assert V.sampling_args(256, 0, None) == {"temperature": 0.0, "max_tokens": 256, "seed": 0}  # greedy, like qwen2-vl
    assert V.sampling_args(64, 0, {"temperature": 0.7})["temperature"] == 0.7


def _request_output(text: str | None, finish_reason: str = "stop"):
    return SimpleNamespace(outputs=[SimpleNamespace(text=text, finish_reason=finish_reason)] if text is not None else [])


def test_outputs_parse_in_request_order_and_empty_stays_empty():
    outputs = [_request_output("  A woman holds a cup.\n"), _request_output(""), _request_output(None)]
    assert V.parse_outputs(outputs, 3) == ["A woman holds a cup.", "", ""]
    assert [c.truncated for c in V.parse_outputs([*outputs, _request_output("A woman holds", "length")], 4)] == [False] * 3 + [True]
    with pytest.raises(RuntimeError, match="2 outputs for 3 requests"):
        V.parse_outputs(outputs[:2], 3)


def test_stage_writes_the_same_caption_document_as_the_transformers_backend(tiny_qwen2_vl):
    """The stage around a stand-in engine: doc keys and values as for qwen2-vl, empty -> caption.empty."""
    from hoiforge.pipeline.adapter import run_stage
    from hoiforge.stages.testing import decoded

    class FakeLLM:
        def generate(self, requests, sampling, use_tqdm=False):
            return [
                _request_output("" if i == 1 else f"caption {i} of {r['multi_modal_data']['image'].size}") for i, r in enumerate(requests)
            ]

    captioner = object.__new__(V.VllmCaptioner)
    captioner.llm, captioner.sampling = FakeLLM(), None
    captioner.prompt_text = V.chat_prompt(image_only_processor_class().from_pretrained(tiny_qwen2_vl), PAPER_PROMPT)
    captioner.prompt, captioner.max_new_tokens, captioner.model_id = PAPER_PROMPT, 256, str(tiny_qwen2_vl)

    stage = Caption(Caption.Params(stage="caption", captioner={"backend": "vllm", "options": {"model": str(tiny_qwen2_vl)}}))
    stage.backends["captioner"] = captioner
    stage.ready = True
    names = ["astronaut.png", "coffee.png", "basketball1.png"]
    out = run_stage(stage, [decoded(DATA / n, i) for i, n in enumerate(names)])
    first = out[0].ann["caption"]
    assert first == {
        "text": "caption 0 of (512, 512)",
        "backend": "vllm",
        "prompt": PAPER_PROMPT,
        "model": str(tiny_qwen2_vl),
        "truncated": False,
    }
    assert out[0].members["txt"] == first["text"].encode() and out[0].metrics["caption_words"] == 5
    assert not out[1].live and out[1].reason_code == "caption.empty"
    assert out[2].live


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed here")
def test_preflight_names_the_missing_package_in_one_sentence(tiny_qwen2_vl):
    stage = Caption(Caption.Params(stage="caption", captioner={"backend": "vllm", "options": {"model": str(tiny_qwen2_vl)}}))
    with pytest.raises(BackendUnavailable) as e:
        stage.preflight()
    message = str(e.value)
    assert "'vllm' is not installed" in message and "hoiforge[vllm]" in message and "\n" not in message


def test_recipe_typo_in_vllm_options_is_a_recipe_error():
    with pytest.raises(ValueError, match="max_pixel"):
        Caption.Params(stage="caption", captioner={"backend": "vllm", "options": {"max_pixel": 10}})
