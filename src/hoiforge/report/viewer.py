"""``hoiforge view OUT``: a local web server to browse a build's samples with overlays.

Stdlib ``ThreadingHTTPServer`` bound to 127.0.0.1 by default. JSON API:

    GET /api/facets                      distinct statuses, stages, reason classes, labels, scores
    GET /api/samples?status=&stage=&reason=&label=&split=&score=&min_score=&max_score=&page=&page_size=
    GET /api/sample/<index>              manifest row + annotation + members + wids position
    GET /api/member/<index>/<ext>        a member's bytes (random access into the shard)
    GET /api/overlay/<index>/<kind>      pose | mask | edge as a transparent PNG
    GET /api/thumb/<index>               small JPEG (the shard image, else the readable source)
    GET /api/source/<index>              the source image of a dropped/failed row, if still readable
    /audit, GET|POST /api/audit/...      audit mode only (``hoiforge audit``): report/audit_session.py

``<index>`` is the manifest's input index. No parameter reaches the filesystem except through
a manifest row: shards must be listed in index.json, sources are the row's own uri/member, and
static files come from a fixed table.

OUT may be someone else's (docs/security.md): members are served only with an allowlisted
image/text content type; a source is served only when its bytes' sha256 is the manifest's and
they open as an allowed raster format within the build's pixel limit (local files only, unless
``remote_sources``); every response carries ``Content-Security-Policy: default-src 'self'``.
Thumbnails decode within the build's pixel limit on a bounded pool of request threads, cached
by input index. Sources are regular files only (a FIFO, also as a tar holding the member, is never
opened for reading), read on their own small pool with a timeout, so no request waits on a read
forever; mask overlays draw at most as many colours as the sample has products.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import re
import sys
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, HTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from hoiforge.datasets.images import open_image
from hoiforge.report.http_error import HttpError
from hoiforge.report.overlays import OVERLAYS, overlay_png, thumbnail_jpeg
from hoiforge.report.samples import PAGE_SIZE, Query, SampleIndex

STATIC_FILES = {"/": "index.html", "/index.html": "index.html", "/app.js": "app.js", "/app.css": "app.css", "/draw.js": "draw.js"}
STATIC_FILES |= {"/audit": "audit.html", "/audit.js": "audit.js", "/audit.css": "audit.css"}  # audit mode (report/audit_session.py)
CSP = "default-src 'self'"
# What a shard member may be served as, by the last part of its extension; anything else is refused.
MEMBER_TYPES = {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp", "json": "application/json",
                "txt": "text/plain; charset=utf-8"}  # fmt: skip
# Source formats a browser shows as they are; other allowed formats are sent as a PNG rendering.
BROWSER_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif"}
REQUEST_THREADS = 8
SOURCE_READERS = 2  # threads reading sources of dropped/failed rows (files or, with --remote-sources, URLs)
SOURCE_READ_TIMEOUT = 10.0  # seconds a request waits for one source read before answering "not readable here"
THUMB_CACHE = 1024
LOOPBACK = ("127.0.0.1", "localhost", "::1")
_ROUTE = re.compile(r"^/api/(sample|member|overlay|thumb|source)/(\d+)(?:/([a-z0-9][a-z0-9._-]*))?$")


class Viewer:
    """The API over one output directory (no HTTP here, so it is testable without a socket)."""

    def __init__(self, out: str | Path, remote_sources: bool = False, read_timeout: float | None = None, audit=None):
        self.out = Path(out)
        self.audit = audit  # an audit_session.AuditSession in audit mode, else None
        self.samples = SampleIndex(out)
        self.limits = build_limits(self.out)
        self.remote_sources = remote_sources
        # Source reads run here, each awaited at most read_timeout: a read that hangs (a stalled
        # remote, a filesystem that blocks) holds one of these threads, never a request thread.
        self.read_timeout = SOURCE_READ_TIMEOUT if read_timeout is None else read_timeout
        self._readers = ThreadPoolExecutor(SOURCE_READERS, thread_name_prefix="hoiforge-view-read")
        self._thumbs: OrderedDict[int, bytes] = OrderedDict()
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
        ctype = MEMBER_TYPES.get(ext.rsplit(".", 1)[-1])
        if ctype is None:
            raise HttpError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, f".{ext} members are not served (only {', '.join(sorted(MEMBER_TYPES))})")
        data = self.samples.read_member(self._row(index, where_only=True), ext)
        if data is None:
            raise HttpError(HTTPStatus.NOT_FOUND, f"input {index} has no member .{ext} in the shards")
        return data, ctype

    def overlay(self, index: int, kind: str) -> tuple[bytes, str]:
        if kind not in OVERLAYS:
            raise HttpError(HTTPStatus.NOT_FOUND, f"overlay must be one of {sorted(OVERLAYS)}")
        data, _ = self.member(index, OVERLAYS[kind])
        max_id = None
        if kind == "mask":  # ids are products[id - 1]: the palette is bounded by the json's product count
            max_id = self._product_count(index)
        try:
            return overlay_png(kind, data, self.limits["max_pixels"], max_id), "image/png"
        except ValueError as e:
            raise HttpError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, str(e)) from None

    def _product_count(self, index: int) -> int:
        """How many products the sample's json lists (0 when it has no readable json)."""
        raw = self.samples.read_member(self._row(index, where_only=True), "json")
        try:
            products = json.loads(raw).get("products") if raw else None
        except (ValueError, AttributeError):
            return 0
        return len(products) if isinstance(products, list) else 0

    def source(self, index: int) -> tuple[bytes, str]:
        data = self._source_bytes(index)
        if data is None:
            raise HttpError(HTTPStatus.NOT_FOUND, f"the source of input {index} is not readable here")
        try:
            return browser_image(data, self.limits["max_pixels"])
        except ValueError as e:
            raise HttpError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, str(e)) from None

    def thumb(self, index: int) -> tuple[bytes, str]:
        with self._cache_lock:
            if index in self._thumbs:
                self._thumbs.move_to_end(index)
                return self._thumbs[index], "image/jpeg"
        row = self._row(index, where_only=True)
        members = self.samples.members(row)
        ext = next((e for e in ("jpg", "png", "webp") if e in members), None)
        data = self.samples.read_member(row, ext) if ext else self._source_bytes(index, row)
        if data is None:
            raise HttpError(HTTPStatus.NOT_FOUND, f"no image for input {index}")
        try:
            thumb = thumbnail_jpeg(data, max_pixels=self.limits["max_pixels"])
        except Exception as e:  # noqa: BLE001 - a failed row's source may be no image at all, or too large
            raise HttpError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, f"no thumbnail: {e}") from None
        with self._cache_lock:
            self._thumbs[index] = thumb
            while len(self._thumbs) > THUMB_CACHE:
                self._thumbs.popitem(last=False)
        return thumb, "image/jpeg"

    def _source_bytes(self, index: int, row: dict[str, Any] | None = None) -> bytes | None:
        """The row's own source, only if it is still the bytes the build read (sha256) and an allowed
        image within the build's limits; None if gone, changed, unreadable or not allowed."""
        import fsspec

        from hoiforge.pipeline.inputs import read_input
        from hoiforge.pipeline.source_read import is_local

        row = row if row and "uri" in row else self._row(index, where_only=True, source=True)
        expected = self.samples.row(index, ("sha256",))
        if not expected or not expected.get("sha256") or not row.get("uri"):
            return None  # never read by the build (not an image, unreadable): nothing to compare with
        listing = _listing_ranges(self.out)
        offset, size = listing.get(row["key"], (None, None))
        try:
            fs, _ = fsspec.core.url_to_fs(row["uri"])
            if not (is_local(fs) or self.remote_sources):
                return None
            reading = self._readers.submit(read_input, row["uri"], row["member"], offset, size, self.limits["max_bytes"])
            try:
                data = reading.result(timeout=self.read_timeout)
            finally:
                reading.cancel()  # still queued behind hung reads: never started
        except Exception:  # noqa: BLE001 - gone, moved, no credentials, too large, too slow: all mean "not readable here"
            return None
        if hashlib.sha256(data).hexdigest() != expected["sha256"]:
            return None
        try:
            with open_image(data) as img:
                w, h = img.size
        except Exception:  # noqa: BLE001 - a header Pillow cannot read: no thumbnail, never a crash
            return None
        return data if w * h <= self.limits["max_pixels"] else None


