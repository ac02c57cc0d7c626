"""The sample viewer: its JSON API on a real small build, then end to end in headless Chromium.

The browser test needs Debian's chromium and Python's playwright (scripts/install_browser.sh);
it is skipped, saying so, only where they cannot be installed. Screenshots are written to
$HOIFORGE_SCREENSHOTS (default: the test's tmp dir) for a person to look at.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from hoiforge.datasets.reader import read_sample
from hoiforge.report.samples import SampleIndex
from hoiforge.report.viewer import make_server
from tests.report_build import small_build

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("HOIFORGE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def built(ray_local, tmp_path_factory) -> Path:
    return small_build(tmp_path_factory.mktemp("viewer-build"))


@pytest.fixture(scope="module")
def server(built):
    srv = make_server(built, "127.0.0.1", 0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module")
def rows(built) -> list[dict]:
    return pq.read_table(built / "manifest.parquet").to_pylist()


def get(url: str, headers: dict | None = None) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {})) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def get_json(url: str):
    status, body = get(url)
    assert status == 200, body
    return json.loads(body)


def test_listing_filters_and_pages_match_the_manifest(server, rows):
    for status in ("kept", "dropped", "failed"):
        doc = get_json(f"{server}/api/samples?status={status}")
        assert doc["total"] == sum(r["status"] == status for r in rows)
        assert {r["status"] for r in doc["rows"]} <= {status}
    person = get_json(f"{server}/api/samples?stage=person&reason=persons")
    assert sorted(r["index"] for r in person["rows"]) == sorted(r["index"] for r in rows if r["stage"] == "person")
    # Paging two at a time visits every input exactly once, in input order.
    seen, page = [], 0
    while True:
        doc = get_json(f"{server}/api/samples?page={page}&page_size=2")
        seen += [r["index"] for r in doc["rows"]]
        page += 1
        if page >= doc["pages"]:
            break
    assert seen == sorted(r["index"] for r in rows)
    facets = get_json(f"{server}/api/facets")
    assert facets["status"] == {s: sum(r["status"] == s for r in rows) for s in {r["status"] for r in rows}}


@pytest.mark.filterwarnings("ignore:String specifications for transformations are deprecated")
def test_members_by_random_access_equal_the_tar_and_wids(server, built, rows):
    import wids

    dataset = wids.ShardListDataset(str(built / "index.json"))
    for row in (r for r in rows if r["status"] == "kept"):
        sample = get_json(f"{server}/api/sample/{row['index']}")
        in_tar = read_sample(built, row["shard"], row["id"])
        assert sample["members"] == {ext: len(data) for ext, data in in_tar.items()}
        assert "pose" in sample["overlays"] and "edge" in sample["overlays"]
        for ext, data in in_tar.items():
            assert get(f"{server}/api/member/{row['index']}/{ext}") == (200, data)
        # The viewer's wids position is where a trainer's ShardListDataset finds the same sample.
        assert dataset[sample["wids_index"]]["__key__"] == row["id"]
        # Overlays: transparent exactly where the rendered skeleton is black.
        status, png = get(f"{server}/api/overlay/{row['index']}/pose")
        alpha = np.asarray(Image.open(io.BytesIO(png)))[..., 3]
        drawn = np.asarray(Image.open(io.BytesIO(in_tar["pose.png"])).convert("RGB")).max(axis=2) > 0
        assert status == 200 and drawn.any() and np.array_equal(alpha > 0, drawn)


def test_dropped_rows_show_their_source_and_nothing_else(server, rows):
    dropped = [r for r in rows if r["status"] == "dropped"]
    for row in dropped:
        sample = get_json(f"{server}/api/sample/{row['index']}")
        assert sample["manifest"]["reason"] == row["reason"] and sample["members"] == {} and sample["source_readable"]
        assert get(f"{server}/api/source/{row['index']}") == (200, Path(row["uri"]).read_bytes())
        assert get(f"{server}/api/member/{row['index']}/png")[0] == 404
    failed = next(r for r in rows if r["status"] == "failed")
    assert get(f"{server}/api/thumb/{failed['index']}")[0] in (404, 415)  # zero bytes: no image, no crash
    kept = next(r for r in rows if r["status"] == "kept")
    assert get(f"{server}/api/source/{kept['index']}") == (200, Path(kept["uri"]).read_bytes())  # the original, before cleanup
    assert get(f"{server}/api/sample/999999")[0] == 404


def test_no_request_reaches_files_outside_manifest_rows(server, built, rows):
    kept = next(r for r in rows if r["status"] == "kept")
    for path in (
        f"/api/member/{kept['index']}/..%2f..%2fmanifest.parquet",
        "/api/member/x/png",
        "/../manifest.parquet",
        "/static/../viewer.py",
        "/api/source/..%2fetc",
    ):
        status, _ = get(server + path)
        assert status == 404, path
    assert get(f"{server}/api/facets", {"Host": "attacker.example:80"})[0] == 403  # DNS rebinding
    index = SampleIndex(built)
    for url in ("shards/../manifest.parquet", "/etc/passwd", "shards/train-999999.tar"):
        with pytest.raises(KeyError):
            index._shard_path(url)


def wait_js(page, expression: str, timeout: float = 15) -> None:
    """Wait until ``expression`` is true in the page. Playwright's wait_for_function evaluates a
    string with eval, which the viewer's Content-Security-Policy (rightly) forbids."""
    import time

    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"timed out waiting for {expression}"
        time.sleep(0.05)


