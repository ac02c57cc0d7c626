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
            page.wait_for_function(f"document.querySelector('#pageinfo').dataset.total === '{len(dropped)}'")
            statuses = page.locator(".card").evaluate_all("cards => cards.map(c => c.dataset.status)")
            assert statuses == ["dropped"] * len(dropped)

            # Open the last one (the street photo): its source image and manifest row show.
            target = dropped[-1]
            page.click(f".card[data-index='{target['index']}']")
            page.wait_for_selector("#detail:not([hidden])")
            page.wait_for_function("document.querySelector('#base').complete && document.querySelector('#base').naturalWidth > 0")
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
            page.wait_for_function(f"document.querySelector('#pageinfo').dataset.total === '{len(kept)}'")
            page.click(f".card[data-index='{kept[0]['index']}']")
            page.wait_for_function("document.querySelector('#ov-pose').complete && document.querySelector('#ov-pose').naturalWidth > 0")
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
