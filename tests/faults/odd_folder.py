"""A folder as users have them: every image format, camera and OS litter, links, a FIFO, a tar."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

from tests.faults.formats import eps_bytes, every_extension, sixteen_bit_rgb_png

# Tar members: an image, a non-image, an unsafe path with rich markup in it, a symlink, a folder.
TAR_MEMBERS = ("inner/a.png", "inner/notes.txt", "../[/]x.jpg", "inner/link.jpg")


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def make_odd_folder(folder: Path) -> dict[str, str]:
    """Write the folder; returns {key the build gives it: what it must become ("kept"/"dropped:list"/"failed:...")}."""
    images = every_extension()
    folder.mkdir(parents=True)
    (folder / "nested" / "deeper").mkdir(parents=True)
    expected: dict[str, str] = {}

    for i, (name, data) in enumerate(sorted(images.items())):
        target = folder / ("nested" if i % 2 else "") / name
        target.write_bytes(data)
        expected[str(target)] = "kept"
    (folder / "deep16.png").write_bytes(sixteen_bit_rgb_png())
    expected[str(folder / "deep16.png")] = "kept"
    (folder / "nested" / "deeper" / "postscript.jpg").write_bytes(eps_bytes())
    expected[str(folder / "nested" / "deeper" / "postscript.jpg")] = "failed:decode"

    for name, data in {
        "README.txt": b"shoot notes\n",
        ".DS_Store": b"\x00\x00\x00\x01Bud1",
        "Thumbs.db": b"\xd0\xcf\x11\xe0",
        "nested/meta.xmp": b"<x:xmpmeta/>",
        "nested/deeper/captions.csv": b"path\nphoto.jpg\n",
        "no_extension": b"?",
        "clip.mov": b"\x00\x00\x00\x14ftypqt  ",
    }.items():
        (folder / name).write_bytes(data)
        expected[str(folder / name)] = "dropped:list"

    png = next(k for k in expected if k.endswith("/photo.png"))
    os.symlink(png, folder / "nested" / "alias.jpg")  # a link to a regular image: read through it
    os.symlink(folder / "gone.png", folder / "broken.jpg")
    os.mkfifo(folder / "pipe.jpg")
    # Same bytes as photo.png: the first in listing (path) order keeps the image, the other is a duplicate.
    first, second = sorted([str(folder / "nested" / "alias.jpg"), png])
    expected[first], expected[second] = "kept", "dropped:dedup"
    expected[str(folder / "broken.jpg")] = "failed:read"
    expected[str(folder / "pipe.jpg")] = "failed:read"

    tar_path = folder / "batch.tar"
    with tarfile.open(tar_path, "w") as tar:
        dir_info = tarfile.TarInfo("inner")
        dir_info.type = tarfile.DIRTYPE
        tar.addfile(dir_info)
        _add(tar, "inner/a.png", sixteen_bit_rgb_png((40, 30)))
        _add(tar, "inner/notes.txt", b"hello")
        _add(tar, "../[/]x.jpg", images["photo.jpg"])
        link = tarfile.TarInfo("inner/link.jpg")
        link.type, link.linkname = tarfile.SYMTYPE, "a.png"
        tar.addfile(link)
    expected[f"{tar_path}::inner/a.png"] = "kept"
    expected[f"{tar_path}::inner/notes.txt"] = "dropped:list"
    expected[f"{tar_path}::../[/]x.jpg"] = "failed:read"
    expected[f"{tar_path}::inner/link.jpg"] = "failed:read"
    return expected


def entries_found(folder: Path) -> int:
    """What a user counts: every non-directory entry under the folder, tars counted by their members."""
    n = 0
    for path in folder.rglob("*"):
        if path.is_dir() and not path.is_symlink():
            continue
        if path.suffix == ".tar" and path.is_file():
            with tarfile.open(path) as tar:
                n += sum(not m.isdir() for m in tar)
        else:
            n += 1
    return n