def build_limits(out: Path) -> dict[str, int]:
    """The decode limits the build ran with (OUT/_work/recipe.json), never looser than the defaults."""
    from hoiforge.stages.decode import DEFAULT_MAX_PIXELS, DecodeParams

    default_bytes = DecodeParams.model_fields["max_bytes"].default
    limits = {"max_pixels": DEFAULT_MAX_PIXELS, "max_bytes": default_bytes}
    try:
        recipe = json.loads((out / "_work" / "recipe.json").read_text())
        decode = next(s for s in recipe.get("stages", []) if s.get("stage") == "decode")
        limits["max_pixels"] = min(int(decode.get("max_pixels", DEFAULT_MAX_PIXELS)), DEFAULT_MAX_PIXELS)
        limits["max_bytes"] = min(int(decode.get("max_bytes", default_bytes)), default_bytes)
    except (OSError, ValueError, StopIteration, TypeError, AttributeError):
        pass
    return limits


def browser_image(data: bytes, max_pixels: int) -> tuple[bytes, str]:
    """Bytes a browser shows: the source itself for JPEG/PNG/WebP/GIF, else a PNG rendering of it."""
    import io

    with open_image(data) as img:
        if img.width * img.height > max_pixels:
            raise ValueError(f"{img.width}x{img.height} is above the build's pixel limit")
        if img.format in BROWSER_FORMATS:
            return data, BROWSER_FORMATS[img.format]
        buf = io.BytesIO()
        img.convert("RGBA" if "A" in img.getbands() else "RGB").save(buf, "PNG")
        return buf.getvalue(), "image/png"


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


