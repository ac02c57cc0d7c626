"""Download registry entries into the weights root: Hugging Face files at a pinned commit, and plain HTTP files.

HTTP downloads go to ``<file>.part`` and resume from its size with a ``Range`` request, so an
interrupted multi-GB download continues where it stopped; the request carries ``If-Range`` with
the validator (ETag, else Last-Modified) the first response had, so a file changed on the server
in between is sent whole again instead of being spliced onto the old prefix. A file becomes visible under its final
name only after its size (and sha256, where the publisher states one) checked out, so a present
file is a complete file. Hugging Face entries pin the commit the revision resolves to, so every
file of an entry comes from the same commit. Every failure is one ``FetchError`` line: no network,
HTTP errors, an interrupted transfer, a checksum mismatch.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib
import json
import os
import shutil
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

from hoiforge.errors import HoiforgeError
from hoiforge.models.weights.digest import CHUNK, sha256_of
from hoiforge.models.weights.registry import MANIFEST, WeightSpec, is_commit, read_manifest, weights_root

TIMEOUT_S = 30
_TRUE = {"1", "ON", "YES", "TRUE"}


class FetchError(HoiforgeError):
    """A download failed; the message says why and what to do (no traceback)."""


class ChecksumError(FetchError):
    """A file's sha256 differs from the expected one; the file was refused."""


def offline() -> bool:
    """HF_HUB_OFFLINE (the Hugging Face switch users already know) turns every download off."""
    return os.environ.get("HF_HUB_OFFLINE", "").upper() in _TRUE


def verify(path: Path, expected: str | None) -> str:
    """The file's sha256; ChecksumError when ``expected`` is given and differs."""
    got = sha256_of(path)
    if expected and got != expected.lower():
        raise ChecksumError(f"{path.name}: sha256 {got} does not match the expected {expected}; refused (corrupted or changed upstream)")
    return got


def _no_network(what: str, reason: object) -> FetchError:
    return FetchError(
        f"cannot download {what}: {reason} (no network here? fetch on a machine that has it and copy the "
        f"folder, or point HOIFORGE_WEIGHTS at a shared copy)"
    )


