"""precompute: the frozen encoders' outputs VirtualModel trains on, computed once at build time.

"The VAE, the text encoder and DINOv2 are frozen": running them in every training step costs
more than the UNet's backward on a big run, so the build stores what they produce and the
loader reads it (datasets/precomputed.py holds the shared geometry):

- slot ``vae`` (task ``vae-encoder``) -> ``<id>.latent.npy``: float16 [4, H/8, W/8], the VAE latent
  x0 of the image resized to a 512 short side;
- slot ``text_encoder`` (task ``text-encoder``) -> ``<id>.text.npy``: float16 [n_chunks * 77, hidden],
  the caption's CLIP hidden states in 77-token chunks;
- slot ``image_encoder`` (task ``image-encoder``) -> ``<id>.dino.npy``: float16 [n_products, tokens,
  hidden], DINOv2's penultimate hidden states of each close view (``<id>.views.jpg``).

Set a slot to ``null`` to skip its member. ``ann["precompute"]`` records the models and
settings (``vae``, ``scaling_factor``, ``text_encoder``, ``dino``, ``dino_layer``, ``resolution``),
so the loader (datasets/vm_sample.py) uses the members only when they match its own models. Runs last (after
cleanup changed pixels and captions exist), as actors with a GPU share on a cluster.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, model_validator

from hoiforge.datasets.precomputed import encode_array
from hoiforge.datasets.views import decode_strip
from hoiforge.stages.base import MetricSpec, Sample, Slot, SlotConfig, Stage, StageParams, slot


class PrecomputeParams(StageParams):
    vae: Annotated[SlotConfig | None, Slot("vae-encoder")] = slot("sd-vae")
    text_encoder: Annotated[SlotConfig | None, Slot("text-encoder")] = slot("clip-text")
    image_encoder: Annotated[SlotConfig | None, Slot("image-encoder")] = slot("dinov2")
    short_side: int = Field(512, ge=64, description="the training resolution the latents are computed at (short side)")

    @model_validator(mode="after")
    def _something_to_do(self) -> PrecomputeParams:
        if self.vae is None and self.text_encoder is None and self.image_encoder is None:
            raise ValueError("every slot is null: nothing to precompute (remove the stage)")
        return self


class Precompute(Stage):
    name = "precompute"
    Params = PrecomputeParams
    writes = ("latent.npy", "text.npy", "dino.npy")
    metrics = (MetricSpec("latent_hw", "category", "latent cells", "latent size (h x w)"),)
    annotations = {
        "precompute": {
            "resolution": 0,
            "vae": "",
            "scaling_factor": 0.0,
            "text_encoder": "",
            "dino": "",
            "dino_layer": 0,
        }
    }
    default_batch_size = 8

    def requires(self) -> tuple[str, ...]:
        p = self.params
        return (("txt",) if p.text_encoder else ()) + (("views.jpg",) if p.image_encoder else ())

    def provides(self) -> tuple[str, ...]:
        p = self.params
        return (("latent.npy",) if p.vae else ()) + (("text.npy",) if p.text_encoder else ()) + (("dino.npy",) if p.image_encoder else ())

    def setup(self) -> None:
        p = self.params
        if p.vae is not None and "short_side" not in p.vae.options:
            # One resolution for the stage and its VAE: the loader reads it from ann["precompute"].
            p = p.model_copy(update={"vae": SlotConfig(backend=p.vae.backend, options={**p.vae.options, "short_side": p.short_side})})
            self.params = p
        super().setup()

    def process(self, samples: list[Sample]) -> None:
        record: dict[str, Any] = {"resolution": self.params.short_side}
        vae, text, image = (self.backends.get(k) for k in ("vae", "text_encoder", "image_encoder"))
        if vae is not None:
            for s, z in zip(samples, vae.encode([s.rgb() for s in samples]), strict=True):
                s.members["latent.npy"] = encode_array(z)
                s.metrics["latent_hw"] = f"{z.shape[1]}x{z.shape[2]}"
            record.update(vae=vae.model_id, scaling_factor=vae.scaling_factor)
        if text is not None:
            captions = [(s.members.get("txt") or b"").decode("utf-8") for s in samples]
            for s, h in zip(samples, text.encode(captions), strict=True):
                s.members["text.npy"] = encode_array(h)
            record.update(text_encoder=text.model_id)
        if image is not None:
            tiles = [
                decode_strip(s.members["views.jpg"], (s.ann.get("views") or {}).get("count")) if s.members.get("views.jpg") else []
                for s in samples
            ]
            features = image.encode([t for per in tiles for t in per])
            start = 0
            for s, per in zip(samples, tiles, strict=True):
                s.members["dino.npy"] = encode_array(features[start : start + len(per)])
                start += len(per)
            record.update(dino=image.model_id, dino_layer=image.layer)
        for s in samples:
            s.ann["precompute"] = record
