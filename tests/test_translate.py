"""Caption translation: sentence splitting, the source-language check, and a Marian round trip on a
tiny random opus-mt-layout model built here (config + a sentencepiece tokenizer trained here)."""

from __future__ import annotations

import warnings

import pytest

from hoiforge.errors import BackendUnavailable
from hoiforge.models.translate import MarianTranslator, has_script, split_sentences
from tests.tiny_marian import write_tiny_marian


@pytest.fixture(scope="module")
def tiny_marian(tmp_path_factory):
    pytest.importorskip("sentencepiece", reason="MarianTokenizer needs sentencepiece (the models extra)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MarianTokenizer recommends sacremoses (not needed for zh->en)
        return write_tiny_marian(tmp_path_factory.mktemp("marian"))


@pytest.fixture(scope="module")
def translator(tiny_marian):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return MarianTranslator(model=str(tiny_marian), device="cpu", max_new_tokens=6, num_beams=1)


def test_split_sentences_at_cjk_and_latin_ends_then_clauses_then_length():
    text = "一个女人拿着黑色头盔。桌子上有一个杯子！ The cup is white. It sits on a table\n背景是灰色的"
    assert split_sentences(text, 100) == [
        "一个女人拿着黑色头盔。",
        "桌子上有一个杯子！",
        "The cup is white.",
        "It sits on a table",
        "背景是灰色的",
    ]
    long = "男人穿着红色的鞋子，在篮球场上打球，旁边有一个篮球架。"
    assert split_sentences(long, 12) == ["男人穿着红色的鞋子，", "在篮球场上打球，", "旁边有一个篮球架。"]
    assert split_sentences("一" * 25, 10) == ["一" * 10, "一" * 10, "一" * 5]  # no mark at all: cut by length
    assert "".join(split_sentences(long, 12)) == long  # nothing lost


def test_source_script_check():
    assert has_script("一个杯子 on a table", "zh") and has_script("a cup", "zh") is False
    assert has_script("a cup", "de") is None  # languages without a script table are not checked


def test_marian_round_trip_sentence_by_sentence_in_order(translator):
    calls = []
    generate = translator.model.generate
    translator.model.generate = lambda **kw: (calls.append(kw["input_ids"].shape[0]), generate(**kw))[1]
    long_caption = "一个女人拿着黑色头盔站在灰色背景前。桌子上有一个杯子和一个碟子。男人穿着红色的鞋子，在篮球场上打球。"
    texts = [long_caption, "a woman holding a black helmet.", "桌子上有一个杯子。", ""]
    try:
        out = translator.translate(texts)
    finally:
        translator.model.generate = generate
    assert calls == [4]  # three sentences of the long caption + one of the short: one batch
    long, english, short, empty = out
    assert long.sentences == 3 and long.skipped is None and long.source == long_caption
    alone = [translator.translate([s])[0].text for s in split_sentences(long_caption, 200)]
    assert long.text == " ".join(alone) and long.text  # every sentence translated, joined in order
    assert short.text == translator.translate(["桌子上有一个杯子。"])[0].text  # batched == alone
    assert english.skipped == "source_language" and english.text == texts[1] and english.sentences == 0
    assert empty.skipped == "empty" and empty.text == ""
    # 6 new tokens from a random model: every sentence runs into the limit (forced end token aside)
    assert long.truncated and short.truncated and not english.truncated
    assert translator.translated(texts[1:3]) == [english.text, short.text]


def test_marian_needs_a_local_model(tmp_path):
    with pytest.raises(BackendUnavailable, match="no model"):
        MarianTranslator.check(model=None)
    with pytest.raises(BackendUnavailable, match="Hugging Face cache"):
        MarianTranslator.check(model="Helsinki-NLP/opus-mt-zh-en")
