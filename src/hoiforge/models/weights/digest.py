"""sha256 of a file: the registry's pin check, fetch's verification, checkpoints' checksums and the FID
feature cache's keys all hash with this one function.

The lowest module of ``models.weights`` (standard library only), so the registry and fetch both
import it and neither imports the other for it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

CHUNK = 1 << 20


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()
