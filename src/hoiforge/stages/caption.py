"""caption: a text description per image (HoIHuman: QwenVL, the paper's prompt, English).

Writes ``ann["caption"] = {text, backend, prompt, model, truncated}`` (plus ``source_text``,
``translation_model``, ``translation_truncated`` and ``translation_skipped`` when a translator
ran), the shard member ``<id>.txt`` (utf-8), and metrics ``caption_words`` and
``caption_truncated`` (manifest column ``m.caption_truncated``: the VLM used all
``max_new_tokens``, so its text ends mid-sentence; ``m.translation_truncated`` likewise).
Slots: ``captioner`` (task ``captioner``) and the optional ``translator`` (task ``translator``,
default none; ``marian``: an opus-mt model from a local path or the HF cache, sentence by
sentence, texts without the source script kept as they are; models/translate.py). Captioner backends:

- ``template`` (embedded default): a deterministic sentence from the annotations already on the
  sample (persons, pose cues, products and colours, background colour); see models/template_caption.py.
- ``qwen2-vl`` (paper-grade): Qwen2-VL / Qwen2.5-VL from local weights, batched generation.
  options: ``model`` (local dir or cached hub id), ``prompt``, ``max_new_tokens``, ``device``, ``dtype``
  (default bf16 where supported, else fp32; fp16 refused), ``min_pixels``/``max_pixels`` (default
  448²/672²), ``generate_kwargs``.
- ``vllm`` (at scale): the same model and prompt served by a vLLM engine inside the actor, with
  continuous batching and bounded image tokens (models/vllm_caption.py; ``pip install
  'hoiforge[vllm]'``, CUDA only). Give the stage a large ``resources.batch_size`` (e.g. 256).

A VLM that returns an empty caption drops the sample (a training pair needs its text).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import model_validator

from hoiforge.stages.base import MetricSpec, Sample, Slot, SlotConfig, Stage, StageParams, slot


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
    metrics = (
        MetricSpec("caption_words", "count", "words", "caption length", plot="histogram"),
        MetricSpec("caption_truncated", "flag", title="caption cut at max_new_tokens"),
        MetricSpec("translation_truncated", "flag", title="translation cut at its token limit"),
    )
    annotations = {
        "caption": {
            "text": "",
            "backend": "",
            "prompt": "",
            "model": "",
            "truncated": False,
            # with a translator: the captioner's text and how the translation went
            "source_text": "",
            "translation_model": "",
            "translation_truncated": False,
            "translation_skipped": False,
        }
    }
    default_batch_size = 8

    def process(self, samples: list[Sample]) -> None:
        captioner, translator = self.backends["captioner"], self.backends.get("translator")
        # ``input_size``: the longer side the captioner needs; a JPEG is decoded reduced to it.
        size = getattr(captioner, "input_size", None)
        texts = captioner.caption([s.rgb(size) for s in samples], [s.ann for s in samples])
        docs = [
            {
                "text": str(t),
                "backend": captioner.name,
                "prompt": captioner.prompt,
                "model": captioner.model_id,
                "truncated": bool(getattr(t, "truncated", False)),
            }
            for t in texts
        ]
        if translator is not None:
            for doc, tr in zip(docs, translator.translate([d["text"] for d in docs]), strict=True):
                doc.update(source_text=doc["text"], text=tr.text, translation_model=translator.model_id)
                doc.update(translation_truncated=tr.truncated, translation_skipped=tr.skipped)
        for s, doc in zip(samples, docs, strict=True):
            s.ann["caption"] = doc
            s.members["txt"] = doc["text"].encode("utf-8")
            s.metrics["caption_words"] = len(doc["text"].split())
            s.metrics["caption_truncated"] = doc["truncated"]
            if translator is not None:
                s.metrics["translation_truncated"] = doc["translation_truncated"]
            if not doc["text"]:
                self.drop(s, "empty", f"{captioner.name} returned an empty caption")
