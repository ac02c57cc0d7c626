"""caption: a text description per image (HoIHuman: QwenVL, the paper's prompt, English).

Writes ``ann["caption"] = {text, backend, prompt, model}`` (plus ``source_text`` and
``translation_model`` when translated), the shard member ``<id>.txt`` (utf-8), and metric
``caption_words``. Backends:

- ``template`` (embedded default): a deterministic sentence from the annotations already on the
  sample (persons, pose cues, products and colours, background colour); see models/template_caption.py.
- ``qwen2-vl`` (paper-grade): Qwen2-VL / Qwen2.5-VL from local weights, batched generation.
  options: ``model`` (local dir or cached hub id), ``device``, ``dtype``, ``min_pixels``, ``max_pixels``,
  ``generate_kwargs``. ``translate: {model: ...}`` adds a seq2seq translation step.

A VLM that returns an empty caption drops the sample (a training pair needs its text).
TODO: a vLLM backend through ray.data.llm for large runs (thousands of captions per GPU-hour).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hoiforge.models.vlm_caption import PAPER_PROMPT
from hoiforge.stages.base import Sample, Stage, StageParams


class TranslateParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str
    max_new_tokens: int = Field(512, ge=1)
    device: str | None = None  # default: cuda when present
    dtype: str | None = None  # default: fp16 on cuda, fp32 on cpu


class CaptionParams(StageParams):
    backend: Literal["template", "qwen2-vl"] = "template"
    prompt: str = PAPER_PROMPT
    max_new_tokens: int = Field(256, ge=1, le=8192)
    options: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of the VLM backend")
    translate: TranslateParams | None = None

    @model_validator(mode="after")
    def _vlm_only(self) -> CaptionParams:
        if self.backend == "template" and (self.translate or self.options):
            raise ValueError("the template backend takes no options and writes English: remove options/translate")
        return self


class Caption(Stage):
    name = "caption"
    Params = CaptionParams
    members = ("txt",)
    default_batch_size = 8

    @property
    def uses_model(self) -> bool:  # type: ignore[override]
        return self.params.backend != "template"

    def preflight(self) -> None:
        if self.params.backend == "qwen2-vl":
            from hoiforge.models.vlm_caption import QwenVLCaptioner, Translator

            QwenVLCaptioner.check(**self.params.options)
            if self.params.translate:
                Translator.check(model=self.params.translate.model)

    def setup(self) -> None:
        p = self.params
        self.captioner = self.translator = None
        if p.backend == "qwen2-vl":
            from hoiforge.models.vlm_caption import QwenVLCaptioner, Translator

            self.captioner = QwenVLCaptioner(prompt=p.prompt, max_new_tokens=p.max_new_tokens, **p.options)
            if p.translate:
                self.translator = Translator(**p.translate.model_dump())

    def process(self, samples: list[Sample]) -> None:
        p = self.params
        if self.captioner is None:
            from hoiforge.models.template_caption import compose_caption

            docs = [{"text": compose_caption(s.ann, s.rgb()), "backend": "template", "prompt": None, "model": None} for s in samples]
        else:
            texts = self.captioner.caption([s.rgb() for s in samples])
            docs = [{"text": t, "backend": p.backend, "prompt": p.prompt, "model": self.captioner.model_id} for t in texts]
            if self.translator is not None:
                for doc, english in zip(docs, self.translator.translate(texts), strict=True):
                    doc.update(source_text=doc["text"], text=english, translation_model=self.translator.model_id)
        for s, doc in zip(samples, docs, strict=True):
            s.ann["caption"] = doc
            s.members["txt"] = doc["text"].encode("utf-8")
            s.metrics["caption_words"] = len(doc["text"].split())
            if not doc["text"]:
                s.drop(self.name, f"{p.backend} returned an empty caption")
