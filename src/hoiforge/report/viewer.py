"""``hoiforge view OUT``: a local web server to browse a build's samples with overlays.

Stdlib ``ThreadingHTTPServer`` bound to 127.0.0.1 by default. JSON API:

    GET /api/facets                      distinct statuses, stages, reason classes, labels, scores
    GET /api/samples?status=&stage=&reason=&label=&split=&score=&min_score=&max_score=&page=&page_size=
    GET /api/sample/<index>              manifest row + annotation + members + wids position
    GET /api/member/<index>/<ext>        a member's bytes (random access into the shard)
    GET /api/overlay/<index>/<kind>      pose | mask | edge as a transparent PNG
    GET /api/thumb/<index>               small JPEG (the shard image, else the readable source)
    GET /api/source/<index>              the source image of a dropped/failed row, if still readable

``<index>`` is the manifest's input index. No parameter reaches the filesystem except through
a manifest row: shards must be listed in index.json, sources are the row's own uri/member, and
static files come from a fixed table.
"""

from __future__ import annotations

import json
import mimetypes
import re
import sys
import threading
from functools import lru_cache
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from hoiforge.report.overlays import OVERLAYS, overlay_png, thumbnail_jpeg
from hoiforge.report.samples import PAGE_SIZE, Query, SampleIndex

STATIC_FILES = {"/": "index.html", "/index.html": "index.html", "/app.js": "app.js", "/app.css": "app.css"}
LOOPBACK = ("127.0.0.1", "localhost", "::1")
_ROUTE = re.compile(r"^/api/(sample|member|overlay|thumb|source)/(\d+)(?:/([a-z0-9][a-z0-9._-]*))?$")


class HttpError(Exception):
    def __init__(self, status: HTTPStatus, message: str):
        super().__init__(message)
        self.status = status


class Viewer:
    """The API over one output directory (no HTTP here, so it is testable without a socket)."""

    def __init__(self, out: str | Path):
        self.out = Path(out)
        self.samples = SampleIndex(out)
        self._cache_lock = threading.Lock()

    def facets(self) -> dict[str, Any]:
        return self.samples.facets

    def list(self, params: dict[str, str]) -> dict[str, Any]:
        try:
            q = Query.from_params(params)
            page = int(params.get("page", "0") or 0)
            page_size = int(params.get("page_size", PAGE_SIZE) or PAGE_SIZE)
        except ValueError as e:
            raise HttpError(HTTPStatus.BAD_REQUEST, str(e)) from None
        return self.samples.page(q, page, page_size)

    def _row(self, index: int, where_only: bool = False, source: bool = False) -> dict[str, Any]:
        row = self.samples.where(index, source) if where_only else self.samples.row(index)
        if row is None:
            raise HttpError(HTTPStatus.NOT_FOUND, f"no input with index {index}")
        return row

    def sample(self, index: int) -> dict[str, Any]:
        row = self._row(index)
        members = self.samples.members(row)
        doc: dict[str, Any] = {"manifest": row, "members": {ext: size for ext, (_, size) in members.items()}}
        if "json" in members:
            doc["annotation"] = json.loads(self.samples.read_member(row, "json"))
        if "txt" in members:
            doc["caption"] = self.samples.read_member(row, "txt").decode("utf-8", "replace")
        doc["image_ext"] = next((e for e in ("jpg", "png", "webp") if e in members), None)
        doc["overlays"] = [k for k, ext in OVERLAYS.items() if ext in members]
        doc["wids_index"] = self.samples.wids_position(row)
        doc["source_readable"] = row["status"] != "kept" and self._source_bytes(index, row) is not None
        return doc

    def member(self, index: int, ext: str) -> tuple[bytes, str]:
        data = self.samples.read_member(self._row(index, where_only=True), ext)
        if data is None:
            raise HttpError(HTTPStatus.NOT_FOUND, f"input {index} has no member .{ext} in the shards")
        return data, _mime(ext)

    def overlay(self, index: int, kind: str) -> tuple[bytes, str]:
        if kind not in OVERLAYS:
            raise HttpError(HTTPStatus.NOT_FOUND, f"overlay must be one of {sorted(OVERLAYS)}")
        data, _ = self.member(index, OVERLAYS[kind])
        return overlay_png(kind, data), "image/png"

    def source(self, index: int) -> tuple[bytes, str]:
        data = self._source_bytes(index)
        if data is None:
            raise HttpError(HTTPStatus.NOT_FOUND, f"the source of input {index} is not readable here")
        return data, _sniff(data)

    def thumb(self, index: int) -> tuple[bytes, str]:
        row = self._row(index, where_only=True)
        members = self.samples.members(row)
        ext = next((e for e in ("jpg", "png", "webp") if e in members), None)
        data = self.samples.read_member(row, ext) if ext else self._source_bytes(index, row)
        if data is None:
            raise HttpError(HTTPStatus.NOT_FOUND, f"no image for input {index}")
        try:
            return _thumb(data), "image/jpeg"
        except Exception as e:  # noqa: BLE001 - a failed row's source may be no image at all
            raise HttpError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, f"not a decodable image: {type(e).__name__}") from None

    def _source_bytes(self, index: int, row: dict[str, Any] | None = None) -> bytes | None:
        """The row's own source (uri, tar member by its recorded range); None if gone or unreadable."""
        from hoiforge.pipeline.inputs import read_input

        row = row if row and "uri" in row else self._row(index, where_only=True, source=True)
        listing = _listing_ranges(self.out)
        offset, size = listing.get(row["key"], (None, None))
        try:
            return read_input(row["uri"], row["member"], offset, size)
        except Exception:  # noqa: BLE001 - gone, moved, no credentials: all mean "not readable here"
            return None


