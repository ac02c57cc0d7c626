"""``hoiforge audit``: the statistics against known values, the seeded sample, the answer file as
untrusted input, the HTTP rules for marks, and (slow) a review by key presses in Chromium whose
figures show up in the report."""

from __future__ import annotations

import json
import os
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hoiforge.report.audit import (
    STAGES,
    AnswerStore,
    AuditError,
    _stratified,
    audit_figures,
    cohen_kappa,
    draw_sample,
    read_answers,
    stage_summary,
    wilson,
)

# ---------------------------------------------------------------------------------- statistics


@pytest.mark.parametrize(
    ("x", "n", "lo", "hi"),
    [
        (8, 10, 0.4902, 0.9433),  # worked by hand from Wilson (1927) eq.: centre 0.7167, half-width 0.2266
        (0, 10, 0.0, 0.2775),  # all wrong: upper bound z^2 / (n + z^2)
        (10, 10, 0.7225, 1.0),
        (81, 263, 0.2553, 0.3662),  # Newcombe (1998): 81/263 -> 0.2553-0.3662
        (1, 29, 0.0061, 0.1718),  # Newcombe (1998): 1/29 -> 0.0061-0.1718
    ],
)
def test_wilson_interval_matches_published_values(x, n, lo, hi):
    got = wilson(x, n)
    assert got == pytest.approx((lo, hi), abs=5e-5)


def test_wilson_without_data_is_the_whole_range():
    assert wilson(0, 0) == (0.0, 1.0)


def test_cohen_kappa_matches_known_values():
    # Cohen's classic 2x2 example (Wikipedia "Cohen's kappa"): 20 yes/yes, 5 yes/no, 10 no/yes, 15 no/no -> 0.4.
    a = ["y"] * 25 + ["n"] * 25
    b = ["y"] * 20 + ["n"] * 5 + ["y"] * 10 + ["n"] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    # Second example there: 45 / 15 / 25 / 15 -> po 0.60, pe 0.54, kappa 0.1304.
    a = ["y"] * 60 + ["n"] * 40
    b = ["y"] * 45 + ["n"] * 15 + ["y"] * 25 + ["n"] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.06 / 0.46)
    assert cohen_kappa(["c", "w", "c"], ["c", "w", "c"]) == 1.0
    assert cohen_kappa(["c", "w"], ["w", "c"]) == -1.0
    assert cohen_kappa(["c"] * 5, ["c"] * 5) is None  # one label only: chance agreement 1, undefined
    with pytest.raises(ValueError):
        cohen_kappa(["c"], ["c", "w"])


def test_stratified_draw_is_proportional_seeded_and_without_repeats():
    rows = list(range(1000))
    strata = [0] * 500 + [1] * 300 + [2] * 150 + [5] * 50
    a = _stratified(rows, strata, 100, np.random.default_rng(3))
    b = _stratified(rows, strata, 100, np.random.default_rng(3))
    c = _stratified(rows, strata, 100, np.random.default_rng(4))
    assert a == b and a != c and len(set(a)) == 100
    by = {s: sum(strata[r] == s for r in a) for s in (0, 1, 2, 5)}
    assert by == {0: 50, 1: 30, 2: 15, 5: 5}
    assert sorted(_stratified(rows[:7], strata[:7], 100, np.random.default_rng(0))) == rows[:7]  # fewer than n: all


# ---------------------------------------------------------------------------------- a small OUT


def _out(root: Path, kept: int = 20, dropped: int = 6) -> Path:
    """A manifest-only OUT (enough for sampling and statistics; the browser test uses a real build)."""
    out = root / "out"
    (out / "_work").mkdir(parents=True)
    n = kept + dropped
    pq.write_table(
        pa.table(
            {
                "index": list(range(n)),
                "id": [f"id{i:04d}" for i in range(n)],
                "status": ["kept"] * kept + ["dropped"] * dropped,
                "stage": [None] * kept + ["person"] * dropped,
                "reason": [None] * kept + ["0 persons"] * dropped,
                "split": ["train"] * (kept - 4) + ["test"] * 4 + [None] * dropped,
                "m.persons": [1 + i % 3 for i in range(kept)] + [None] * dropped,
            }
        ),
        out / "manifest.parquet",
    )
    (out / "_work" / "recipe.json").write_text(json.dumps({"stages": [{"stage": "decode"}, {"stage": "person"}]}))
    return out


