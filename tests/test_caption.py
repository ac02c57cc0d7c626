"""caption stage: template captions from earlier stages' annotations on the fixture photos, and the
Qwen2-VL backend with a tiny randomly initialised Qwen2-VL (real architecture, processor, generate)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hoiforge.errors import BackendUnavailable
from hoiforge.models.vlm_caption import PAPER_PROMPT
from hoiforge.pipeline.adapter import run_stage
from hoiforge.stages.caption import Caption
from hoiforge.stages.person import Person
from hoiforge.stages.testing import decoded

DATA = Path(__file__).parent / "data"
SMALL = {"min_pixels": 56 * 56, "max_pixels": 112 * 112}  # keeps the tiny model's tests fast


def caption_stage(**params) -> Caption:
    return Caption(Caption.Params(stage="caption", **params))


@pytest.fixture(scope="module")
def with_persons():
    """Fixture photos after the real person stage (mediapipe), people counts as it found them."""
    names = ["astronaut.png", "coffee.png", "basketball1.png"]
    person = Person(Person.Params(stage="person", min_persons=0))
    return {n: s for n, s in zip(names, run_stage(person, [decoded(DATA / n, i) for i, n in enumerate(names)]))}


# -- template (embedded) ---------------------------------------------------------------------


def test_template_mentions_person_count_and_products_on_fixture_photos(with_persons):
    astronaut, coffee, basketball = (with_persons[n] for n in ("astronaut.png", "coffee.png", "basketball1.png"))
    assert len(astronaut.ann["persons"]) == 1 and coffee.ann["persons"] == []
    # Products as the products stage writes them (label, box, area), built by hand here.
    astronaut.ann["products"] = [{"label": "helmet", "box": [275, 340, 512, 512], "area": 30000}]
    coffee.ann["products"] = [{"label": "cup", "box": [170, 20, 410, 300], "area": 50000}]

    out = {s.key.rsplit("/", 1)[-1]: s for s in run_stage(caption_stage(), [astronaut, coffee, basketball])}
    texts = {n: s.ann["caption"]["text"] for n, s in out.items()}
    assert texts["astronaut.png"].startswith("A photo of one person with a black helmet.")
    assert "cup" in texts["coffee.png"] and "no people" in texts["coffee.png"]
    assert "one person" in texts["basketball1.png"] and "black-and-white" in texts["basketball1.png"]
    assert "helmet" not in texts["basketball1.png"]  # no products annotation: no product mentioned
    assert "The background is mostly brown." in texts["coffee.png"]  # the wooden table
    for s in out.values():
        assert s.ann["caption"]["backend"] == "template" and s.ann["caption"]["model"] is None
        assert s.members["txt"] == s.ann["caption"]["text"].encode("utf-8")
        assert s.metrics["caption_words"] == len(s.ann["caption"]["text"].split())


def test_template_never_invents_missing_annotations():
    s = run_stage(caption_stage(), [decoded(DATA / "coffee.png")])[0]
    text = s.ann["caption"]["text"]
    assert text == "A photo. The background is mostly brown."  # no person stage ran: people not mentioned


def test_template_pose_cues_and_holding_from_wholebody_keypoints(with_persons):
    s = with_persons["astronaut.png"]
    kps = [[0.0, 0.0, 0.0]] * 133
    kps[5], kps[6] = [150, 300, 0.9], [300, 300, 0.9]  # shoulders
    kps[9], kps[10] = [160, 480, 0.9], [330, 420, 0.8]  # wrists; the right one on the helmet
    s.ann["persons"][0]["keypoints"] = kps
    s.ann["products"] = [{"label": "helmet", "box": [275, 340, 512, 512], "area": 30000}]
    text = run_stage(caption_stage(), [s])[0].ann["caption"]["text"]
    assert "The person is seen upper body." in text
    assert "The person is holding the black helmet." in text


def test_template_pose_cues_after_the_real_pose_stage():
    from hoiforge.stages.pose import Pose

    names = ["basketball1.png", "astronaut.png"]
    samples = run_stage(Person(Person.Params(stage="person")), [decoded(DATA / n, i) for i, n in enumerate(names)])
    samples = run_stage(Pose(Pose.Params(stage="pose")), samples)
    texts = [s.ann["caption"]["text"] for s in run_stage(caption_stage(), samples)]
    assert "The person is seen full body." in texts[0]  # the player's ankles are in the frame
    assert "The person is seen from the waist up." in texts[1]  # portrait: hips visible, knees not


def test_template_takes_no_vlm_options():
    with pytest.raises(ValueError, match="template"):
        Caption.Params(stage="caption", captioner={"backend": "template", "options": {"model": "x"}})


# -- Qwen2-VL (paper-grade, tiny random model) --------------------------------------------------


@pytest.fixture(scope="module")
def tiny_qwen2_vl(tmp_path_factory) -> Path:
    """A Qwen2-VL checkpoint directory: tiny random weights of the real architecture, a byte-level BPE
    tokenizer trained locally with Qwen's special tokens, the Qwen2-VL image processor, a chat template."""
    from tests.random_qwen2_vl import write_random_qwen2_vl

    return write_random_qwen2_vl(tmp_path_factory.mktemp("qwen2vl"), size="tiny")


