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

import pytest
from typer.testing import CliRunner

from hoiforge.cli.models import models_app
from hoiforge.models.weights import registry as W
from hoiforge.models.weights.fetch import ChecksumError, FetchError, download_url, fetch, verify_present

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
            def do_GET(self) -> None:
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
                # Recorded before writing: the client may finish reading before this thread resumes.
                server.sent.append(len(body))
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"


@pytest.fixture(autouse=True)
def direct_network(monkeypatch):
    """Downloads allowed and straight to 127.0.0.1 whatever the CI environment sets."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv(W.WEIGHTS_ENV, raising=False)
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(var, "127.0.0.1,localhost")


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
    return W.WeightSpec(name, (W.Use("test", name),), tuple(W.WeightFile(p, u, sha) for p, u, sha in files), "MIT", 1, **kw)


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


class FakeHub:
    """The few Hugging Face Hub routes huggingface_hub uses to download files of one repo at one commit."""

    COMMIT = "c" * 40
    REPO = "org/tiny"

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files, self.requests = files, []
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self, body_too: bool) -> None:
                path = self.path.split("?")[0]
                hub.requests.append((self.command, path))
                headers, body, code = {}, b"", 404
                if re.fullmatch(rf"/api/models/{hub.REPO}/revision/[^/]+", path):
                    code, body = (
                        200,
                        json.dumps({"id": hub.REPO, "sha": hub.COMMIT, "siblings": [{"rfilename": f} for f in hub.files]}).encode(),
                    )
                elif m := re.fullmatch(rf"/{hub.REPO}/resolve/{hub.COMMIT}/(.+)", path):
                    if m.group(1) in hub.files:
                        code, body = 200, hub.files[m.group(1)]
                        headers = {"X-Repo-Commit": hub.COMMIT, "ETag": f'"{hashlib.sha256(body).hexdigest()}"'}
                    else:
                        headers = {"X-Error-Code": "EntryNotFound"}
                self.send_response(code)
                for k, v in {**headers, "Content-Length": str(len(body))}.items():
                    self.send_header(k, v)
                self.end_headers()
                if body_too:
                    self.wfile.write(body)

            def do_GET(self) -> None:
                self._answer(True)

            def do_HEAD(self) -> None:
                self._answer(False)

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.endpoint = f"http://127.0.0.1:{self.httpd.server_address[1]}"


@pytest.fixture
def hub():
    h = FakeHub({"config.json": b'{"a": 1}', "model.safetensors": PAYLOAD, "pytorch_model.bin": b"not wanted"})
    yield h
    h.httpd.shutdown()
    h.httpd.server_close()


def hf_spec(name: str, files: tuple[str, ...]) -> W.WeightSpec:
    return W.WeightSpec(
        name, (W.Use("test", name),), tuple(W.WeightFile(f) for f in files), "MIT", 1, hf_repo=FakeHub.REPO, revision="main"
    )


def test_hf_fetch_pins_one_commit_and_takes_only_listed_files(hub, tmp_path):
    s = hf_spec("tiny-hf", ("config.json", "model.safetensors"))
    folder = fetch(s, tmp_path, endpoint=hub.endpoint)
    assert (folder / "model.safetensors").read_bytes() == PAYLOAD and not (folder / "pytorch_model.bin").exists()
    manifest = json.loads((folder / W.MANIFEST).read_text())
    assert manifest["commit"] == FakeHub.COMMIT and manifest["files"]["model.safetensors"]["sha256"] == PAYLOAD_SHA
    downloads = [p for c, p in hub.requests if c == "GET" and "/resolve/" in p]
    assert downloads == [f"/{FakeHub.REPO}/resolve/{FakeHub.COMMIT}/{f}" for f in ("config.json", "model.safetensors")]
    assert s.missing_in(folder) == []
    n = len(hub.requests)
    fetch(s, tmp_path, endpoint=hub.endpoint)  # present: no request at all (works offline)
    assert len(hub.requests) == n


def test_hf_entry_naming_a_file_the_repo_lacks(hub, tmp_path):
    with pytest.raises(FetchError) as e:
        fetch(hf_spec("tiny-hf", ("config.json", "model.onnx")), tmp_path, endpoint=hub.endpoint)
    assert str(e.value) == f"{FakeHub.REPO}@{FakeHub.COMMIT} has no model.onnx; the registry entry 'tiny-hf' needs updating"


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


def served(entry: W.WeightSpec, server: FileServer, data: bytes) -> W.WeightSpec:
    """``entry`` with its (single) file served by the local server (stand-in bytes: the pin is dropped)."""
    server.files["/" + entry.files[0].path] = data
    return replace(entry, files=(replace(entry.files[0], url=server.url("/" + entry.files[0].path), sha256=None),))


def onnx_sdk_zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def test_onnx_zip_is_extracted_under_a_stable_name(server, tmp_path):
    rtmw = W.REGISTRY["rtmw-x-wholebody"]
    data = onnx_sdk_zip({"20230925/rtmw-x/end2end.onnx": b"onnx graph", "20230925/rtmw-x/pipeline.json": b"{}"})
    s = served(rtmw, server, data)
    fetch(s, tmp_path)
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(W.REGISTRY, rtmw.name, s)  # resolve checks the registry's pins: these stand-in bytes have none
        assert W.resolve(rtmw.name, rtmw.converted, root=tmp_path).read_bytes() == b"onnx graph"


def test_converter_refusal_is_one_line(server, tmp_path):
    rtmw = W.REGISTRY["rtmw-x-wholebody"]
    with pytest.raises(FetchError) as e:
        fetch(served(rtmw, server, onnx_sdk_zip({"x/model.onnx": b"?"})), tmp_path)
    assert str(e.value) == (f"rtmw-x-wholebody: hoiforge.models.weights.convert_onnx_zip could not convert {rtmw.files[0].path}: "
                            f"ConversionError: {rtmw.files[0].path}: expected one end2end.onnx, found 0")  # fmt: skip
    assert rtmw.missing_in(tmp_path / rtmw.name) == [rtmw.converted]


def test_fetch_runs_the_converter(server, tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file

    from hoiforge.models.weights.convert_aesthetic import build_mlp

    state = build_mlp().state_dict()
    buf = io.BytesIO()
    torch.save(state, buf)
    laion = W.REGISTRY["laion-aesthetic-mlp"]
    s = served(laion, server, buf.getvalue())
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
    assert result.exit_code == 2
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "cannot download yolo11x.pt" in lines[0]
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)


def test_cli_fetch_unknown_name(tmp_path):
    result = CliRunner().invoke(models_app, ["fetch", "no-such-model", "--to", str(tmp_path)])
    assert result.exit_code == 2 and "unknown weights 'no-such-model'" in result.stderr
