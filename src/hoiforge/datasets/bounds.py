"""What one received sample may cost a reader (trainer, eval, validate): bounded member sizes, a
bounded pixel count, finite json numbers.

A shard someone else built is attacker-controlled (docs/security.md): a 100 MB caption makes the
tokenizer ask for gigabytes, a PNG header can claim 10^10 pixels, a json can hold NaN or 1e999.
Readers check a sample against these bounds before decoding it; a sample over one is skipped with
the reason (``SampleRejected``), never the run killed.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from typing import Any

from hoiforge.errors import HoiforgeError

# Pillow's own decompression-bomb threshold, the build's default decode limit (stages/decode.py).
DEFAULT_MAX_PIXELS = 89_478_485


class SampleRejected(HoiforgeError):
    """One sample of a shard is over a bound or malformed; the message is the reason it is skipped."""


@dataclass(frozen=True)
class MemberLimits:
    """Bytes per member by kind, and pixels per image member (ours: 100x what a build writes)."""

    caption_bytes: int = 64 * 1024  # a caption is a few hundred characters; the text encoders read 77-token chunks
    json_bytes: int = 32 * 1024 * 1024  # RLEs and 133 keypoints per person: tens of kB in practice
    other_bytes: int = 512 * 1024 * 1024  # images and .npy arrays (a 4k photo's PNG is ~30 MB)
    max_pixels: int = DEFAULT_MAX_PIXELS

    def bytes_for(self, ext: str) -> int:
        last = ext.rsplit(".", 1)[-1]
        return self.caption_bytes if last == "txt" else self.json_bytes if last == "json" else self.other_bytes


DEFAULT_LIMITS = MemberLimits()


def size_problem(ext: str, size: int, limits: MemberLimits = DEFAULT_LIMITS) -> str | None:
    """Why a member of ``size`` bytes must not be read, else None."""
    limit = limits.bytes_for(ext)
    return f"member .{ext} is {size} bytes, above the reader's limit of {limit}" if size > limit else None


def check_sizes(sample: dict[str, Any], limits: MemberLimits = DEFAULT_LIMITS) -> None:
    """SampleRejected naming the first member of a raw sample (bytes by extension) above its size bound."""
    for ext, value in sample.items():
        if not ext.startswith("__") and isinstance(value, bytes | bytearray):
            problem = size_problem(ext, len(value), limits)
            if problem:
                raise SampleRejected(problem)


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise SampleRejected(f"json holds the non-finite number {text[:20]}")
    return value


def _no_constant(name: str) -> Any:
    raise SampleRejected(f"json holds {name}, which is not JSON")


def load_json(data: bytes | str, limits: MemberLimits = DEFAULT_LIMITS) -> dict[str, Any]:
    """A sample's annotation: a json object of bounded size with finite numbers only; SampleRejected otherwise."""
    if len(data) > limits.json_bytes:
        raise SampleRejected(size_problem("json", len(data), limits))
    try:
        doc = json.loads(data, parse_constant=_no_constant, parse_float=_finite)
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
        raise SampleRejected(f"json does not parse: {str(e)[:120]}") from None
    except RecursionError:
        raise SampleRejected("json nests too deeply") from None
    if not isinstance(doc, dict):
        raise SampleRejected(f"json is a {type(doc).__name__}, not an object")
    return doc


def image_size(data: bytes, what: str, limits: MemberLimits = DEFAULT_LIMITS) -> tuple[int, int]:
    """(width, height) from an image member's header, SampleRejected above ``limits.max_pixels`` (nothing decoded)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            w, h = img.size
    except Image.DecompressionBombError:  # Pillow's own refusal, at twice its warning threshold
        raise SampleRejected(
            f"member .{what} declares more pixels than Pillow opens, above the reader's limit of {limits.max_pixels}"
        ) from None
    except Exception as e:  # noqa: BLE001 - any header Pillow cannot read is a bad member
        raise SampleRejected(f"member .{what} is not a readable image ({type(e).__name__})") from None
    if w * h > limits.max_pixels:
        raise SampleRejected(f"member .{what} is {w}x{h} = {w * h} pixels, above the reader's limit of {limits.max_pixels}")
    return w, h