@lru_cache(maxsize=4)
def _listing_ranges(out: Path) -> dict[str, tuple[int | None, int | None]]:
    """Byte ranges of tar-member inputs (the build's listing): key → (offset, size)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from hoiforge.datasets.layout import OutLayout

    path = OutLayout(out).listing
    if not path.exists():
        return {}
    t = pq.read_table(path, columns=["key", "member", "offset", "size"])
    t = t.filter(pc.is_valid(t.column("member")))  # only tar members need a range
    return dict(zip(t.column("key").to_pylist(), zip(t.column("offset").to_pylist(), t.column("size").to_pylist())))


@lru_cache(maxsize=1024)
def _thumb(data: bytes) -> bytes:
    return thumbnail_jpeg(data)


def _mime(ext: str) -> str:
    return mimetypes.types_map.get("." + ext.rsplit(".", 1)[-1], "application/octet-stream")


def _sniff(data: bytes) -> str:
    if data.startswith(b"\x89PNG"):
        return "image/png"
    if data.startswith(b"\xff\xd8"):
        return "image/jpeg"
    if data[8:12] == b"WEBP":
        return "image/webp"
    return "application/octet-stream"


@lru_cache(maxsize=8)
def _static(name: str) -> bytes:
    return resources.files("hoiforge.report").joinpath("static", name).read_bytes()


def make_handler(viewer: Viewer, allowed_hosts: tuple[str, ...] | None):
    class Handler(BaseHTTPRequestHandler):
        server_version = "hoiforge-view"

        def log_message(self, format: str, *args: Any) -> None:  # quiet: one line per error only
            if args and str(args[1]).startswith(("4", "5")):
                sys.stderr.write("view: %s\n" % (format % args))

        def do_GET(self) -> None:
            try:
                self._check_host()
                body, ctype = self._route()
                self._send(HTTPStatus.OK, body, ctype)
            except HttpError as e:
                self._send(e.status, json.dumps({"error": str(e)}).encode(), "application/json")
            except BrokenPipeError:
                pass
            except Exception as e:  # noqa: BLE001 - a bug must not kill the server: report it to the page
                self._send(HTTPStatus.INTERNAL_SERVER_ERROR, json.dumps({"error": f"{type(e).__name__}: {e}"}).encode(), "application/json")

        def _check_host(self) -> None:
            # Bound to loopback, refuse other Host names (DNS rebinding: a web page cannot reach us).
            if allowed_hosts is None:
                return
            host = (self.headers.get("Host") or "").rsplit(":", 1)[0].strip("[]")
            if host not in allowed_hosts:
                raise HttpError(HTTPStatus.FORBIDDEN, f"host {host!r} not allowed")

        def _route(self) -> tuple[bytes, str]:
            url = urlsplit(self.path)
            if url.path in STATIC_FILES:
                name = STATIC_FILES[url.path]
                return _static(name), _mime(name) + ("; charset=utf-8" if not name.endswith(".png") else "")
            if url.path == "/favicon.ico":
                return b"", "image/x-icon"
            if url.path == "/api/facets":
                return _json(viewer.facets())
            if url.path == "/api/samples":
                return _json(viewer.list(dict(parse_qsl(url.query))))
            m = _ROUTE.match(url.path)
            if not m:
                raise HttpError(HTTPStatus.NOT_FOUND, f"{url.path}: no such page")
            what, index, arg = m.group(1), int(m.group(2)), m.group(3)
            if what == "sample" and arg is None:
                return _json(viewer.sample(index))
            if what == "member" and arg:
                return viewer.member(index, arg)
            if what == "overlay" and arg:
                return viewer.overlay(index, arg)
            if what == "thumb" and arg is None:
                return viewer.thumb(index)
            if what == "source" and arg is None:
                return viewer.source(index)
            raise HttpError(HTTPStatus.NOT_FOUND, f"{url.path}: no such page")

        def _send(self, status: HTTPStatus, body: bytes, ctype: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store" if ctype.startswith("application/json") else "max-age=3600")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            self.wfile.write(body)

    return Handler


def _json(doc: Any) -> tuple[bytes, str]:
    return json.dumps(doc, default=str).encode(), "application/json"


def make_server(out: str | Path, host: str = "127.0.0.1", port: int = 8765) -> ThreadingHTTPServer:
    """A ready (not yet serving) server; port 0 picks a free port (``server.server_address``)."""
    viewer = Viewer(out)
    allowed = (*LOOPBACK, host) if host in LOOPBACK else None
    server = ThreadingHTTPServer((host, port), make_handler(viewer, allowed))
    server.daemon_threads = True
    return server
