"""GroundingDINO open-vocabulary detection through transformers (the HoIHuman recipe's detector).

Weights: a local directory or a Hugging Face cache entry holding what
``GroundingDinoForObjectDetection.save_pretrained`` + ``AutoProcessor.save_pretrained`` write
(config.json, model.safetensors, preprocessor/processor config, tokenizer files), e.g. a
snapshot of ``IDEA-Research/grounding-dino-base``. Nothing is downloaded: loading runs with
``local_files_only=True``.

Boxes are kept at ``box_threshold`` (max token probability); the label is the prompt phrase that
holds the query's best token, so labels always are phrases of the recipe's prompt; ``phrase``
keeps the tokens above ``text_threshold`` as GroundingDINO's own post-processing reads them.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np

from hoiforge.models.base import require
from hoiforge.models.device import Dtype, device_dtype
from hoiforge.models.registry import Weights
from hoiforge.models.tasks import (
    Product,
    prompt_phrases,
)
from hoiforge.models.weights.hf_local import resolve_model_dir

INSTALL = "pip install 'transformers>=4.40' torch"


def detection_prompt(phrases: list[str]) -> str:
    """GroundingDINO's text format: lower case phrases, each ended by a period."""
    return " ".join(f"{p}." for p in phrases)


class GroundingDinoDetector:
    package = "transformers"

    def __init__(
        self,
        model: Annotated[str | None, Weights("grounding-dino-base")] = None,
        box_threshold: float = 0.35,
        text_threshold: float = 0.25,
        device: str | None = None,
        dtype: Dtype | None = None,
    ):
        require("transformers", INSTALL)
        import torch
        from transformers import AutoProcessor, GroundingDinoForObjectDetection

        path = resolve_model_dir(model, "products detector grounding-dino")
        self.device, self.dtype = device_dtype(device, dtype)
        self.processor = AutoProcessor.from_pretrained(path, local_files_only=True)
        self.model = GroundingDinoForObjectDetection.from_pretrained(path, local_files_only=True, dtype=self.dtype)
        self.model.to(self.device).eval()
        self.box_threshold, self.text_threshold = box_threshold, text_threshold
        self._torch = torch

    @classmethod
    def check(cls, model: str = "IDEA-Research/grounding-dino-base", **options) -> None:
        require("transformers", INSTALL)
        require("torch", INSTALL)
        resolve_model_dir(model, "products detector grounding-dino")

    def detect(self, images: list[np.ndarray], prompt: str) -> list[list[Product]]:
        torch = self._torch
        phrases = prompt_phrases(prompt)
        if not phrases:
            raise ValueError("grounding-dino needs a non-empty prompt")
        if not images:
            return []
        text = detection_prompt(phrases)
        # One forward per group of images the processor resizes to the same size: padding a
        # smaller image up to a larger one changes what the backbone's windows and the
        # deformable attention see, so a padded batch would give an image other products than it
        # gets alone (tests/test_batch_equals_single.py). Photos of one source mostly share a size.
        per_image = [self.processor(images=[im], text=[text], return_tensors="pt", padding=True) for im in images]
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, enc in enumerate(per_image):
            groups.setdefault(tuple(enc["pixel_values"].shape[-2:]), []).append(i)
        logits: list = [None] * len(images)
        pred_boxes: list = [None] * len(images)
        for indices in groups.values():
            inputs = {k: torch.cat([per_image[i][k] for i in indices]) for k in per_image[indices[0]]}
            inputs = {k: (v.to(self.device, self.dtype) if v.is_floating_point() else v.to(self.device)) for k, v in inputs.items()}
            with torch.inference_mode():
                out = self.model(**inputs)
            for k, i in enumerate(indices):
                logits[i], pred_boxes[i] = out.logits[k].float().cpu(), out.pred_boxes[k].float().cpu()
        ids = per_image[0]["input_ids"][0].cpu()
        # queries x max_text_len per image; only the prompt's own tokens count (the rest is padding).
        probs = torch.stack(logits).sigmoid()[..., : ids.numel()]
        boxes = torch.stack(pred_boxes)  # B x queries x (cx, cy, w, h), relative to the image
        phrase_of_token = self._phrase_of_token(ids)
        results = []
        for b, rgb in enumerate(images):
            h, w = rgb.shape[:2]
            scores, best = probs[b].max(-1)
            found = []
            for q in torch.nonzero(scores >= self.box_threshold).flatten().tolist():
                k = phrase_of_token[int(best[q])]
                if k < 0:
                    continue  # best token is [CLS]/[SEP]/period: no phrase
                cx, cy, bw, bh = boxes[b, q].tolist()
                box = (
                    max(0.0, (cx - bw / 2) * w),
                    max(0.0, (cy - bh / 2) * h),
                    min(w, (cx + bw / 2) * w),
                    min(h, (cy + bh / 2) * h),
                )
                if box[2] <= box[0] or box[3] <= box[1]:
                    continue
                read = self.processor.tokenizer.decode(ids[probs[b, q] >= self.text_threshold], skip_special_tokens=True)
                found.append(
                    Product(
                        box,
                        float(scores[q]),
                        phrases[k],
                        read.replace(" .", "").strip(" ."),
                        source="grounding-dino",
                    )
                )
            found.sort(key=lambda p: -p.score)
            results.append(found)
        return results

    def _phrase_of_token(self, ids) -> list[int]:
        """Index of the prompt phrase each token belongs to; -1 for special tokens and periods."""
        tok = self.processor.tokenizer
        period = tok.convert_tokens_to_ids(".")
        specials = set(tok.all_special_ids)
        owner, k = [], 0
        for t in ids.tolist():
            if t == period:
                owner.append(-1)
                k += 1
            elif t in specials:
                owner.append(-1)
            else:
                owner.append(k)
        return owner