def download_url(url: str, dest: Path, sha256: str | None = None, timeout: float = TIMEOUT_S) -> str:
    """Download ``url`` to ``dest`` with resume from ``dest.part``; returns the file's sha256.

    A checksum mismatch discards the partial file (resuming a corrupt prefix would never heal).
    """
    if offline():
        raise FetchError(f"HF_HUB_OFFLINE is set: not downloading {url}; unset it to fetch")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    validator_file = dest.with_name(dest.name + ".part.validator")
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "hoiforge"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        validator = _read_validator(validator_file)
        if validator:
            headers["If-Range"] = validator
    host = urlparse(url).netloc
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:  # the part is already whole: the server has nothing after it
            return _finish(part, dest, sha256)
        raise FetchError(f"{url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        raise _no_network(f"{dest.name} from {host}", getattr(e, "reason", e)) from None
    with resp:
        if offset and resp.status == 206:
            start = resp.headers.get("Content-Range", "").removeprefix("bytes ").split("-")[0]
            if start != str(offset):
                raise FetchError(f"{url}: server resumed at byte {start or '?'} instead of {offset}; delete {part} and retry")
            mode = "ab"
        else:  # 200: the server ignored Range, the file changed (If-Range), or nothing to resume: start over
            mode, offset = "wb", 0
            _write_validator(validator_file, resp.headers.get("ETag") or resp.headers.get("Last-Modified"))
        length = resp.headers.get("Content-Length")
        expected_size = offset + int(length) if length is not None else None
        try:
            with open(part, mode) as out, _progress(out, dest.name, expected_size, offset) as sink:
                shutil.copyfileobj(resp, sink, CHUNK)
        except (http.client.IncompleteRead, OSError) as e:
            raise FetchError(f"{dest.name}: download interrupted ({type(e).__name__}: {e}); run the same command again to resume") from None
    if expected_size is not None and part.stat().st_size != expected_size:
        got = part.stat().st_size
        raise FetchError(f"{dest.name}: download interrupted at {got} of {expected_size} bytes; run the same command again to resume")
    validator_file.unlink(missing_ok=True)
    return _finish(part, dest, sha256)


def _read_validator(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def _write_validator(path: Path, value: str | None) -> None:
    """Remember the first response's ETag/Last-Modified for If-Range on resume (none: plain Range)."""
    if value and value.strip().startswith(("W/", "w/")):
        value = None  # a weak ETag may not be used in If-Range (RFC 9110 13.1.5)
    if value:
        path.write_text(value)
    else:
        path.unlink(missing_ok=True)


def _progress(out, name: str, total: int | None, initial: int):
    """``out`` wrapped in a tqdm bar on a terminal (silent in logs and tests); ``out`` itself without tqdm."""
    try:
        from tqdm import tqdm
    except ImportError:
        return contextlib.nullcontext(out)
    return tqdm.wrapattr(out, "write", total=total, initial=initial, desc=name, disable=None, unit="B", unit_scale=True, leave=False)


def _finish(part: Path, dest: Path, sha256: str | None) -> str:
    try:
        digest = verify(part, sha256)
    except ChecksumError:
        part.unlink()
        raise
    os.replace(part, dest)
    return digest


def _fetch_url_files(s: WeightSpec, folder: Path, log: Callable[[str], None]) -> dict[str, dict]:
    recorded = read_manifest(folder).get("files", {})
    files = {}
    for f in s.files:
        assert f.url, f"{s.name}: {f.path} has no url"
        dest = folder / f.path
        known = recorded.get(f.path, {})
        if dest.is_file() and known.get("size") in (None, dest.stat().st_size):
            # Already here (fetched, or copied in by hand): hash only what fetch has not recorded yet.
            digest = verify(dest, f.sha256) if f.sha256 or "sha256" not in known else known["sha256"]
            log(f"{s.name}: {f.path} present")
        else:
            log(f"{s.name}: downloading {f.url}")
            digest = download_url(f.url, dest, f.sha256)
        files[f.path] = {"size": dest.stat().st_size, "sha256": digest}
    return files


def _fetch_hf(s: WeightSpec, folder: Path, log: Callable[[str], None], endpoint: str | None) -> tuple[str, dict[str, dict]]:
    if offline():
        raise FetchError(f"HF_HUB_OFFLINE is set: not downloading {s.hf_repo}; unset it to fetch, or copy the files into {folder}")
    try:
        from huggingface_hub import HfApi, hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError
    except ImportError:
        raise FetchError("python package 'huggingface_hub' is not installed: pip install huggingface_hub") from None
    # One file at a time rather than snapshot_download: that one returns quietly with whatever is in
    # local_dir when the hub cannot be reached, and the entry lists its files anyway.
    current = None
    try:
        commit = HfApi(endpoint=endpoint).model_info(s.hf_repo, revision=s.revision).sha
        log(f"{s.name}: {s.hf_repo}@{s.revision or 'main'} is commit {commit}")
        if is_commit(s.revision) and commit != s.revision:
            raise FetchError(f"{s.hf_repo}: the hub answered commit {commit} for the pinned {s.revision}; refused")
        for f in s.files:
            current = f.path
            hf_hub_download(s.hf_repo, f.path, revision=commit, local_dir=folder, endpoint=endpoint)
    except EntryNotFoundError:
        raise FetchError(f"{s.hf_repo}@{commit} has no {current}; the registry entry {s.name!r} needs updating") from None
    except FetchError:
        raise
    except Exception as e:  # noqa: BLE001 - hub, HTTP and connection errors all become one line
        first = (str(e).strip().splitlines() or [""])[0]
        if _is_connection_error(e):
            raise _no_network(f"{s.hf_repo}", f"{type(e).__name__}: {first}") from None
        raise FetchError(f"{s.hf_repo}@{s.revision}: {type(e).__name__}: {first}") from None
    files = {}
    for f in s.files:
        files[f.path] = {"size": (folder / f.path).stat().st_size, "sha256": verify(folder / f.path, f.sha256)}
    return commit, files


def _is_connection_error(e: BaseException) -> bool:
    seen: BaseException | None = e
    while seen is not None:
        name = type(seen).__name__
        if isinstance(seen, (ConnectionError, TimeoutError, socket.gaierror)) or "Connect" in name or "Timeout" in name:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _convert(s: WeightSpec, folder: Path, log: Callable[[str], None]) -> None:
    assert s.converter and s.converted
    target = folder / s.converted
    if target.exists():
        return
    try:
        convert = importlib.import_module(s.converter).convert
    except (ImportError, AttributeError):
        raise FetchError(
            f"{s.name}: downloaded, but its converter {s.converter}.convert is not available; convert {folder / s.files[0].path} to {target} with it"
        ) from None
    log(f"{s.name}: converting with {s.converter}")
    # Convert under a temporary name, then rename: a present output (file or model folder) is whole.
    tmp = target.with_name(target.name + ".converting")
    _remove(tmp)
    try:
        convert(folder / s.files[0].path, tmp)
    except Exception as e:  # noqa: BLE001 - a converter's any failure is the published file's, said in one line
        _remove(tmp)
        first = (str(e).strip().splitlines() or [""])[0]
        raise FetchError(f"{s.name}: {s.converter} could not convert {s.files[0].path}: {type(e).__name__}: {first}") from None
    os.replace(tmp, target)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def fetch(s: WeightSpec, root: Path | str | None = None, *, endpoint: str | None = None,
          log: Callable[[str], None] = lambda msg: None) -> Path:  # fmt: skip
    """Make ``s`` complete in ``<root>/<name>/``; returns that folder. Idempotent: present files are kept."""
    from filelock import FileLock  # a dependency of ray and huggingface_hub

    folder = weights_root(root) / s.name
    folder.mkdir(parents=True, exist_ok=True)
    # Nodes that run `hoiforge models fetch` against one shared folder (NFS) take turns per entry;
    # the later ones then find the files complete and download nothing.
    with FileLock(str(folder / ".lock")):
        if read_manifest(folder) and not s.missing_in(folder):
            log(f"{s.name}: present")
            return folder
        if s.hf_repo:
            commit, files = _fetch_hf(s, folder, log, endpoint)
        else:
            commit, files = None, _fetch_url_files(s, folder, log)
        manifest = {"name": s.name, "source": s.source, "commit": commit, "files": files,
                    "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}  # fmt: skip
        tmp = folder / (MANIFEST + ".tmp")
        tmp.write_text(json.dumps(manifest, indent=1))
        os.replace(tmp, folder / MANIFEST)
        if s.converter:
            _convert(s, folder, log)
    return folder


def verify_present(s: WeightSpec, folder: Path) -> list[str]:
    """Problems found by hashing the files of ``s`` in ``folder`` against the publisher's or fetch's sha256."""
    recorded = read_manifest(folder).get("files", {})
    problems = []
    for f in s.files:
        expected = f.sha256 or recorded.get(f.path, {}).get("sha256")
        path = folder / f.path
        if not path.is_file():
            problems.append(f"{s.name}/{f.path}: missing")
        elif expected:
            try:
                verify(path, expected)
            except ChecksumError as e:
                problems.append(f"{s.name}/{e}")
    return problems