def test_sample_is_seeded_split_aware_and_refuses_what_the_build_lacks(tmp_path):
    out = _out(tmp_path)
    a = draw_sample(out, "person", n=6, seed=1)
    assert a == draw_sample(out, "person", n=6, seed=1)
    assert [i["index"] for i in a["items"]] != [i["index"] for i in draw_sample(out, "person", n=6, seed=2)["items"]]
    assert {i["status"] for i in a["items"]} == {"kept"} and a["stratified_by"] == "persons" and "stratified by persons" in a["how"]
    # --dropped adds the stage's drops without changing the kept draw.
    d = draw_sample(out, "person", n=6, seed=1, dropped=True)
    assert [i for i in d["items"] if i["status"] == "kept"] == a["items"]
    assert sum(i["status"] == "dropped" for i in d["items"]) == 6 and d["population"] == {"kept": 20, "dropped": 6}
    assert {i["split"] for i in draw_sample(out, "person", n=50, split="test")["items"]} == {"test"}
    with pytest.raises(AuditError, match="built without the products stage"):
        draw_sample(out, "products")
    with pytest.raises(AuditError, match="unknown audit stage"):
        draw_sample(out, "nonsense")
    with pytest.raises(AuditError, match="reviewer name"):
        AnswerStore(out, "person", 0, "<b>x</b>")


def test_summary_precision_estimate_and_two_reviewers_kappa(tmp_path):
    out = _out(tmp_path)
    items = {i["index"]: i for i in draw_sample(out, "person", n=10, seed=0, dropped=True)["items"]}
    kept = [i for i in items.values() if i["status"] == "kept"]
    ann = AnswerStore(out, "person", 0, "ann")
    bob = AnswerStore(out, "person", 0, "bob")
    verdicts_ann = ["correct"] * 7 + ["wrong", "wrong", "skip"]
    verdicts_bob = ["correct"] * 6 + ["wrong", "wrong", "wrong", "correct"]
    for it, va, vb in zip(kept, verdicts_ann, verdicts_bob, strict=True):
        ann.mark(it, va, "person missed" if va == "wrong" else None)
        bob.mark(it, vb)
    ann.mark(kept[0], "wrong", "box off the person")  # a changed mind: the last mark counts
    ann.mark(kept[0], "correct")
    drop = next(i for i in items.values() if i["status"] == "dropped")
    ann.mark(drop, "wrong")
    s = stage_summary(out, "person")
    k = s["kept"]
    # Per sample, the majority of its reviewers, a tie counted wrong: 6 both correct, #6 tie, 2 both wrong,
    # #9 ann skipped and bob correct -> correct. So 7 correct of 10.
    assert (k["reviewed"], k["correct"], k["wrong"]) == (10, 7, 3)
    assert k["precision"] == pytest.approx(0.7) and k["wilson95"] == pytest.approx(list(wilson(7, 10)))
    assert k["estimated_wrong"] == 6 and k["population"] == 20  # 20 kept x 0.3
    lo, hi = wilson(7, 10)
    assert k["estimated_wrong95"] == [int(np.floor(20 * (1 - hi))), int(np.ceil(20 * (1 - lo)))]
    assert k["reasons"] == {"person missed": 2, "(no reason given)": 3}
    (pair,) = k["agreement"]
    a_labels = ["correct"] * 7 + ["wrong", "wrong"]  # both answered 9 (ann skipped one)
    b_labels = ["correct"] * 6 + ["wrong", "wrong", "wrong"]
    assert pair["reviewers"] == ["ann", "bob"] and pair["both_answered"] == 9
    assert pair["kappa"] == pytest.approx(cohen_kappa(a_labels, b_labels))
    assert s["dropped"]["reviewed"] == 1 and s["dropped"]["precision"] == 0.0 and s["dropped"]["estimated_wrong"] == 6
    assert set(audit_figures(out)) == {"person"}
    from hoiforge.report.audit_section import render

    page = render(audit_figures(out), out)
    assert "ann / bob" in page and f'<td class="kappa">{pair["kappa"]:.3f}</td>' in page


