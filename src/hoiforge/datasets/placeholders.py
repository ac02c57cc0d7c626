"""Placeholder members: every kept sample of a build carries the same member names.

Hugging Face ``datasets`` (webdataset builder, and so the Hub's viewer) infers one set of columns
from the first samples and refuses a shard whose samples name other members. A stage writes some
members only for some samples (``mask.png`` and ``views.jpg`` only when products were found,
``edge.png`` only inside product masks...), so the writer fills every member the recipe's stages
can write and a sample lacks with a placeholder: a valid file of that type that means "nothing"
(an all-zero image at the image size, an empty caption, ``{}``, an empty array), and lists the
filled names in the json's ``placeholders``. A reader that cares (``mask.png`` of a sample without
products) gets the same answer from the json's ``products: []`` as from the all-zero mask.
"""

from __future__ import annotations

import io
import json

import numpy as np
from PIL import Image

RGBA_MEMBERS = ("shoe.png", "shoecrop.png")  # transparent where nothing is
RGB_MEMBERS = ("pose.png", "leg.png")  # renderings: a black canvas with nothing drawn


def placeholder(member: str, width: int, height: int) -> bytes:
    """A valid, empty file for ``member`` at the image size (for image members)."""
    buf = io.BytesIO()
    if member.endswith(".png"):
        mode = "RGBA" if member in RGBA_MEMBERS else "RGB" if member in RGB_MEMBERS else "L"
        Image.new(mode, (max(1, width), max(1, height))).save(buf, "PNG", optimize=True)
    elif member.endswith(".jpg"):
        Image.new("RGB", (8, 8)).save(buf, "JPEG", quality=75)  # no tile (the products stage writes its own strip)
    elif member.endswith(".json"):
        from hoiforge.datasets.schema import conform, member_template

        return json.dumps(conform({}, member_template(member) or {}), separators=(",", ":")).encode()
    elif member.endswith(".npy"):
        np.save(buf, np.zeros((0,), np.float32))
    elif member == "txt" or member.endswith(".txt"):
        return b""
    else:
        raise ValueError(f"no placeholder for member {member!r}")
    return buf.getvalue()


def fill(members: dict[str, bytes | None], expected: tuple[str, ...], width: int, height: int) -> list[str]:
    """Add a placeholder for each expected member ``members`` lacks; returns the names filled."""
    filled = []
    for name in expected:
        if members.get(name) is None:
            members[name] = placeholder(name, width, height)
            filled.append(name)
    return filled
