"""Image folders for evaluation: list the images, decode them one at a time, account for the unreadable.

Images are files under the folder (recursively) whose suffix is an image suffix, in sorted
relative-path order. Decoding is lazy (a generator), so a metric never holds more than its
batch of images; a file that does not decode is skipped and recorded with the reason, and the
caller reports the skipped files once (``skipped_line``).
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from hoiforge.errors import InputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
MAX_PIXELS = 64_000_000  # a generated or test image is far below this; above it is a decompression bomb


@dataclass
class ImageFolder:
    root: Path
    files: list[Path]  # relative to root, sorted
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (relative path, reason), filled while decoding

    @property
    def names(self) -> list[str]:
        return [f.as_posix() for f in self.files]


def list_images(folder: str | Path) -> ImageFolder:
    """The image files under ``folder``; InputError if it is not a folder."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise InputError(f"{root}: not a folder of images")
    files = sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    return ImageFolder(root, files)


def decode_image(data: bytes, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """HxWx3 uint8 RGB, EXIF orientation applied; ValueError with a short reason if unusable."""
    if not data:
        raise ValueError("empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                if img.width * img.height > max_pixels:
                    raise ValueError(f"{img.width}x{img.height} is over the {max_pixels / 1e6:.0f} MP limit")
                return np.asarray(ImageOps.exif_transpose(img).convert("RGB"))
    except UnidentifiedImageError:
        raise ValueError("not an image") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ValueError("decompression bomb") from None
    except ValueError:
        raise
    except Exception as e:  # noqa: BLE001 - any decoder error (truncated, corrupt) is a property of the file
        raise ValueError(f"cannot decode ({type(e).__name__}: {e})") from None


def iter_images(folder: ImageFolder) -> Iterator[tuple[str, np.ndarray]]:
    """(relative name, RGB array) per readable image; unreadable ones land in ``folder.skipped``."""
    folder.skipped.clear()
    for rel in folder.files:
        try:
            rgb = decode_image((folder.root / rel).read_bytes())
        except (OSError, ValueError) as e:
            folder.skipped.append((rel.as_posix(), str(e)))
            continue
        yield rel.as_posix(), rgb


def skipped_line(root: str | Path, total: int, skipped: list[tuple[str, str]], shown: int = 5) -> str | None:
    """One warning line for the files that could not be read, or None when all were read."""
    if not skipped:
        return None
    listed = ", ".join(f"{name} ({reason})" for name, reason in skipped[:shown])
    more = f" and {len(skipped) - shown} more" if len(skipped) > shown else ""
    return f"{len(skipped)} of {total} files in {root} could not be read and were skipped: {listed}{more}"
