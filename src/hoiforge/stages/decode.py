"""decode: every image is validated, made upright and RGB/grey, and described, before any model sees it."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from hoiforge.datasets.contract import ID_LENGTH, SCHEMA, sample_id
from hoiforge.datasets.images import BadImage, normalise, to_rgb
from hoiforge.stages.base import MetricSpec, Sample, Stage, StageParams

# PIL's own default limit (89.5 MP); e-commerce photos are far below it.
DEFAULT_MAX_PIXELS = 89_478_485


class DecodeParams(StageParams):
    max_pixels: int = Field(DEFAULT_MAX_PIXELS, ge=1, description="width*height above this fails (decompression bombs)")
    max_bytes: int = Field(100_000_000, ge=1, description="files larger than this fail unread")
    jpeg_quality: int = Field(95, ge=50, le=100, description="quality when a JPEG must be re-encoded (image_format: source)")
    # Set from the recipe's output section by parse_recipe (not recipe keys of this stage: excluded
    # from dumps, so recipe.json and the resume fingerprint hold them once, under output).
    image_format: str = Field("source", exclude=True)
    image_quality: int = Field(95, exclude=True)


class Decode(Stage):
    name = "decode"
    Params = DecodeParams
    writes = ("image",)
    metrics = (
        MetricSpec("width", "count", "pixels", "image width", plot="histogram", over="all"),
        MetricSpec("height", "count", "pixels", "image height", plot="histogram", over="all"),
        MetricSpec("reencoded", "flag", title="image re-encoded (format, colour mode, EXIF rotation)"),
    )
    default_batch_size = 32

    def setup(self) -> None:
        from PIL import Image

        # PIL's own bomb check agrees with ours, so no decoder path can allocate past the limit.
        Image.MAX_IMAGE_PIXELS = self.params.max_pixels

    def process(self, samples: list[Sample]) -> None:
        for s in samples:
            self.decode_one(s)

    def decode_one(self, s: Sample) -> None:
        data = s.image or b""
        if len(data) > self.params.max_bytes:
            self.fail(
                s,
                "too_large",
                f"file too large: {len(data)} bytes > limit {self.params.max_bytes}",
                bytes=len(data),
                max=self.params.max_bytes,
            )
            return
        source = {"uri": s.uri, "member": s.member, "sha256": s.ann.get("source", {}).get("sha256"), "size": len(data)}
        if s.ann.get("source", {}).get("path"):  # the path under the input folder/tar, which labels are matched by
            source["path"] = s.ann["source"]["path"]
        try:
            p = self.params
            img = normalise(data, p.max_pixels, p.jpeg_quality, p.image_format, p.image_quality)
        except BadImage as e:
            self.fail(s, e.code, str(e))
            return
        sid = source["sha256"][:ID_LENGTH] if source["sha256"] else sample_id(data)
        s.ann.update(
            schema=SCHEMA,
            id=sid,
            source=source,
            image={
                "width": img.width,
                "height": img.height,
                "ext": img.ext,
                "source_format": img.source_format,
                "source_mode": img.source_mode,
                "reencoded": img.reencoded,
                "format": img.ext,
                "phash": img.phash,
            },
        )
        s.metrics.update(width=img.width, height=img.height, reencoded=img.reencoded is not None)
        # Bytes kept as they came: the pixels just decoded are exactly what a later decode of them
        # would give, so the later stages of this worker chain use them instead of decoding again.
        # Re-encoded bytes (a lossy JPEG) decode to other pixels: those stages decode the new bytes.
        s.set_image(img.data, rgb=None if img.pixels is None else np.asarray(to_rgb(img.pixels)))
