"""Input listing: directories (recursive), globs, WebDataset/plain tars, parquet/CSV lists.

Local paths and any fsspec filesystem (s3://, gs://, ...) go through one code path. A listing
row names one image: its key (uri, or "uri::member" inside a tar), and for tar members the byte
range of the member, so that reading one is a seek, never an extraction.
"""

from __future__ import annotations

import posixpath
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass

import fsspec
import pyarrow as pa

from hoiforge.errors import InputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")
TAR_SUFFIXES = (".tar",)
LIST_SUFFIXES = (".parquet", ".csv")
LIST_COLUMNS = ("path", "uri", "url", "image")  # the first one present names the images

LISTING_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("uri", pa.string()),
        ("member", pa.string()),
        ("offset", pa.int64()),
        ("size", pa.int64()),
        ("error", pa.string()),  # listing-time problem (unsafe tar member): the row fails at read
    ]
)


@dataclass(frozen=True)
class InputRef:
    key: str
    uri: str
    member: str | None = None
    offset: int | None = None
    size: int | None = None
    error: str | None = None


def _has_magic(path: str) -> bool:
    return any(c in path for c in "*?[")


def _full_uri(fs: fsspec.AbstractFileSystem, path: str) -> str:
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return path if protocol in ("file", "local") else f"{protocol}://{path}"


def unsafe_member_reason(name: str) -> str | None:
    """Why a tar member name must not be trusted (absolute or escaping path), else None."""
    if name.startswith("/") or name.startswith("\\"):
        return f"unsafe tar member path (absolute): {name!r}"
    if ".." in posixpath.normpath(name).split("/") or ".." in name.replace("\\", "/").split("/"):
        return f"unsafe tar member path (..): {name!r}"
    return None


def _tar_members(fs: fsspec.AbstractFileSystem, path: str) -> Iterator[InputRef]:
    uri = _full_uri(fs, path)
    try:
        with fs.open(path, "rb") as f, tarfile.open(fileobj=f, mode="r:") as tar:
            for info in tar:
                if not info.isfile() or not info.name.lower().endswith(IMAGE_SUFFIXES):
                    continue
                yield InputRef(f"{uri}::{info.name}", uri, info.name, info.offset_data, info.size, unsafe_member_reason(info.name))
    except tarfile.TarError as e:
        raise InputError(f"{uri}: not a readable tar ({e})") from None


def _list_file(fs: fsspec.AbstractFileSystem, path: str) -> list[str]:
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    with fs.open(path, "rb") as f:
        table = pq.read_table(f) if path.endswith(".parquet") else pacsv.read_csv(f)
    column = next((c for c in LIST_COLUMNS if c in table.column_names), None)
    if column is None:
        raise InputError(f"{path}: a list needs one of the columns {', '.join(LIST_COLUMNS)}; found {table.column_names}")
    base = posixpath.dirname(_full_uri(fs, path))
    entries = []
    for value in table.column(column).to_pylist():
        if not value:
            continue
        relative = "://" not in value and not value.startswith("/")
        entries.append(posixpath.join(base, value) if relative else value)
    return entries


def _expand(spec: str, *, from_list: bool = False) -> Iterator[InputRef]:
    fs, path = fsspec.core.url_to_fs(spec)
    if _has_magic(path):
        matches = sorted(fs.glob(path))
        if not matches:
            raise InputError(f"{spec}: the pattern matches nothing")
        for p in matches:
            yield from _expand_path(fs, p, explicit=True)
        return
    if not fs.exists(path):
        if from_list:  # a listed file that vanished is that input's failure, not the run's
            yield InputRef(spec, spec, error="file not found")
            return
        raise InputError(f"{spec}: no such file or directory")
    if not from_list and fs.isfile(path) and path.lower().endswith(LIST_SUFFIXES):
        for entry in _list_file(fs, path):
            yield from _expand(entry, from_list=True)
        return
    yield from _expand_path(fs, path, explicit=True)


def _expand_path(fs: fsspec.AbstractFileSystem, path: str, explicit: bool) -> Iterator[InputRef]:
    if fs.isdir(path):
        for p in sorted(fs.find(path)):
            if p.lower().endswith(IMAGE_SUFFIXES + TAR_SUFFIXES):
                yield from _expand_path(fs, p, explicit=False)
        return
    if path.lower().endswith(TAR_SUFFIXES):
        yield from _tar_members(fs, path)
        return
    if explicit or path.lower().endswith(IMAGE_SUFFIXES):
        uri = _full_uri(fs, path)
        yield InputRef(uri, uri, size=fs.size(path))


def list_inputs(specs: list[str]) -> list[InputRef]:
    """Every image the specs name, each once, in a stable order (spec order, then path order)."""
    if not specs:
        raise InputError("no inputs given")
    seen: set[str] = set()
    refs: list[InputRef] = []
    for spec in specs:
        for ref in _expand(spec):
            if ref.key not in seen:
                seen.add(ref.key)
                refs.append(ref)
    return refs


def refs_to_table(refs: list[InputRef]) -> pa.Table:
    return pa.Table.from_pylist(
        [{"key": r.key, "uri": r.uri, "member": r.member, "offset": r.offset, "size": r.size, "error": r.error} for r in refs],
        schema=LISTING_SCHEMA,
    )


def read_input(uri: str, member: str | None, offset: int | None, size: int | None) -> bytes:
    """The bytes of one listed input (a tar member is read by its recorded byte range)."""
    fs, path = fsspec.core.url_to_fs(uri)
    with fs.open(path, "rb") as f:
        if member is None:
            return f.read()
        f.seek(offset)
        return f.read(size)