def _mime(ext: str) -> str:
    return mimetypes.types_map.get("." + ext.rsplit(".", 1)[-1], "application/octet-stream")


@lru_cache(maxsize=8)
def _static(name: str) -> bytes:
    return resources.files("hoiforge.report").joinpath("static", name).read_bytes()


def make_handler(viewer: Viewer, allowed_hosts: tuple[str, ...] | None):
    class Handler(BaseHTTPRequestHandler):
        server_version = "hoiforge-view"
        timeout = 30  # a client that stops sending frees its pool thread

        def log_message(self, format: str, *args: Any) -> None:  # quiet: one line per error only
            if args and str(args[1]).startswith(("4", "5")):
                sys.stderr.write("view: %s\n" % (format % args))

        def do_GET(self) -> None:
            self._answer()

        def do_POST(self) -> None:
            self._answer(self._check_post)

        def _check_post(self) -> None:
            # Only audit answers are ever posted: JSON from this page's own origin (no CSRF from elsewhere).
            origin = self.headers.get("Origin")
            if origin is not None and urlsplit(origin).netloc != self.headers.get("Host"):
                raise HttpError(HTTPStatus.FORBIDDEN, "cross-origin request refused")
            if (self.headers.get("Content-Type") or "").split(";")[0].strip() != "application/json":
                raise HttpError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "send the answer as application/json")
            if not urlsplit(self.path).path.startswith("/api/audit/"):
                raise HttpError(HTTPStatus.NOT_FOUND, "nothing to post here")

        def _answer(self, check: Any = None) -> None:
            try:
                self._check_host()
                if check is not None:
                    check()
                body, ctype = self._route()
                self._send(HTTPStatus.OK, body, ctype)
            except HttpError as e:
                self._send(e.status, json.dumps({"error": str(e)}).encode(), "application/json")
            except BrokenPipeError:
                pass
            except Exception as e:  # noqa: BLE001 - a bug must not kill the server: report it to the page
                self._send(HTTPStatus.INTERNAL_SERVER_ERROR, json.dumps({"error": f"{type(e).__name__}: {e}"}).encode(), "application/json")

        def _body(self) -> bytes:
            try:
                size = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                size = -1
            if not 0 <= size <= 4096:
                raise HttpError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "an answer is at most 4096 bytes")
            return self.rfile.read(size)

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
            if url.path.startswith("/api/audit"):
                from hoiforge.report.audit_session import route

                return route(viewer, self.command, url.path, self._body() if self.command == "POST" else None)
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
            self.send_header("Content-Security-Policy", CSP)
            self.end_headers()
            self.wfile.write(body)

    return Handler


def _json(doc: Any) -> tuple[bytes, str]:
    return json.dumps(doc, default=str).encode(), "application/json"


class PooledHTTPServer(HTTPServer):
    """An HTTP server answering on a fixed pool of threads (ThreadingHTTPServer starts one per
    connection, without bound: a page of thumbnails of huge images could exhaust memory)."""

    def __init__(self, address, handler, threads: int = REQUEST_THREADS):
        super().__init__(address, handler)
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="hoiforge-view")

    def process_request(self, request, client_address) -> None:
        self.pool.submit(self._answer, request, client_address)

    def _answer(self, request, client_address) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:  # noqa: BLE001 - not an allowed raster image
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)

    def server_close(self) -> None:
        super().server_close()
        self.pool.shutdown(wait=False, cancel_futures=True)


def make_server(out: str | Path, host: str = "127.0.0.1", port: int = 8765, remote_sources: bool = False, audit=None) -> PooledHTTPServer:
    """A ready (not yet serving) server; port 0 picks a free port (``server.server_address``).
    ``audit``: an audit_session.AuditSession, served under /audit and /api/audit."""
    viewer = Viewer(out, remote_sources=remote_sources, audit=audit)
    allowed = (*LOOPBACK, host) if host in LOOPBACK else None
    return PooledHTTPServer((host, port), make_handler(viewer, allowed))
