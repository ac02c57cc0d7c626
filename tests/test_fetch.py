"""fetch: real HTTP downloads from a local server (Range resume, sha256, unpack, convert) and clean failures offline."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import re
import socket
import threading
import time
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hoiforge.models import weights as W
from hoiforge.models.cli import models_app
from hoiforge.models.fetch import ChecksumError, FetchError, download_url, fetch, verify_present

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB, not compressible to nothing, every byte position distinct mod 256
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


class FileServer:
    """http.server on 127.0.0.1 in a thread, serving in-memory files with optional Range support.

    ``cut_after``: close the connection after that many body bytes of the next response (then reset),
    ``honour_range``: False makes it answer 200 with the whole file, like servers without Range.
    ``requests``: (path, Range header) of every request, to assert what the client asked for.
    """

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.cut_after: int | None = None
        self.honour_range = True
        self.delay_s = 0.0  # before each body: makes concurrent clients overlap
        self.requests: list[tuple[str, str | None]] = []
        self.sent: list[int] = []  # body bytes sent per response
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                rng = self.headers.get("Range")
                server.requests.append((self.path, rng))
                data = server.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                m = re.fullmatch(r"bytes=(\d+)-", rng or "")
                if m and server.honour_range:
                    start = int(m.group(1))
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                time.sleep(server.delay_s)
                if server.cut_after is not None:
                    body, server.cut_after = body[: server.cut_after], None
                self.wfile.write(body)
                server.sent.append(len(body))

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"


@pytest.fixture
def server():
    s = FileServer()
    s.thread.start()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed when the block ends: nothing listens there


def url_spec(name: str, files: list[tuple[str, str, str | None]], **kw) -> W.WeightSpec:
    return W.WeightSpec(name, (("test", name),), tuple(W.WeightFile(p, u, sha) for p, u, sha in files), "MIT", 1, **kw)


def test_download_verifies_sha256_and_records_it(server, tmp_path):
    server.files["/w.bin"] = PAYLOAD
    s = url_spec("tiny", [("w.bin", server.url("/w.bin"), PAYLOAD_SHA)])
    folder = fetch(s, tmp_path)
    assert (folder / "w.bin").read_bytes() == PAYLOAD
    assert not (folder / "w.bin.part").exists()
    manifest = json.loads((folder / W.MANIFEST).read_text())
    assert manifest["files"]["w.bin"] == {"size": len(PAYLOAD), "sha256": PAYLOAD_SHA}
    assert s.missing_in(folder) == []
    # A second fetch is a no-op: nothing is requested again.
    n = len(server.requests)
    fetch(s, tmp_path)
    assert len(server.requests) == n


def test_bad_checksum_is_refused_and_discarded(server, tmp_path):
    server.files["/w.bin"] = PAYLOAD
    wrong = hashlib.sha256(b"something else").hexdigest()
    s = url_spec("tiny", [("w.bin", server.url("/w.bin"), wrong)])
    with pytest.raises(ChecksumError) as e:
        fetch(s, tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and "w.bin" in msg and PAYLOAD_SHA in msg and wrong in msg and "refused" in msg
    folder = s.local_dir(tmp_path)
    assert not (folder / "w.bin").exists() and not (folder / "w.bin.part").exists()
    assert s.missing_in(folder) == ["w.bin"]


def test_interrupted_download_resumes_with_range(server, tmp_path):
    server.files["/big.bin"] = PAYLOAD
    server.cut_after = 300_000
    dest = tmp_path / "big.bin"
    with pytest.raises(FetchError, match="interrupted.*resume"):
        download_url(server.url("/big.bin"), dest, PAYLOAD_SHA)
    part = tmp_path / "big.bin.part"
    assert part.stat().st_size == 300_000 and not dest.exists()

    assert download_url(server.url("/big.bin"), dest, PAYLOAD_SHA) == PAYLOAD_SHA
    assert server.requests[-1] == ("/big.bin", "bytes=300000-")
    assert server.sent[-1] == len(PAYLOAD) - 300_000  # only the rest travelled
    assert dest.read_bytes() == PAYLOAD and not part.exists()


def test_complete_part_is_finished_without_body(server, tmp_path):
    server.files["/w.bin"] = PAYLOAD
    (tmp_path / "w.bin.part").write_bytes(PAYLOAD)  # e.g. killed between download and rename
    download_url(server.url("/w.bin"), tmp_path / "w.bin", PAYLOAD_SHA)
    assert server.requests[-1][1] == f"bytes={len(PAYLOAD)}-"  # answered 416: nothing left to send
    assert (tmp_path / "w.bin").read_bytes() == PAYLOAD


def test_server_without_range_restarts_from_zero(server, tmp_path):
    server.files["/w.bin"] = PAYLOAD
    server.honour_range = False
    (tmp_path / "w.bin.part").write_bytes(b"\xff" * 1000)  # a stale prefix that must not be kept
    download_url(server.url("/w.bin"), tmp_path / "w.bin", PAYLOAD_SHA)
    assert (tmp_path / "w.bin").read_bytes() == PAYLOAD


def test_corrupt_part_is_not_kept_for_resume(server, tmp_path):
    server.files["/w.bin"] = PAYLOAD
    (tmp_path / "w.bin.part").write_bytes(b"\x00" * 1000)  # wrong bytes; resume appends the true rest
    with pytest.raises(ChecksumError):
        download_url(server.url("/w.bin"), tmp_path / "w.bin", PAYLOAD_SHA)
    assert not (tmp_path / "w.bin.part").exists()  # so the next attempt starts clean ...
    download_url(server.url("/w.bin"), tmp_path / "w.bin", PAYLOAD_SHA)  # ... and succeeds
    assert (tmp_path / "w.bin").read_bytes() == PAYLOAD


def test_http_error_is_one_line(server, tmp_path):
    with pytest.raises(FetchError) as e:
        download_url(server.url("/absent.bin"), tmp_path / "absent.bin")
    assert str(e.value).endswith("HTTP 404 Not Found") and "\n" not in str(e.value)


def test_no_network_fails_cleanly(tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/w.bin"
    started = time.monotonic()
    with pytest.raises(FetchError) as e:
        fetch(url_spec("tiny", [("w.bin", url, None)]), tmp_path)
    assert time.monotonic() - started < 10
    msg = str(e.value)
    assert msg.startswith("cannot download w.bin from 127.0.0.1") and "no network" in msg and "\n" not in msg


def test_hf_unreachable_fails_cleanly(tmp_path):
    s = W.REGISTRY["rtdetr-r50vd-coco-o365"]
    with pytest.raises(FetchError) as e:
        fetch(s, tmp_path, endpoint=f"http://127.0.0.1:{closed_port()}")
    msg = str(e.value)
    assert msg.startswith("cannot download PekingU/rtdetr_r50vd_coco_o365") and "\n" not in msg


def test_hf_hub_offline_is_honoured(tmp_path, monkeypatch, server):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FetchError, match="HF_HUB_OFFLINE is set"):
        fetch(W.REGISTRY["dinov2-base"], tmp_path)
    server.files["/w.bin"] = PAYLOAD
    with pytest.raises(FetchError, match="HF_HUB_OFFLINE is set"):
        fetch(url_spec("tiny", [("w.bin", server.url("/w.bin"), None)]), tmp_path)
    assert server.requests == []  # offline means no request at all


def test_archives_are_unpacked(server, tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("rtmw/end2end.onnx", b"onnx bytes")
    server.files["/m.zip"] = buf.getvalue()
    s = W.WeightSpec("zipped", (("pose", "x"),), (W.WeightFile("m.zip", server.url("/m.zip"), unpack=True),), "MIT", 1)
    folder = fetch(s, tmp_path)
    assert (folder / "rtmw" / "end2end.onnx").read_bytes() == b"onnx bytes"
    assert (folder / "m.zip").is_file() and not list(folder.glob("*.verified*"))


def test_fetch_runs_the_converter(server, tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file

    from hoiforge.models.convert_aesthetic import build_mlp

    state = build_mlp().state_dict()
    buf = io.BytesIO()
    torch.save(state, buf)
    server.files["/mlp.pth"] = buf.getvalue()
    laion = W.REGISTRY["laion-aesthetic-mlp"]
    s = replace(laion, files=(replace(laion.files[0], url=server.url("/mlp.pth")),))
    folder = fetch(s, tmp_path)
    converted = load_file(str(folder / laion.converted))
    assert set(converted) == set(state) and all(torch.equal(converted[k], state[k]) for k in state)
    assert s.missing_in(folder) == []


def test_verify_present_catches_later_corruption(server, tmp_path):
    server.files["/w.bin"] = PAYLOAD
    s = url_spec("tiny", [("w.bin", server.url("/w.bin"), None)])  # no publisher sha: fetch's record is used
    folder = fetch(s, tmp_path)
    assert verify_present(s, folder) == []
    data = bytearray(PAYLOAD)
    data[12345] ^= 0xFF  # same size, one flipped byte: only hashing sees it
    (folder / "w.bin").write_bytes(bytes(data))
    problems = verify_present(s, folder)
    assert len(problems) == 1 and "does not match" in problems[0]


def test_concurrent_fetches_of_one_entry_download_once(server, tmp_path):
    # Two nodes running `hoiforge models fetch` against one shared folder at the same time.
    server.files["/w.bin"] = PAYLOAD
    server.delay_s = 0.5
    s = url_spec("tiny", [("w.bin", server.url("/w.bin"), PAYLOAD_SHA)])
    results, errors = [], []

    def run() -> None:
        try:
            results.append(fetch(s, tmp_path))
        except Exception as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    assert errors == [] and len(results) == 2
    assert server.requests == [("/w.bin", None)]
    assert (results[0] / "w.bin").read_bytes() == PAYLOAD


def test_cli_fetch_without_network_is_one_line(tmp_path, monkeypatch):
    url = f"http://127.0.0.1:{closed_port()}/yolo11x.pt"
    entry = W.REGISTRY["yolo11x"]
    monkeypatch.setitem(W.REGISTRY, "yolo11x", replace(entry, files=(replace(entry.files[0], url=url),)))
    result = CliRunner().invoke(models_app, ["fetch", "yolo11x", "--to", str(tmp_path)])
    assert result.exit_code == 1
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "cannot download yolo11x.pt" in lines[0]
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)


def test_cli_fetch_unknown_name(tmp_path):
    result = CliRunner().invoke(models_app, ["fetch", "no-such-model", "--to", str(tmp_path)])
    assert result.exit_code == 1 and "unknown weights 'no-such-model'" in result.stderr
