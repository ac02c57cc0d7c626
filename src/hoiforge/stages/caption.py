"""caption: a text description per image (HoIHuman: QwenVL, the paper's prompt, English).

Writes ``ann["caption"] = {text, backend, prompt, model}`` (plus ``source_text`` and
``translation_model`` when translated), the shard member ``<id>.txt`` (utf-8), and metric
``caption_words``. Slots: ``captioner`` (task ``captioner``) and the optional ``translator``
(task ``translator``, a seq2seq model from a local path or the HF cache). Captioner backends:

- ``template`` (embedded default): a deterministic sentence from the annotations already on the
  sample (persons, pose cues, products and colours, background colour); see models/template_caption.py.
- ``qwen2-vl`` (paper-grade): Qwen2-VL / Qwen2.5-VL from local weights, batched generation.
  options: ``model`` (local dir or cached hub id), ``prompt``, ``max_new_tokens``, ``device``, ``dtype``,
  ``min_pixels``, ``max_pixels``, ``generate_kwargs``.

A VLM that returns an empty caption drops the sample (a training pair needs its text).
TODO: a vLLM backend through ray.data.llm for large runs (thousands of captions per GPU-hour).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import model_validator

from hoiforge.stages.base import Sample, Slot, SlotConfig, Stage, StageParams, slot


class CaptionParams(StageParams):
    captioner: Annotated[SlotConfig, Slot("captioner")] = slot("template")
    translator: Annotated[SlotConfig | None, Slot("translator")] = slot(None)

    @model_validator(mode="before")
    @classmethod
    def _migrate_translate(cls, data: Any) -> Any:
        # Before backend slots: ``translate: {model: ...}`` and stage-level prompt/max_new_tokens.
        if isinstance(data, dict) and ("translate" in data or "prompt" in data or "max_new_tokens" in data):
            import warnings

            from hoiforge.stages.base import RecipeDeprecation

            data = dict(data)
            moved = []
            if "translate" in data:
                data["translator"] = {"backend": "marian", "options": data.pop("translate") or {}}
                moved.append("translate: -> translator: {backend: marian, options: ...}")
            for key in ("prompt", "max_new_tokens"):
                if key in data:
                    cfg = data.get("captioner", data.get("backend", "template"))
                    cfg = {"backend": cfg} if isinstance(cfg, str) else dict(cfg)
                    data.pop("backend", None)
                    if cfg["backend"] != "template":
                        cfg["options"] = {**cfg.get("options", {}), key: data[key]}
                    data.pop(key)
                    data["captioner"] = cfg
                    moved.append(f"{key}: -> captioner: {{options: {{{key}: ...}}}}")
            warnings.warn(
                f"stage 'caption': old recipe form ({'; '.join(moved)}); the old keys are accepted until hoiforge 0.3",
                RecipeDeprecation,
                stacklevel=2,
            )
        return data

    @model_validator(mode="after")
    def _english_template(self) -> CaptionParams:
        if self.captioner.backend == "template" and self.translator is not None:
            raise ValueError("the template captioner writes English: remove the translator")
        return self


class Caption(Stage):
    name = "caption"
    Params = CaptionParams
    writes = ("caption", "txt")
    default_batch_size = 8

    def process(self, samples: list[Sample]) -> None:
        captioner, translator = self.backends["captioner"], self.backends.get("translator")
        # ``input_size``: the longer side the captioner needs; a JPEG is decoded reduced to it.
        size = getattr(captioner, "input_size", None)
        texts = captioner.caption([s.rgb(size) for s in samples], [s.ann for s in samples])
        docs = [{"text": t, "backend": captioner.name, "prompt": captioner.prompt, "model": captioner.model_id} for t in texts]
        if translator is not None:
            for doc, english in zip(docs, translator.translate(texts), strict=True):
                doc.update(source_text=doc["text"], text=english, translation_model=translator.model_id)
        for s, doc in zip(samples, docs, strict=True):
            s.ann["caption"] = doc
            s.members["txt"] = doc["text"].encode("utf-8")
            s.metrics["caption_words"] = len(doc["text"].split())
            if not doc["text"]:
                self.drop(s, "empty", f"{captioner.name} returned an empty caption")