def test_answer_files_are_untrusted_when_read_back(tmp_path):
    out = _out(tmp_path)
    item = draw_sample(out, "person", n=1, seed=0)["items"][0]
    store = AnswerStore(out, "person", 0, "ann")
    store.mark(item, "correct")
    good = json.loads(store.path.read_text())
    bad = [
        "not json",
        json.dumps({**good, "verdict": "maybe"}),
        json.dumps({**good, "index": "1; rm -rf /"}),
        json.dumps({**good, "index": True}),
        json.dumps({**good, "reviewer": "<script>alert(1)</script>"}),
        json.dumps({**good, "verdict": "wrong", "reason": "<img src=x onerror=alert(1)>"}),
        json.dumps({**good, "stage": "products"}),
        json.dumps({**good, "time": "yesterday"}),
        json.dumps([good]),
        json.dumps({**good, "reviewer": "x" * 5000}),
    ]
    with open(store.path, "a") as f:
        f.write("\n".join(bad) + "\n")
    json.dumps({**good, "index": 10**6})  # an index not in the manifest: stale, not counted
    with open(store.path, "a") as f:
        f.write(json.dumps({**good, "index": 10**6}) + "\n")
    (out / "audit" / "person-7.jsonl").symlink_to("/etc/passwd")  # a link out of OUT: never opened
    (out / "audit" / "person-evil.jsonl").write_text(json.dumps(good) + "\n")  # not <stage>-<seed>: not read
    answers, ignored = read_answers(out, "person")
    assert len(answers) == 2 and ignored == {"lines": len(bad), "files": 1}
    s = stage_summary(out, "person")
    assert s["kept"]["reviewed"] == 1 and s["ignored"] == {"lines": len(bad), "files": 1, "stale": 1}
    # Writing refuses to follow a planted link.
    (out / "audit" / "person-0.jsonl").unlink()
    (out / "audit" / "person-0.jsonl").symlink_to(tmp_path / "elsewhere.jsonl")
    with pytest.raises(AuditError, match="symbolic link"):
        store.mark(item, "correct")
    assert not (tmp_path / "elsewhere.jsonl").exists()
    other = _out(tmp_path / "second")  # OUT/audit itself a link out of OUT: neither written nor read
    (tmp_path / "outside").mkdir()
    (other / "audit").symlink_to(tmp_path / "outside")
    (tmp_path / "outside" / "person-0.jsonl").write_text(json.dumps(good) + "\n")
    with pytest.raises(AuditError, match="symbolic link"):
        AnswerStore(other, "person", 0, "ann").mark(item, "correct")
    assert read_answers(other, "person")[0] == [] and (tmp_path / "outside" / "person-0.jsonl").read_text().count("\n") == 1
    with pytest.raises(AuditError, match="reason"):
        AnswerStore(out, "person", 1, "ann").mark(item, "correct", "person missed")


def test_report_section_escapes_and_counts(tmp_path):
    from hoiforge.report.audit_section import render, summary_line

    out = _out(tmp_path)
    items = draw_sample(out, "person", n=4, seed=0)["items"]
    store = AnswerStore(out, "person", 0, "ann")
    for it, v in zip(items, ("correct", "correct", "wrong", "correct"), strict=True):
        store.mark(it, v, "wrong count" if v == "wrong" else None)
    figures = audit_figures(out)
    page = render(figures, out)
    assert 'data-stage="person" data-status="kept"' in page and 'data-value="0.7500"' in page
    assert "wrong count" in page and "no image readable" in page  # a manifest-only OUT has no shards
    assert summary_line("person", figures["person"]).startswith("audit person: precision 75.0 % [")
    assert "No audit answers" in render({}, out)
    assert set(STAGES) == {"products", "person", "pose", "cleanup", "caption", "shoes", "wear_labels"}


# ---------------------------------------------------------------------------------- HTTP


