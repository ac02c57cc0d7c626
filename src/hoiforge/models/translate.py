"""Caption translation (HoIHuman translated QwenVL's captions with CSANMT): a Marian/opus-mt model.

``MarianTranslator`` runs transformers' ``MarianMTModel`` + ``MarianTokenizer`` (sentencepiece)
from a local directory or the Hugging Face cache (models/weights/hf_local.py), default
``Helsinki-NLP/opus-mt-zh-en`` (weights entry ``opus-mt-zh-en``). Never downloads.

Why sentence by sentence: opus-mt models were trained on sentence pairs and accept at most 512
tokens; a detailed caption of several sentences fed whole is truncated by the tokenizer, or
translated into one short sentence that drops the rest. So each text is split into sentences
(CJK and Latin terminators), over-long sentences again at commas and then by length, the pieces of
all texts are translated as one batch, and each text's pieces are joined back in order.

Why check the source language: a zh->en model given English (a VLM that already answered in
English) paraphrases or garbles it. A text without a single character of the source script is
returned unchanged and flagged ``skipped`` (reason ``source_language``); the stage records it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated

from hoiforge.models.base import require
from hoiforge.models.device import Dtype, device_dtype
from hoiforge.models.registry import Weights
from hoiforge.models.vlm_caption import eos_token_ids, hit_token_limit
from hoiforge.models.weights.hf_local import resolve_model_dir

HINT = "pip install 'hoiforge[models]' (transformers, sentencepiece)"

# Characters that identify a source language's script; languages not listed are not checked.
SCRIPTS = {
    "zh": r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]",
    "ja": r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff]",
    "ko": r"[\uac00-\ud7af\u1100-\u11ff]",
    "ru": r"[\u0400-\u04ff]",
    "ar": r"[\u0600-\u06ff]",
}
# A sentence ends after a CJK terminator, or after a Latin one followed by a space; newlines too.
_SENTENCE_END = re.compile(r"(?<=[。！？；!?;])\s*|(?<=[.])\s+|\s*\n+\s*")
_CLAUSE_END = re.compile(r"(?<=[，、,：:])\s*")


@dataclass
class Translation:
    text: str  # the translation, or the source text unchanged when skipped
    source: str
    skipped: str | None = None  # why the text was not translated (None: translated)
    truncated: bool = False  # some sentence used all max_new_tokens (its translation is cut off)
    sentences: int = 0  # how many pieces the model translated


def has_script(text: str, lang: str) -> bool | None:
    """Whether ``text`` holds a character of ``lang``'s script; None when the language is not checked."""
    pattern = SCRIPTS.get(lang)
    return None if pattern is None else re.search(pattern, text) is not None


def split_sentences(text: str, max_chars: int) -> list[str]:
    """``text`` cut into sentences, each at most ``max_chars`` long (at clause marks, then hard cuts)."""
    pieces = []
    for sentence in filter(None, (p.strip() for p in _SENTENCE_END.split(text))):
        if len(sentence) <= max_chars:
            pieces.append(sentence)
            continue
        current = ""
        for clause in filter(None, _CLAUSE_END.split(sentence)):
            if current and len(current) + len(clause) > max_chars:
                pieces.append(current)
                current = ""
            current += clause
            while len(current) > max_chars:  # one clause longer than the limit: cut it by length
                pieces.append(current[:max_chars])
                current = current[max_chars:]
        if current.strip():
            pieces.append(current.strip())
    return pieces


class MarianTranslator:
    """translate(texts) -> one Translation per text, in order; ``translated`` (= .text of each) for plain strings."""

    name = "marian"
    package = "transformers"

    def __init__(
        self,
        model: Annotated[str | None, Weights("opus-mt-zh-en")] = None,
        source_lang: str = "zh",
        target_lang: str = "en",
        max_sentence_chars: int = 200,
        max_new_tokens: int = 256,
        num_beams: int = 4,
        batch_size: int = 32,
        device: str | None = None,
        dtype: Dtype | None = None,
    ):
        self.check(model=model)
        from transformers import MarianMTModel, MarianTokenizer

        model_dir = resolve_model_dir(model, "caption translator marian")
        self.device, dtype_ = device_dtype(device, dtype)
        self.tokenizer = MarianTokenizer.from_pretrained(model_dir)
        self.model = MarianMTModel.from_pretrained(model_dir, dtype=dtype_).to(self.device).eval()
        self.source_lang, self.target_lang = source_lang, target_lang
        self.max_sentence_chars, self.max_new_tokens = max_sentence_chars, max_new_tokens
        self.num_beams, self.batch_size = num_beams, batch_size
        self.eos_ids = eos_token_ids(self.model, self.tokenizer)
        self.forced_eos = getattr(self.model.generation_config, "forced_eos_token_id", None) is not None
        self.model_id = str(model)

    @classmethod
    def check(cls, model: str | None = None, **_) -> None:
        require("torch", HINT)
        require("transformers", HINT)
        require("sentencepiece", HINT)  # MarianTokenizer reads source.spm / target.spm with it
        resolve_model_dir(model, "caption translator marian")

    def translate(self, texts: list[str]) -> list[Translation]:
        results = [Translation(text=t, source=t) for t in texts]
        jobs: list[tuple[int, str]] = []  # (text index, sentence)
        for i, text in enumerate(texts):
            if not text.strip():
                results[i].skipped = "empty"
            elif has_script(text, self.source_lang) is False:
                results[i].skipped = "source_language"
            else:
                jobs.extend((i, s) for s in split_sentences(text, self.max_sentence_chars))
        outputs, cut = self._generate([s for _, s in jobs])
        parts: dict[int, list[str]] = {}
        for (i, _), out, c in zip(jobs, outputs, cut, strict=True):
            parts.setdefault(i, []).append(out)
            results[i].truncated |= c
            results[i].sentences += 1
        for i, pieces in parts.items():
            # CJK targets need no space between sentences; Latin ones do.
            results[i].text = ("" if self.target_lang in ("zh", "ja") else " ").join(p for p in pieces if p)
        return results

    def translated(self, texts: list[str]) -> list[str]:
        return [t.text for t in self.translate(texts)]

    def _generate(self, sentences: list[str]) -> tuple[list[str], list[bool]]:
        import torch

        texts, cut = [], []
        for start in range(0, len(sentences), self.batch_size):
            chunk = sentences[start : start + self.batch_size]
            # truncation only guards the model's position limit; split_sentences keeps pieces far below it
            inputs = self.tokenizer(chunk, padding=True, truncation=True, return_tensors="pt").to(self.device)
            with torch.inference_mode():
                out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, num_beams=self.num_beams, do_sample=False)
            new = out[:, 1:]  # the decoder start token
            cut += hit_token_limit(new, self.eos_ids, self.max_new_tokens, self.forced_eos)
            texts += [t.strip() for t in self.tokenizer.batch_decode(out, skip_special_tokens=True)]
        return texts, cut
