"""Input listing: directories (recursive), globs, WebDataset/plain tars, parquet/CSV lists.

Local paths and any fsspec filesystem (s3://, gs://, ...) go through one code path. A listing
row names one input: its key (uri, or "uri::member" inside a tar), and for tar members the byte
range of the member, so that reading one is a seek, never an extraction.

Every regular file found under a directory or named in a list (and every tar member) is a row:
a file that is not an image by its extension gets ``skip`` (it is ``dropped`` at stage ``list``
and never read), an entry that cannot be read safely (FIFO, device, unsafe tar path, a symlink in
a folder that resolves outside it) gets ``error`` (it ``failed``). Nothing found is left out of
the manifest.
"""

from __future__ import annotations

import os
import posixpath
import tarfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import fsspec
import pyarrow as pa

from hoiforge.datasets.images import IMAGE_SUFFIXES
from hoiforge.errors import InputError
from hoiforge.pipeline.source_read import file_kind, is_local, not_regular_reason, read_limited

TAR_SUFFIXES = (".tar",)
LIST_SUFFIXES = (".parquet", ".csv")
LIST_COLUMNS = ("path", "uri", "url", "image")  # the first one present names the images
# fsspec protocols whose implementation is a separate package, and the extra that installs it.
PROTOCOL_EXTRAS = {"s3": ("s3fs", "s3"), "s3a": ("s3fs", "s3"), "gs": ("gcsfs", "gcs"), "gcs": ("gcsfs", "gcs")}

LISTING_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("uri", pa.string()),
        ("member", pa.string()),
        ("offset", pa.int64()),
        ("size", pa.int64()),
        ("error", pa.string()),  # listing-time problem (unsafe tar member, not a regular file): the row fails at read
        ("error_code", pa.string()),  # its reason code at stage read (not_found, unsafe_member, ...)
        ("skip", pa.string()),  # not an image by extension: the row is dropped at "list", never read
        ("relpath", pa.string()),  # path under the input directory / list folder / tar (labels match it)
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
    error_code: str | None = None
    skip: str | None = None
    relpath: str | None = None


def _has_magic(path: str) -> bool:
    return any(c in path for c in "*?[")


def _full_uri(fs: fsspec.AbstractFileSystem, path: str) -> str:
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return path if protocol in ("file", "local") else f"{protocol}://{path}"