def test_qwen2_vl_captions_in_batch_order_through_processor_and_generate(tiny_qwen2_vl):
    stage = caption_stage(
        captioner={"backend": "qwen2-vl", "options": {"model": str(tiny_qwen2_vl), "device": "cpu", "max_new_tokens": 12, **SMALL}}
    )
    stage.preflight()
    names = ["astronaut.png", "coffee.png", "basketball1.png", "scenetext01.jpg"]  # 4 sizes: the batch is padded
    batched = run_stage(stage, [decoded(DATA / n, i) for i, n in enumerate(names)])
    singles = [run_stage(stage, [decoded(DATA / n, i)])[0] for i, n in enumerate(names)]

    texts = [s.ann["caption"]["text"] for s in batched]
    assert all(s.live for s in batched), [s.reason for s in batched]
    assert texts == [s.ann["caption"]["text"] for s in singles]  # row i of the batch is image i's caption
    assert len(set(texts)) > 1  # the images, not the prompt alone, drive generation
    for s in batched:
        cap = s.ann["caption"]
        assert cap["backend"] == "qwen2-vl" and cap["prompt"] == PAPER_PROMPT and cap["model"] == str(tiny_qwen2_vl)
        assert s.members["txt"] == cap["text"].encode("utf-8")
        assert cap["text"] and s.metrics["caption_words"] == len(cap["text"].split())


def test_qwen2_vl_preflight_says_what_is_missing(tmp_path):
    with pytest.raises(BackendUnavailable, match="no model"):
        caption_stage(captioner="qwen2-vl").preflight()
    with pytest.raises(BackendUnavailable, match="Hugging Face cache"):
        caption_stage(captioner={"backend": "qwen2-vl", "options": {"model": "Qwen/Qwen2-VL-7B-Instruct"}}).preflight()


