"""Weights are pinned (sha256 per URL file, a commit per Hugging Face entry), checked after download
and again before anything loads them; a resumed download uses If-Range; ultralytics loads only
pinned .pt files."""

from __future__ import annotations

import hashlib
import http.server
import json
import sys
import threading
import types
from dataclasses import replace

import pytest

from hoiforge.errors import BackendUnavailable
from hoiforge.models.weights import digest
from hoiforge.models.weights import fetch as F
from hoiforge.models.weights import registry as W
from tests.test_fetch import FakeHub, hf_spec

A = bytes(range(256)) * 2048  # 512 KiB
B = bytes(reversed(range(256))) * 2048


@pytest.fixture(autouse=True)
def direct_network(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(var, "127.0.0.1,localhost")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_every_url_weight_and_hf_entry_is_pinned_or_says_why_not():
    for s in W.REGISTRY.values():
        if s.hf_repo:
            assert W.is_commit(s.revision) or "No commit pinned" in s.notes, s.name
        else:
            assert all(f.sha256 for f in s.files), s.name
    names = {s.name for s in W.REGISTRY.values() if not s.hf_repo}
    assert {"yolo11x", "big-lama", "laion-aesthetic-mlp", "rtmw-x-wholebody"} <= names
    assert "/raw/main/" not in W.REGISTRY["laion-aesthetic-mlp"].files[0].url  # a commit, not a branch


def test_a_file_that_is_not_the_pinned_one_never_resolves(tmp_path):
    s = W.REGISTRY["big-lama"]
    (tmp_path / s.name).mkdir()
    (tmp_path / s.name / "big-lama.pt").write_bytes(b"a TorchScript file someone swapped in")
    with pytest.raises(BackendUnavailable, match=r"big-lama\.pt has sha256 \w+, not the pinned 7ba7aa7a\w+ .*refused"):
        W.resolve("big-lama", "big-lama.pt", root=tmp_path)


def test_the_check_is_remembered_by_stamp_and_redone_when_the_file_changes(tmp_path, monkeypatch):
    s = W.REGISTRY["big-lama"]
    monkeypatch.setitem(W.REGISTRY, s.name, replace(s, files=(replace(s.files[0], sha256=sha(A)),)))
    folder = tmp_path / s.name
    folder.mkdir()
    (folder / "big-lama.pt").write_bytes(A)
    (folder / W.MANIFEST).write_text(json.dumps({"name": s.name, "files": {"big-lama.pt": {"size": len(A)}}}))
    hashed = []
    real = digest.sha256_of
    monkeypatch.setattr(digest, "sha256_of", lambda p: hashed.append(p) or real(p))
    W.resolve(s.name, root=tmp_path)
    W.resolve(s.name, root=tmp_path)
    assert len(hashed) == 1  # the second build trusts the recorded stamp
    (folder / "big-lama.pt").write_bytes(B)  # same size, other bytes, new mtime
    with pytest.raises(BackendUnavailable, match="not the pinned"):
        W.resolve(s.name, root=tmp_path)
    assert len(hashed) == 2


def test_a_hugging_face_copy_from_another_commit_is_refused(tmp_path):
    s = W.REGISTRY["dinov2-base"]
    folder = tmp_path / s.name
    for f in s.files:
        (folder / f.path).parent.mkdir(parents=True, exist_ok=True)
        (folder / f.path).write_bytes(b"w")
    (folder / W.MANIFEST).write_text(json.dumps({"name": s.name, "commit": "d" * 40, "files": {}}))
    with pytest.raises(BackendUnavailable, match=f"from commit {'d' * 40}, not the pinned {s.revision}"):
        W.resolve(s.name, root=tmp_path)


def test_fetch_refuses_a_hub_answer_for_another_commit(tmp_path):
    hub = FakeHub({"config.json": b"{}"})
    try:
        pinned = replace(hf_spec("tiny-hf", ("config.json",)), revision="b" * 40)
        with pytest.raises(F.FetchError, match=f"answered commit {FakeHub.COMMIT} for the pinned {'b' * 40}; refused"):
            F.fetch(pinned, tmp_path, endpoint=hub.endpoint)
        assert not (tmp_path / "tiny-hf" / "config.json").exists()
    finally:
        hub.httpd.shutdown()
        hub.httpd.server_close()


class ChangingFile:
    """An HTTP file with an ETag that honours Range and If-Range (RFC 9110) and can be replaced."""

    def __init__(self, data: bytes) -> None:
        self.data, self.version, self.cut_after = data, 1, None
        self.requests: list[dict] = []
        me = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                me.requests.append({"range": self.headers.get("Range"), "if_range": self.headers.get("If-Range")})
                etag = f'"v{me.version}"'
                start = 0
                if self.headers.get("Range") and self.headers.get("If-Range") in (None, etag):
                    start = int(self.headers["Range"].removeprefix("bytes=").rstrip("-"))
                body = me.data[start:]
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(me.data) - 1}/{len(me.data)}")
                self.send_header("ETag", etag)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if me.cut_after is not None:
                    body, me.cut_after = body[: me.cut_after], None
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/w.bin"


def test_a_resumed_download_of_a_file_changed_upstream_starts_over(tmp_path):
    server = ChangingFile(A)
    try:
        server.cut_after = 100_000
        with pytest.raises(F.FetchError, match="interrupted"):
            F.download_url(server.url, tmp_path / "w.bin")
        server.data, server.version = B, 2  # the publisher replaced the file meanwhile
        F.download_url(server.url, tmp_path / "w.bin")
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
    assert server.requests[1] == {"range": "bytes=100000-", "if_range": '"v1"'}
    assert (tmp_path / "w.bin").read_bytes() == B  # whole new file, not A's first 100 kB + B's rest
    assert not list(tmp_path.glob("*.part*"))


def test_ultralytics_loads_only_pinned_pt_files(tmp_path, monkeypatch):
    import hoiforge.models.ultralytics_person as U

    monkeypatch.setattr(U, "require", lambda *a, **k: None)  # ultralytics itself is not needed for the check
    monkeypatch.setitem(sys.modules, "torchvision", types.ModuleType("torchvision"))
    unknown = tmp_path / "yolo11x.pt"
    unknown.write_bytes(b"a pickle that runs code when ultralytics unpickles it")
    with pytest.raises(BackendUnavailable, match=r"unpickles \.pt files.*\(sha256 \w+\) is not pinned"):
        U.UltralyticsPersonDetector.check(model=str(unknown))
    U.UltralyticsPersonDetector.check(model=str(unknown), trusted_sha256=[sha(unknown.read_bytes())])  # pinned by the recipe
    assert W.REGISTRY["yolo11x"].files[0].sha256 in U.pinned_pt_sha256s([])
