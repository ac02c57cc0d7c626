"""caption stage: template captions from earlier stages' annotations on the fixture photos, and the
Qwen2-VL backend with a tiny randomly initialised Qwen2-VL (real architecture, processor, generate)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hoiforge.errors import BackendUnavailable
from hoiforge.models.vlm_caption import PAPER_PROMPT
from hoiforge.pipeline.adapter import run_stage
from hoiforge.stages.caption import Caption
from hoiforge.stages.person import Person
from hoiforge.stages.testing import decoded

DATA = Path(__file__).parent / "data"


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
        Caption.Params(stage="caption", options={"model": "x"})


# -- Qwen2-VL (paper-grade, tiny random model) --------------------------------------------------


@pytest.fixture(scope="module")
def tiny_qwen2_vl(tmp_path_factory) -> Path:
    """A Qwen2-VL checkpoint directory: tiny random weights of the real architecture, a byte-level BPE
    tokenizer trained locally with Qwen's special tokens, the Qwen2-VL image processor, a chat template."""
    from hoiforge.models.random_qwen2_vl import write_random_qwen2_vl

    return write_random_qwen2_vl(tmp_path_factory.mktemp("qwen2vl"), size="tiny")


def test_qwen2_vl_captions_in_batch_order_through_processor_and_generate(tiny_qwen2_vl):
    stage = caption_stage(backend="qwen2-vl", max_new_tokens=12, options={"model": str(tiny_qwen2_vl), "device": "cpu"})
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
        caption_stage(backend="qwen2-vl").preflight()
    with pytest.raises(BackendUnavailable, match="Hugging Face cache"):
        caption_stage(backend="qwen2-vl", options={"model": "Qwen/Qwen2-VL-7B-Instruct"}).preflight()


@pytest.fixture(scope="module")
def tiny_translator(tmp_path_factory) -> Path:
    """A tiny random BART (a seq2seq translation architecture) with a byte-level BPE tokenizer built here."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import BartConfig, BartForConditionalGeneration, PreTrainedTokenizerFast

    root = tmp_path_factory.mktemp("translator")
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(
        [PAPER_PROMPT],
        trainers.BpeTrainer(vocab_size=300, special_tokens=["<pad>", "<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()),
    )
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<pad>", bos_token="<s>", eos_token="</s>")
    tokenizer.save_pretrained(root)
    torch.manual_seed(0)
    config = BartConfig(
        vocab_size=len(tokenizer),
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=1024,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=2,
        forced_bos_token_id=None,
        forced_eos_token_id=None,
    )
    BartForConditionalGeneration(config).save_pretrained(root)
    return root


def test_qwen2_vl_with_translation_step_keeps_source_and_order(tiny_qwen2_vl, tiny_translator):
    from hoiforge.models.vlm_caption import Translator

    options = {"model": str(tiny_qwen2_vl), "device": "cpu"}
    translate = {"model": str(tiny_translator), "max_new_tokens": 8, "device": "cpu"}
    stage = caption_stage(backend="qwen2-vl", max_new_tokens=8, options=options, translate=translate)
    stage.preflight()
    names = ["astronaut.png", "coffee.png", "basketball1.png"]
    out = run_stage(stage, [decoded(DATA / n, i) for i, n in enumerate(names)])
    plain = run_stage(
        caption_stage(backend="qwen2-vl", max_new_tokens=8, options=options), [decoded(DATA / n, i) for i, n in enumerate(names)]
    )
    sources = [s.ann["caption"]["text"] for s in plain]
    translator = Translator(**translate)
    for s, source in zip(out, sources):
        cap = s.ann["caption"]
        assert cap["source_text"] == source and cap["translation_model"] == str(tiny_translator)
        assert cap["text"] == translator.translate([source])[0]  # row i translates caption i
        assert s.members["txt"] == cap["text"].encode("utf-8")