def _post(url: str, body: bytes, headers: dict) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_marks_over_http_only_for_the_sample_as_json_from_our_origin(tmp_path):
    from hoiforge.report.audit_session import AuditSession
    from hoiforge.report.viewer import make_server

    out = _out(tmp_path)
    session = AuditSession(out, "person", n=3, seed=5, reviewer="ann")
    srv = make_server(out, "127.0.0.1", 0, audit=session)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{srv.server_address[1]}"
    item = session.sample["items"][0]
    body = json.dumps({"index": item["index"], "status": "kept", "verdict": "wrong", "reason": "person missed"}).encode()
    js = {"Content-Type": "application/json"}
    try:
        assert _post(base + "/api/audit/answer", body, {"Content-Type": "text/plain"})[0] == 415  # a plain form post
        assert _post(base + "/api/audit/answer", body, {**js, "Origin": "http://evil.example"})[0] == 403
        assert _post(base + "/api/audit/answer", body, {**js, "Host": "evil.example"})[0] == 403
        outside = json.dumps({"index": 19, "status": "kept", "verdict": "correct"}).encode()
        if 19 not in [i["index"] for i in session.sample["items"]]:
            assert _post(base + "/api/audit/answer", outside, js)[0] == 400
        bad_reason = json.dumps({"index": item["index"], "status": "kept", "verdict": "wrong", "reason": "meh"}).encode()
        assert _post(base + "/api/audit/answer", bad_reason, js)[0] == 400
        assert not (out / "audit").exists() or not any((out / "audit").iterdir())
        status, doc = _post(base + "/api/audit/answer", body, {**js, "Origin": base})
        assert status == 200 and doc["summary"]["kept"]["reviewed"] == 1 and doc["saved"]["reviewer"] == "ann"
        with urllib.request.urlopen(base + "/api/audit") as r:
            page = json.loads(r.read())
        assert page["answers"] == {f"{item['index']}:kept": {"verdict": "wrong", "reason": "person missed"}}
        assert len(page["items"]) == 3 and page["reasons"] == list(STAGES["person"].reasons)
    finally:
        srv.shutdown()
        srv.server_close()
    assert [json.loads(x)["verdict"] for x in (out / "audit" / "person-5.jsonl").read_text().splitlines()] == ["wrong"]


def test_viewer_without_audit_mode_says_so(tmp_path):
    from hoiforge.report.viewer import make_server

    out = _out(tmp_path)
    srv = make_server(out, "127.0.0.1", 0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"http://127.0.0.1:{srv.server_address[1]}/api/audit")
        assert e.value.code == 404
    finally:
        srv.shutdown()
        srv.server_close()


def test_cli_refuses_a_stage_the_build_lacks_in_one_sentence(tmp_path):
    from typer.testing import CliRunner

    from hoiforge.cli import app

    out = _out(tmp_path)
    r = CliRunner().invoke(app, ["audit", str(out), "--stage", "shoes", "--port", "0"])
    assert r.exit_code == 2 and "built without the shoes stage" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(app, ["audit", str(out), "--split", "val"])
    assert r.exit_code == 2 and "--split must be train or test" in r.output


# ---------------------------------------------------------------------------------- Chromium

BROWSER_RECIPE = """
name: audit-test
output: {shard_max_count: 1000, shard_max_bytes: 1000000000, test_size: 0.0}
stages:
  - stage: decode
  - stage: resolution
    min_short_side: 256
  - stage: person
    detector: mediapipe
    min_score: 0.5
    min_persons: 1
    max_persons: 5
"""