def test_qwen2_vl_bounds_image_pixels_by_default_and_flags_truncated_captions(tiny_qwen2_vl):
    import torch

    from hoiforge.models.vlm_caption import MAX_PIXELS, MIN_PIXELS, QwenVLCaptioner

    captioner = QwenVLCaptioner(model=str(tiny_qwen2_vl), device="cpu", max_new_tokens=3)
    assert (MIN_PIXELS, MAX_PIXELS) == (448 * 448, 672 * 672) and captioner.dtype == torch.float32  # fp32 on CPU
    seen = []
    generate = captioner.model.generate
    captioner.model.generate = lambda **kw: (seen.append(kw["image_grid_thw"]), generate(**kw))[1]
    big = np.asarray(Image.open(DATA / "astronaut.png").convert("RGB").resize((1600, 1200)))
    small = np.asarray(Image.open(DATA / "coffee.png").convert("RGB").resize((200, 150)))
    texts = captioner.caption([big, small])
    pixels = [int(t.prod()) * 14 * 14 for t in seen[0]]  # patches of 14 px
    assert all(MIN_PIXELS * 0.9 <= p <= MAX_PIXELS for p in pixels), pixels  # a large photo is bounded, a small one raised
    # A random model rarely emits its end token within 3 tokens: exactly those rows are flagged.
    out = generate(**captioner.processor(text=[captioner.processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": captioner.prompt}]}], add_generation_prompt=True, tokenize=False)],
        images=[Image.fromarray(small)], return_tensors="pt", size=captioner.size), max_new_tokens=3, do_sample=False)  # fmt: skip
    ended = any(int(t) in captioner.eos_ids for t in out[0, -3:])
    assert texts[1].truncated == (not ended) and isinstance(texts[1], str)


def test_qwen2_vl_refuses_fp16_and_checks_pixel_bounds(tiny_qwen2_vl):
    import torch

    from hoiforge.models.device import bf16_or_fp32

    with pytest.raises(BackendUnavailable, match="gibberish"):
        caption_stage(captioner={"backend": "qwen2-vl", "options": {"model": str(tiny_qwen2_vl), "dtype": "fp16"}}).preflight()
    with pytest.raises(BackendUnavailable, match="min_pixels"):
        qwen = {"model": str(tiny_qwen2_vl), "min_pixels": 10, "max_pixels": 5}
        caption_stage(captioner={"backend": "qwen2-vl", "options": qwen}).preflight()
    assert bf16_or_fp32("cpu") == (torch.device("cpu"), torch.float32)
    assert bf16_or_fp32("cpu", "bf16")[1] == torch.bfloat16  # asked for explicitly
    with pytest.raises(BackendUnavailable, match="gibberish"):
        bf16_or_fp32("cpu", "fp16", "Qwen2-VL")


def test_hit_token_limit_per_row():
    import torch

    from hoiforge.models.vlm_caption import hit_token_limit

    rows = torch.tensor([[5, 6, 7], [5, 2, 0], [5, 6, 2]])  # eos id 2
    assert hit_token_limit(rows, {2}, 3) == [True, False, False]
    assert hit_token_limit(rows, {2}, 4) == [False] * 3  # generation stopped early: all rows finished
    assert hit_token_limit(rows, {2}, 3, forced_eos=True) == [True, False, True]  # a forced end token at the limit


@pytest.fixture(scope="module")
def tiny_marian(tmp_path_factory) -> Path:
    pytest.importorskip("sentencepiece", reason="MarianTokenizer needs sentencepiece (the models extra)")
    from tests.tiny_marian import write_tiny_marian

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MarianTokenizer recommends sacremoses
        return write_tiny_marian(tmp_path_factory.mktemp("marian"))


class ChineseCaptioner:
    """A VLM prompted in Chinese (fixed answers), to exercise the stage's translation wiring."""

    name, prompt, model_id = "qwen2-vl", "详细描述这张图片", "fake"

    def caption(self, images, annotations):
        from hoiforge.models.vlm_caption import GeneratedText

        answers = ["一个女人拿着黑色头盔。桌子上有一个杯子。", "a cup on a saucer.", "男人穿着红色的鞋子，在篮球场上打球。"]
        return [GeneratedText(answers[i % 3], truncated=i == 2) for i in range(len(images))]


def test_caption_stage_translates_chinese_captions_and_records_flags(tiny_qwen2_vl, tiny_marian):
    from hoiforge.models.translate import MarianTranslator

    options = {"model": str(tiny_qwen2_vl), "device": "cpu", **SMALL}
    translate = {"model": str(tiny_marian), "max_new_tokens": 6, "num_beams": 1, "device": "cpu"}
    stage = caption_stage(captioner={"backend": "qwen2-vl", "options": options}, translator={"backend": "marian", "options": translate})
    stage.preflight()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stage.setup()
    stage.ready = True
    stage.backends["captioner"] = ChineseCaptioner()  # the real translator, a captioner that answers in Chinese
    names = ["astronaut.png", "coffee.png", "basketball1.png"]
    out = run_stage(stage, [decoded(DATA / n, i) for i, n in enumerate(names)])
    translator = stage.backends["translator"]
    assert isinstance(translator, MarianTranslator)
    sources = ChineseCaptioner().caption([None] * 3, None)
    for s, source in zip(out, sources, strict=True):
        cap = s.ann["caption"]
        assert cap["source_text"] == source and cap["translation_model"] == str(tiny_marian)
        assert cap["text"] == translator.translate([source])[0].text  # row i translates caption i
        assert s.members["txt"] == cap["text"].encode("utf-8")
        assert s.metrics["caption_truncated"] == cap["truncated"] == source.truncated
        assert s.metrics["translation_truncated"] == cap["translation_truncated"]
    astronaut, coffee, basketball = (s.ann["caption"] for s in out)
    assert astronaut["translation_skipped"] is None and astronaut["text"] != astronaut["source_text"]
    assert coffee["translation_skipped"] == "source_language" and coffee["text"] == "a cup on a saucer."  # English kept
    assert basketball["truncated"] and not astronaut["truncated"]
    stage.teardown()


def test_old_translate_key_still_selects_marian(tiny_marian):
    from hoiforge.stages.base import RecipeDeprecation

    with pytest.warns(RecipeDeprecation, match="translate"):
        params = Caption.Params(stage="caption", backend="qwen2-vl", translate={"model": str(tiny_marian)})
    assert params.translator.backend == "marian" and params.translator.options["model"] == str(tiny_marian)
