"""One input on its way through the stages: its bytes, status, annotations, metrics and members. Pure Python."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hoiforge.datasets.images import decode_rgb, image_size

OK, DROPPED, FAILED = "ok", "dropped", "failed"


@dataclass
class Sample:
    """One input on its way through the stages."""

    key: str  # input key: uri, or "uri::member" for a member of a tar
    index: int  # position in the run's saved input listing: the tie-breaker for duplicates
    uri: str
    member: str | None
    image: bytes | None
    status: str = OK
    stage: str | None = None
    reason: str | None = None  # the human sentence
    reason_code: str | None = None  # stable "<stage>.<code>", what stats and the report group by
    reason_params: dict[str, Any] = field(default_factory=dict)  # the numbers behind the sentence
    ann: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    members: dict[str, bytes | None] = field(default_factory=dict)
    _rgb: np.ndarray | None = field(default=None, repr=False)
    _reduced: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def live(self) -> bool:
        return self.status == OK

    def rgb(self, size: int | None = None) -> np.ndarray:
        """The image as RGB uint8 HxWx3, decoded once and kept for every later stage of the same
        worker chain (pipeline/adapter.py ChainAdapter).

        ``size``: the longer side the caller needs. The bytes are then decoded at a reduced scale
        where the format allows it (JPEG DCT scaling by 1/2, 1/4 or 1/8: a fraction of a full
        decode's time and memory); the result's longer side is at least ``min(size, full)``, never
        upscaled. Full pixels already decoded are returned as they are: a resize would cost more
        than it saves. A stage that writes coordinates maps them back with ``to_full``.
        """
        if self._rgb is not None:
            return self._rgb
        assert self.image is not None, f"{self.key}: no image bytes (status {self.status})"
        if size is None:
            self._rgb = decode_rgb(self.image)
            return self._rgb
        if size not in self._reduced:
            pixels = decode_rgb(self.image, size)
            if pixels.shape[:2] == self.full_size()[::-1]:
                self._rgb = pixels  # nothing to reduce: this is the full decode, keep it as such
                return pixels
            self._reduced[size] = pixels
        return self._reduced[size]

    def full_size(self) -> tuple[int, int]:
        """(width, height) of the full image: the decode stage's record, else the header."""
        image = self.ann.get("image") or {}
        if "width" in image and "height" in image:
            return int(image["width"]), int(image["height"])
        if self._rgb is not None:
            return self._rgb.shape[1], self._rgb.shape[0]
        return image_size(self.image)

    def to_full(self, pixels: np.ndarray) -> tuple[float, float]:
        """(sx, sy): multiply x and y measured on ``pixels`` (a ``rgb(size)`` result) by these to
        get full-resolution coordinates; (1.0, 1.0) for the full image."""
        w, h = self.full_size()
        return w / pixels.shape[1], h / pixels.shape[0]

    def set_image(self, data: bytes, rgb: np.ndarray | None = None) -> None:
        """Replace the image bytes (cleanup, re-encode) and the cached pixels with them."""
        self.image, self._rgb = data, rgb
        self._reduced = {}

    def drop(self, stage: str, code: str, reason: str, **params: Any) -> None:
        self._end(DROPPED, stage, code, reason, params)

    def fail(self, stage: str, code: str, reason: str, **params: Any) -> None:
        self._end(FAILED, stage, code, reason, params)

    def _end(self, status: str, stage: str, code: str, reason: str, params: dict[str, Any]) -> None:
        self.status, self.stage, self.reason = status, stage, reason
        self.reason_code = code if "." in code else f"{stage}.{code}"
        self.reason_params = params
        self.image, self._rgb, self._reduced = None, None, {}  # the runner frees dropped bytes