@pytest.fixture(scope="module")
def person_build(ray_local, tmp_path_factory) -> Path:
    """A real build with six kept photos of people (two photos, mirrored and rescaled) and two drops."""
    from PIL import Image, ImageOps

    from hoiforge.pipeline.recipe import load_recipe
    from hoiforge.pipeline.runner import build
    from tests.conftest import DATA

    root = tmp_path_factory.mktemp("audit-build")
    photos = root / "photos"
    photos.mkdir()
    for name in ("astronaut.png", "basketball1.png"):
        img = Image.open(DATA / name).convert("RGB")
        img.save(photos / f"{name[:-4]}-a.png")
        ImageOps.mirror(img).save(photos / f"{name[:-4]}-b.png")
        img.resize((img.width * 4 // 5, img.height * 4 // 5)).save(photos / f"{name[:-4]}-c.jpg", quality=92)
    for name in ("coffee.png", "scenetext01.jpg"):
        (photos / name).write_bytes((DATA / name).read_bytes())
    recipe = root / "audit.yaml"
    recipe.write_text(BROWSER_RECIPE)
    out = root / "out"
    build([str(photos)], out, load_recipe(str(recipe)), progress=False)
    return out


@pytest.mark.slow
def test_browser_audit_five_samples_by_keys_and_the_report_updates(person_build, tmp_path):
    from hoiforge.report.audit_session import AuditSession
    from hoiforge.report.html import build_report
    from hoiforge.report.viewer import make_server
    from tests.test_viewer import CHROMIUM, CHROMIUM_ARGS, _browser, wait_js

    sync_playwright = _browser()
    shots = Path(os.environ.get("HOIFORGE_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    rows = pq.read_table(person_build / "manifest.parquet").to_pylist()
    assert sum(r["status"] == "kept" for r in rows) >= 5
    session = AuditSession(person_build, "person", n=5, seed=11, dropped=True, reviewer="tester")
    srv = make_server(person_build, "127.0.0.1", 0, audit=session)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{srv.server_address[1]}"

    def report_precision() -> str:
        build_report(person_build)
        page.goto((person_build / "report" / "index.html").as_uri())
        return page.get_attribute("#audit tr[data-stage='person'][data-status='kept'] td.precision", "data-value")

    errors: list[str] = []
    keys = ["c", "c", "3", "c", "w"]  # correct, correct, wrong (one person boxed twice), correct, wrong (no reason)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 860})
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.goto(base + "/audit")
                wait_js(page, "document.querySelector('#base').complete && document.querySelector('#base').naturalWidth > 0")
                assert "Is every person boxed once" in page.inner_text("#question")
                assert page.get_attribute("#progress", "data-answered") == "0"
                seen = []
                for i, key in enumerate(keys):
                    seen.append(page.inner_text("#title"))
                    if i == 3:
                        page.screenshot(path=str(shots / "audit-page.png"))
                    page.keyboard.press(key)
                    wait_js(page, f"document.querySelector('#progress').dataset.answered === '{i + 1}'")
                    # The live figure follows every mark: kept precision over the kept marks so far.
                    kept_so_far = [json.loads(x) for x in session.store.path.read_text().splitlines()]
                    kept_so_far = [m["verdict"] for m in kept_so_far if m["status"] == "kept"]
                    if kept_so_far:
                        want = f"{kept_so_far.count('correct') / len(kept_so_far):.4f}"
                        assert page.get_attribute(".figure[data-status='kept']", "data-precision") == want
                assert len(set(seen)) == 5  # five different samples, each shown once
                live = page.get_attribute(".figure[data-status='kept']", "data-precision")
                marked = [json.loads(x) for x in session.store.path.read_text().splitlines()]
                assert [m["verdict"] for m in marked] == ["correct", "correct", "wrong", "correct", "wrong"]
                assert marked[2]["reason"] == "one person boxed twice" and {m["reviewer"] for m in marked} == {"tester"}
                kept_marks = [m for m in marked if m["status"] == "kept"]
                expected = sum(m["verdict"] == "correct" for m in kept_marks) / len(kept_marks)
                assert live == f"{expected:.4f}"
                first = report_precision()
                assert first == f"{expected:.4f}"
                section = page.inner_text("#audit")
                assert "person" in section and "Wilson 95 %" in section
                page.locator("#audit").screenshot(path=str(shots / "audit-report.png"))
                # One more mark (resumed: a new page load starts at the next unanswered sample) moves the report.
                page.goto(base + "/audit")
                wait_js(page, "document.querySelector('#progress').dataset.answered === '5'")
                item = page.inner_text("#title")
                assert item not in seen
                page.keyboard.press("c")
                wait_js(page, "document.querySelector('#progress').dataset.answered === '6'")
                marked = [json.loads(x) for x in session.store.path.read_text().splitlines()]
                kept_marks = [m for m in marked if m["status"] == "kept"]
                dropped_marks = [m for m in marked if m["status"] == "dropped"]
                second = report_precision()
                assert second == f"{sum(m['verdict'] == 'correct' for m in kept_marks) / len(kept_marks):.4f}"
                assert len(dropped_marks) == 2  # --dropped: the two person drops were interleaved with the kept samples
                assert page.inner_text("#audit tr[data-stage='person'][data-status='dropped'] td.reviewed") == "2"
                assert second != first  # the sixth mark is a kept sample marked correct: precision rises
            finally:
                browser.close()
    finally:
        srv.shutdown()
        srv.server_close()
    assert not errors, errors