def _browser():
    """A headless Chromium via Playwright, or a skip that says what is missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed: run scripts/install_browser.sh")
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        pytest.skip(f"no Chromium at {CHROMIUM}: run scripts/install_browser.sh (apt-get install chromium)")
    return sync_playwright


def test_browser_filter_dropped_open_toggle_pose_screenshot(server, rows, tmp_path):
    sync_playwright = _browser()
    shots = Path(os.environ.get("HOIFORGE_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    dropped = [r for r in rows if r["status"] == "dropped"]
    kept = [r for r in rows if r["status"] == "kept"]
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 950})
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(server + "/")
            page.wait_for_selector(".card")
            assert page.locator(".card").count() == len(rows)

            # Filter to dropped samples.
            page.select_option("#f-status", "dropped")
            wait_js(page, f"document.querySelector('#pageinfo').dataset.total === '{len(dropped)}'")
            statuses = page.locator(".card").evaluate_all("cards => cards.map(c => c.dataset.status)")
            assert statuses == ["dropped"] * len(dropped)

            # Open the last one (the street photo): its source image and manifest row show.
            target = dropped[-1]
            page.click(f".card[data-index='{target['index']}']")
            page.wait_for_selector("#detail:not([hidden])")
            wait_js(page, "document.querySelector('#base').complete && document.querySelector('#base').naturalWidth > 0")
            assert page.eval_on_selector("#base", "i => [i.naturalWidth, i.naturalHeight]") == [target["m.width"], target["m.height"]]
            assert target["reason"] in page.inner_text("#row")
            assert page.is_hidden("#grid")

            # Toggle the pose overlay: a dropped sample has none, and the page says why.
            page.check("#t-pose")
            notes = page.inner_text("#notes")
            assert f"dropped at {target['stage']}: {target['reason']}" in notes
            assert re.search(r"Not available \(dropped at \w+, so nothing of it is in the shards\): pose overlay", notes), notes
            page.screenshot(path=str(shots / "viewer-dropped-pose.png"), full_page=False)

            # The same toggle on a kept sample draws the skeleton over the photo.
            page.click("#close")
            page.select_option("#f-status", "kept")
            wait_js(page, f"document.querySelector('#pageinfo').dataset.total === '{len(kept)}'")
            page.click(f".card[data-index='{kept[0]['index']}']")
            wait_js(page, "document.querySelector('#ov-pose').complete && document.querySelector('#ov-pose').naturalWidth > 0")
            assert page.eval_on_selector("#ov-pose", "i => [i.naturalWidth, getComputedStyle(i).opacity]") == [kept[0]["m.width"], "1"]
            page.wait_for_timeout(200)  # the CSS opacity transition
            with_pose = page.locator("#stack").screenshot()
            page.uncheck("#t-pose")
            page.wait_for_timeout(200)
            without_pose = page.locator("#stack").screenshot()
            page.check("#t-pose")
            page.wait_for_timeout(200)
            page.screenshot(path=str(shots / "viewer-kept-pose.png"), full_page=False)
        finally:
            browser.close()
    assert not errors, errors
    a = np.asarray(Image.open(io.BytesIO(with_pose)).convert("RGB"), dtype=np.int16)
    b = np.asarray(Image.open(io.BytesIO(without_pose)).convert("RGB"), dtype=np.int16)
    assert a.shape == b.shape
    changed = (np.abs(a - b).max(axis=2) > 40).mean()
    assert changed > 0.002, f"pose overlay changed only {changed:.4%} of the pixels"
    assert (shots / "viewer-dropped-pose.png").stat().st_size > 10_000


# -- an OUT received from someone else ---------------------------------------------------------


@pytest.fixture(scope="module")
def crafted(tmp_path_factory):
    from tests.crafted_out import crafted_out

    out, rows = crafted_out(tmp_path_factory.mktemp("crafted"))
    srv = make_server(out, "127.0.0.1", 0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", out, rows
    srv.shutdown()
    srv.server_close()


def head(url: str) -> dict[str, str]:
    try:
        with urllib.request.urlopen(url) as r:
            return dict(r.headers)
    except urllib.error.HTTPError as e:
        return dict(e.headers)


def test_crafted_out_serves_no_file_and_no_type_it_must_not(crafted):
    from tests.crafted_out import SECRET

    server, _out, rows = crafted
    secret = SECRET.read_bytes()
    for path in ("/", "/app.js", f"/api/sample/{rows['passwd']}", f"/api/source/{rows['passwd']}", "/api/facets"):
        assert head(server + path)["Content-Security-Policy"] == "default-src 'self'", path
    # /etc/passwd, named by a row with its true sha256: read, but not an image, so never served.
    assert get(f"{server}/api/source/{rows['passwd']}")[0] == 404
    assert get_json(f"{server}/api/sample/{rows['passwd']}")["source_readable"] is False
    # A row whose file is no longer the bytes the build read (sha256 differs): not served either.
    assert get(f"{server}/api/source/{rows['swapped']}")[0] == 404
    for index in rows.values():
        for path in (f"/api/source/{index}", f"/api/thumb/{index}", f"/api/sample/{index}"):
            assert secret not in get(server + path)[1]
    # Members only as allowlisted image/text types.
    assert get(f"{server}/api/member/{rows['kept']}/html")[0] == 415
    assert get(f"{server}/api/member/{rows['kept']}/svg")[0] == 415
    status, _body = get(f"{server}/api/member/{rows['kept']}/txt")
    assert status == 200 and head(f"{server}/api/member/{rows['kept']}/txt")["Content-Type"] == "text/plain; charset=utf-8"
    assert head(f"{server}/api/member/{rows['kept']}/png")["Content-Type"] == "image/png"
    # A source above the build's pixel limit (1 MP in its recipe) is neither thumbnailed nor served.
    assert get(f"{server}/api/thumb/{rows['big']}")[0] == 404
    assert get(f"{server}/api/source/{rows['big']}")[0] == 404
    assert get_json(f"{server}/api/sample/{rows['big']}")["source_readable"] is False


def test_thumbnails_respect_the_builds_limit_are_cached_by_index_and_the_pool_is_bounded(crafted, monkeypatch):
    from hoiforge.report import viewer as viewer_module
    from hoiforge.report.viewer import Viewer

    _, out, rows = crafted
    v = Viewer(out)
    assert v.limits == {"max_pixels": 1_000_000, "max_bytes": 10_000_000}
    decoded = []
    real = viewer_module.thumbnail_jpeg
    monkeypatch.setattr(viewer_module, "thumbnail_jpeg", lambda data, **kw: decoded.append(len(data)) or real(data, **kw))
    first, _ = v.thumb(rows["kept"])
    again, _ = v.thumb(rows["kept"])
    assert first == again and len(decoded) == 1 and list(v._thumbs) == [rows["kept"]]
    # Above the limit, a thumbnail is refused from the header alone (before any pixel is decoded).
    big = (out.parent / "sources" / "big.png").read_bytes()
    with pytest.raises(ValueError, match="2000x1500 = 3.0 MP is above the build's pixel limit"):
        real(big, max_pixels=v.limits["max_pixels"])

    # The server answers on a fixed pool: 24 slow requests at once never run more than its threads.
    active, peak, lock = [0], [0], threading.Lock()

    def slow_facets(self):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        import time

        time.sleep(0.2)
        with lock:
            active[0] -= 1
        return {}

    monkeypatch.setattr(Viewer, "facets", slow_facets)
    srv = make_server(out, "127.0.0.1", 0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}/api/facets"
        clients = [threading.Thread(target=get, args=(url,)) for _ in range(24)]
        for c in clients:
            c.start()
        for c in clients:
            c.join(30)
    finally:
        srv.shutdown()
        srv.server_close()
    from hoiforge.report.viewer import REQUEST_THREADS

    assert 1 < peak[0] <= REQUEST_THREADS


def test_browser_crafted_out_cannot_script_the_page_or_show_local_files(crafted, tmp_path):
    from tests.crafted_out import SCRIPT_REASON, SCRIPT_STAGE, SCRIPT_STATUS, SECRET

    sync_playwright = _browser()
    server, _, rows = crafted
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(server + "/")
            page.wait_for_selector(".card")
            assert page.locator(".card").count() == len(rows)
            grid = page.inner_text("#grid")
            assert SCRIPT_REASON in grid and SCRIPT_STAGE in grid and SCRIPT_STATUS in grid  # shown as text
            page.click(f".card[data-index='{rows['passwd']}']")
            page.wait_for_selector("#detail:not([hidden])")
            assert SCRIPT_REASON in page.inner_text("#row") and SCRIPT_REASON in page.inner_text("#notes")
            page.click("#close")
            page.click(f".card[data-index='{rows['kept']}']")
            wait_js(page, "document.querySelector('#base').complete && document.querySelector('#base').naturalWidth > 0")
            assert SCRIPT_STAGE in page.inner_text("#caption")
            # A member of a type the browser would run, opened directly: refused, nothing runs.
            page.goto(f"{server}/api/member/{rows['kept']}/html")
            page.goto(server + "/")
            page.wait_for_selector(".card")
            page.wait_for_timeout(300)  # let every thumbnail load or fail
            pwned = page.evaluate("window.__pwned === undefined ? null : window.__pwned")
            content = page.content()
            page.screenshot(path=str(tmp_path / "viewer-crafted.png"))
        finally:
            browser.close()
    assert pwned is None, f"markup from the OUT ran as script ({pwned})"
    assert SECRET.read_text().splitlines()[0] not in content
    assert not errors, errors
