"""Reading one listed input's bytes within limits: regular files only, never more than max_bytes + 1.

A listed size above the limit fails before anything is opened; a local path, and the local tar
holding a member, is opened non-blocking and checked with ``fstat`` (a FIFO or a device named
``x.jpg`` or ``x.tar`` is refused, it never blocks the build or the viewer, or streams /dev/zero
into memory); a tar member is read only after the header
at its recorded offset proves it is still that member (a tar rewritten between two runs).
"""

from __future__ import annotations

import os
import stat
import tarfile

import fsspec

BLOCK = tarfile.BLOCKSIZE


class InputTooLarge(ValueError):
    """The input is larger than the decode stage's max_bytes; the message is the row's reason."""


class NotRegularFile(ValueError):
    """The input is a FIFO, device, socket or directory; the message is the row's reason."""


class StaleMember(ValueError):
    """The tar no longer holds the member at its recorded offset (it was rewritten)."""


def file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory"), (stat.S_ISLNK, "a symlink")):  # fmt: skip
        if test(mode):
            return name
    return "not a regular file"


def not_regular_reason(kind: str) -> str:
    return f"not a regular file ({kind}); not read"


def too_large_reason(size: int | str, limit: int) -> str:
    return f"file too large: {size} bytes > limit {limit} (decode max_bytes); not read"


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else fs.protocol
    return "file" in protocols or "local" in protocols


def _open_regular(path: str):
    """A local file opened for reading only if it is a regular file: non-blocking, so a FIFO never
    waits for a writer, and checked with fstat on the opened descriptor (no race with a rename)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    f = os.fdopen(fd, "rb")
    st = os.fstat(f.fileno())
    if not stat.S_ISREG(st.st_mode):
        f.close()
        raise NotRegularFile(not_regular_reason(file_kind(st.st_mode)))
    return f, st


def _read_local(path: str, limit: int | None) -> bytes:
    f, st = _open_regular(path)
    with f:
        if limit is not None and st.st_size > limit:
            raise InputTooLarge(too_large_reason(st.st_size, limit))
        return _read_at_most(f, limit)


def _read_at_most(f, limit: int | None) -> bytes:
    if limit is None:
        return f.read()
    chunks, left = [], limit + 1
    while left > 0:
        chunk = f.read(min(left, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    data = b"".join(chunks)
    if len(data) > limit:
        raise InputTooLarge(too_large_reason(f"more than {limit}", limit))
    return data


def check_member_header(header: bytes, member: str, size: int) -> None:
    """StaleMember unless ``header`` is the tar header of ``member`` with ``size`` bytes."""
    try:
        info = tarfile.TarInfo.frombuf(header, "utf-8", "surrogateescape")
    except tarfile.HeaderError as e:
        raise StaleMember(
            f"the tar changed since it was listed: no member header before the recorded offset ({e}); rerun lists it again"
        ) from None
    # Names longer than a ustar header holds live in a GNU/pax header before this one: there the
    # header carries a truncated name, and the size alone identifies the member.
    same_name = info.name == member or len(member.encode()) >= 100
    if not same_name or info.size != size or not info.isfile():
        raise StaleMember(
            f"the tar changed since it was listed: the recorded offset now holds {info.name!r} ({info.size} bytes), "
            f"not {member!r} ({size} bytes); rerun lists it again"
        )


def read_limited(uri: str, member: str | None, offset: int | None, size: int | None, max_bytes: int | None = None) -> bytes:
    """The bytes of one listed input (a tar member by its recorded range), within ``max_bytes``."""
    if size is not None and max_bytes is not None and size > max_bytes:
        raise InputTooLarge(too_large_reason(size, max_bytes))
    fs, path = fsspec.core.url_to_fs(uri)
    if member is None and is_local(fs):
        return _read_local(path, max_bytes)
    if member is None:
        info = fs.info(path)
        if info.get("type") != "file":
            raise NotRegularFile(not_regular_reason(str(info.get("type"))))
        with fs.open(path, "rb") as f:
            return _read_at_most(f, max_bytes)
    if offset is None or size is None or offset < BLOCK:
        raise StaleMember(f"no byte range recorded for tar member {member!r}")
    if not is_local(fs) and fs.info(path).get("type") != "file":
        raise NotRegularFile(not_regular_reason(str(fs.info(path).get("type"))))
    # The tar itself is checked like a plain input: a FIFO named x.tar would block fs.open forever.
    with _open_regular(path)[0] if is_local(fs) else fs.open(path, "rb") as f:
        f.seek(offset - BLOCK)
        check_member_header(f.read(BLOCK), member, size)
        data = f.read(size)
    if len(data) != size:
        raise StaleMember(f"the tar is shorter than when it was listed: member {member!r} ends early")
    return data