def _url_to_fs(spec: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """fsspec's filesystem of ``spec``; a missing s3fs/gcsfs is an InputError saying what to install."""
    try:
        return fsspec.core.url_to_fs(spec)
    except ImportError as e:
        protocol = spec.split("://", 1)[0] if "://" in spec else ""
        package, extra = PROTOCOL_EXTRAS.get(protocol, (None, None))
        how = f"pip install 'hoiforge[{extra}]' (or {package})" if package else "install the fsspec implementation it names"
        raise InputError(f"{spec}: reading {protocol or 'this'}:// inputs needs another package ({e}); {how}") from None


def not_image_reason(name: str) -> str:
    ext = posixpath.splitext(name)[1].lower()
    return f"not an image file by extension ({ext or 'no extension'}); not read"


def key_of(spec: str) -> str:
    """The listing key a path or URL gets, as the build spells it (local paths made absolute)."""
    fs, path = _url_to_fs(spec)
    return _full_uri(fs, path)


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
                if info.isdir():
                    continue
                ref = InputRef(f"{uri}::{info.name}", uri, info.name, info.offset_data, info.size, relpath=info.name)
                if not info.isfile():
                    kind = "a symlink" if info.issym() else "a hard link" if info.islnk() else "a device or FIFO"
                    yield _with(ref, error=f"tar member is {kind}, not a regular file; not read", error_code="not_regular_member")
                elif unsafe_member_reason(info.name):
                    yield _with(ref, error=unsafe_member_reason(info.name), error_code="unsafe_member")
                elif not info.name.lower().endswith(IMAGE_SUFFIXES):
                    yield _with(ref, skip=not_image_reason(info.name))
                else:
                    yield ref
    except tarfile.TarError as e:
        raise InputError(f"{uri}: not a readable tar ({e})") from None


def _with(ref: InputRef, **changes) -> InputRef:
    return InputRef(**{**ref.__dict__, **changes})


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
        entries.append(_join(base, value) if relative else value)
    return entries


def _join(base: str, relative: str) -> str:
    """``base`` (a path or URL) joined with a relative path, ".." resolved (so the folder check sees it)."""
    protocol, sep, path = base.rpartition("://")
    joined = posixpath.normpath(posixpath.join(path or "/", relative))
    return f"{protocol}{sep}{joined}" if sep else joined


def _outside(fs: fsspec.AbstractFileSystem, list_path: str, entry: str) -> bool:
    """Whether a list entry leaves the list's own folder (local) or bucket (remote), or its protocol."""
    entry_fs, entry_path = _url_to_fs(entry)
    if type(entry_fs) is not type(fs):
        return True
    if is_local(fs):
        folder = os.path.realpath(os.path.dirname(list_path))
        return os.path.commonpath([folder, os.path.realpath(entry_path)]) != folder
    bucket = list_path.lstrip("/").split("/", 1)[0]
    normal = posixpath.normpath(entry_path.lstrip("/"))
    return normal.split("/", 1)[0] != bucket or normal.startswith("..")


def _relative_to(folder: str, path: str) -> str:
    rel = posixpath.relpath(path, folder) if path.startswith(folder.rstrip("/") + "/") else posixpath.basename(path)
    return rel


def _expand(spec: str, *, from_list: str | None = None, allow_outside_lists: bool = False) -> Iterator[InputRef]:
    fs, path = _url_to_fs(spec)
    if _has_magic(path):
        matches = sorted(fs.glob(path))
        if not matches:
            raise InputError(f"{spec}: the pattern matches nothing")
        for p in matches:  # a pattern names many files: the extension rule applies, as in a folder
            yield from _expand_path(fs, p, explicit=False, base=posixpath.dirname(p))
        return
    try:
        fs.info(path)
    except FileNotFoundError:
        if from_list:  # a listed file that vanished is that input's failure, not the run's
            yield InputRef(spec, spec, error="file not found", error_code="not_found", relpath=_relative_to(from_list, spec))
            return
        raise InputError(f"{spec}: no such file or directory") from None
    if not from_list and fs.isfile(path) and path.lower().endswith(LIST_SUFFIXES):
        entries = _list_file(fs, path)
        if not allow_outside_lists:
            outside = [e for e in entries if _outside(fs, path, e)]
            if outside:
                raise InputError(
                    f"{spec}: {len(outside)} of its {len(entries)} entries are outside the list's own "
                    f"{'folder' if is_local(fs) else 'bucket'} or on another filesystem (e.g. {outside[0]}); "
                    "pass --allow-outside-lists if the list is yours and may name them"
                )
        folder = posixpath.dirname(_full_uri(fs, path))
        for entry in entries:
            yield from _expand(entry, from_list=folder, allow_outside_lists=allow_outside_lists)
        return
    base = from_list if from_list else (path if fs.isdir(path) else posixpath.dirname(path))
    yield from _expand_path(fs, path, explicit=from_list is None, base=base)


LINK_OUTSIDE = "symlink leads outside the input folder; not read (name its target as an input to build from it)"


def _leaves(folder: str, path: str) -> bool:
    """Whether the symlink ``path`` found under ``folder`` resolves outside it (a received folder whose
    ``link.jpg`` points at /etc/passwd must not feed that file into the build, its manifest and viewer)."""
    root = os.path.realpath(folder)
    return os.path.commonpath([root, os.path.realpath(path)]) != root


def _regular(fs: fsspec.AbstractFileSystem, path: str, info: dict) -> tuple[int | None, str | None]:
    """(size, None) for a regular file (symlinks followed), else (None, why it is not read)."""
    if info.get("type") == "other" and info.get("islink"):
        try:
            info = fs.info(path)  # follows the link
        except OSError:
            return None, "broken symlink; not read"
    if info.get("type") == "file":
        return int(info.get("size") or 0), None
    mode = info.get("mode")
    kind = file_kind(mode) if isinstance(mode, int) else str(info.get("type"))
    return None, not_regular_reason(kind)


def _expand_path(fs: fsspec.AbstractFileSystem, path: str, explicit: bool, base: str, info: dict | None = None) -> Iterator[InputRef]:
    info = info or fs.info(path)
    if info.get("type") == "directory":
        for p, found in sorted(fs.find(path, detail=True).items()):
            if found.get("islink") and is_local(fs) and _leaves(path, p):
                uri = _full_uri(fs, p)
                yield InputRef(uri, uri, error=LINK_OUTSIDE, error_code="link_outside_input", relpath=_relative_to(path, p))
                continue
            yield from _expand_path(fs, p, explicit=False, base=path, info=found)
        return
    uri = _full_uri(fs, path)
    rel = _relative_to(base, path)
    size, not_read = _regular(fs, path, info)
    if not_read:
        yield InputRef(uri, uri, error=not_read, error_code="not_regular_file", relpath=rel)
        return
    if path.lower().endswith(TAR_SUFFIXES):
        yield from _tar_members(fs, path)
        return
    if explicit or path.lower().endswith(IMAGE_SUFFIXES):
        yield InputRef(uri, uri, size=size, relpath=rel)
    else:
        yield InputRef(uri, uri, size=size, skip=not_image_reason(path), relpath=rel)


def accepted_inputs() -> str:
    return f"images ({' '.join(IMAGE_SUFFIXES)}), .tar archives of them, and .csv/.parquet lists naming them"


def _nothing_to_build(specs: list[str], refs: list[InputRef]) -> InputError:
    where = ", ".join(specs[:3]) + (f" and {len(specs) - 3} more" if len(specs) > 3 else "")
    if not refs:
        return InputError(f"{where}: no files found (empty folder?); accepted: {accepted_inputs()}")
    by_ext = Counter(posixpath.splitext(r.member or r.uri)[1].lower() or "(no extension)" for r in refs if r.skip)
    found = [f"{n} {ext}" for ext, n in by_ext.most_common(6)]
    unreadable = sum(r.error is not None for r in refs)
    if unreadable:
        found.append(f"{unreadable} not readable (missing, not a regular file, unsafe tar path)")
    return InputError(f"{where}: found {len(refs)} file(s) ({', '.join(found)}) and no image to build from; accepted: {accepted_inputs()}")


def list_inputs(specs: list[str], allow_outside_lists: bool = False) -> list[InputRef]:
    """Every file the specs name, each once, in a stable order (spec order, then path order).

    InputError when there is nothing to build: no files at all, or none that is an image.
    List entries outside the list's own folder/bucket need ``allow_outside_lists``.
    """
    if not specs:
        raise InputError("no inputs given")
    seen: set[str] = set()
    refs: list[InputRef] = []
    for spec in specs:
        for ref in _expand(spec, allow_outside_lists=allow_outside_lists):
            if ref.key not in seen:
                seen.add(ref.key)
                refs.append(ref)
    if not any(r.skip is None and r.error is None for r in refs):
        raise _nothing_to_build(specs, refs)
    return refs


def refs_to_table(refs: list[InputRef]) -> pa.Table:
    return pa.Table.from_pylist([dict(r.__dict__) for r in refs], schema=LISTING_SCHEMA)


def conform_listing(table: pa.Table) -> pa.Table:
    """A listing saved by an older version, with the columns it lacks added (null) in schema order."""
    for field in LISTING_SCHEMA:
        if field.name not in table.column_names:
            table = table.append_column(field, pa.nulls(table.num_rows, field.type))
    extra = [c for c in table.column_names if c not in LISTING_SCHEMA.names]
    return table.select(LISTING_SCHEMA.names + extra)


def read_input(uri: str, member: str | None, offset: int | None, size: int | None, max_bytes: int | None = None) -> bytes:
    """The bytes of one listed input (a tar member by its recorded, verified byte range), within ``max_bytes``."""
    return read_limited(uri, member, offset, size, max_bytes)
