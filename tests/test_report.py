"""The dataset report: figures.json and index.html checked against the manifest they come from.

Expected numbers are recomputed here the simple way (Python over manifest rows), independently
of the column-wise code in hoiforge.report.figures.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from hoiforge.cli import app
from hoiforge.report.figures import compute_figures
from tests.report_build import small_build


@pytest.fixture(scope="module")
def built(ray_local, tmp_path_factory) -> Path:
    return small_build(tmp_path_factory.mktemp("report-build"))


def _bin_counts(values: list[float], edges: list[float]) -> list[int]:
    """Counts per [a, b) bin, last bin closed: the definition, bin by bin."""
    counts = [0] * (len(edges) - 1)
    for v in values:
        for i in range(len(counts)):
            last = i == len(counts) - 1
            if edges[i] <= v < edges[i + 1] or (last and v == edges[-1]):
                counts[i] += 1
                break
    return counts


@pytest.mark.slow
def test_report_numbers_match_the_manifest(built: Path):
    result = CliRunner().invoke(app, ["stats", str(built), "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads((built / "report" / "figures.json").read_text())
    assert json.loads(result.stdout) == figures  # the JSON for scripts is the file's content

    rows = pq.read_table(built / "manifest.parquet").to_pylist()
    kept = [r for r in rows if r["status"] == "kept"]
    status = Counter(r["status"] for r in rows)
    assert figures["totals"] == {"inputs": len(rows), "kept": status["kept"], "dropped": status["dropped"], "failed": status["failed"]}
    # The build was made to contain every status: 2 kept, 3 dropped (2 no person, 1 too small), 1 failed.
    assert (status["kept"], status["dropped"], status["failed"]) == (2, 3, 1)

    # Funnel: recipe order, each stage's removals by status, running remainder, kept at the end.
    steps = {s["stage"]: s for s in figures["funnel"]["steps"]}
    recipe_stages = ["decode", "resolution", "person", "pose", "edges"]
    assert [s for s in steps if s in recipe_stages] == recipe_stages
    remaining = len(rows)
    for step in figures["funnel"]["steps"]:
        mine = [r for r in rows if r["status"] != "kept" and r["stage"] == step["stage"]]
        assert step["dropped"] == sum(r["status"] == "dropped" for r in mine)
        assert step["failed"] == sum(r["status"] == "failed" for r in mine)
        assert sum(step["reasons"].values()) == len(mine)
        remaining -= len(mine)
        assert step["remaining"] == remaining
    assert figures["funnel"]["kept"] == remaining == len(kept)
    assert steps["person"]["dropped"] == 2 and steps["resolution"]["dropped"] == 1
    assert list(steps["resolution"]["reasons"]) == ["dropped: resolution.short_side"]
    short = figures["reasons"]["resolution.short_side"]
    assert short["count"] == 1 and short["params"]["short_side"]["max"] < 256 and short["params"]["short_side"]["histogram"]["counts"]

    # Resolution: short/long side of kept and of all decoded rows.
    for who, subset in (("kept", kept), ("all", [r for r in rows if r["m.width"] is not None])):
        short = [min(r["m.width"], r["m.height"]) for r in subset]
        long_ = [max(r["m.width"], r["m.height"]) for r in subset]
        fig = figures["resolution"][who]
        assert fig["short"]["count"] == len(short) and fig["short"]["min"] == min(short) and fig["short"]["max"] == max(short)
        assert fig["long"]["mean"] == pytest.approx(sum(long_) / len(long_))
        assert fig["short_hist"]["counts"] == _bin_counts(short, fig["short_hist"]["edges"])
        assert fig["long_hist"]["counts"] == _bin_counts(long_, fig["long_hist"]["edges"])
    assert figures["resolution"]["all"]["short"]["min"] == 200  # the downscaled copy

    # Persons per image, keypoint visibility per part, splits, per-stage time.
    assert figures["persons"]["kept"] == {str(k): v for k, v in Counter(r["m.persons"] for r in kept).items()}
    for part, size in (("body", 17), ("feet", 6), ("hands", 42), ("face", 68)):
        visible = [r[f"m.kp_{part}"] for r in kept]
        assert figures["keypoints"]["parts"][part]["mean_fraction"] == pytest.approx(sum(visible) / len(visible) / size)
    assert figures["splits"] == dict(Counter(r["split"] for r in kept))
    for name in [c for c in rows[0] if c.startswith("m.time.")]:
        values = [r[name] for r in rows if r[name] is not None]
        assert figures["stage_time"][name[len("m.time.") :]]["mean"] == pytest.approx(sum(values) / len(values))

    # Shards: the wids index agrees with the files on disk.
    index = json.loads((built / "index.json").read_text())
    assert figures["shards"]["count"] == len(index["shardlist"]) == len(list((built / "shards").glob("*.tar")))
    assert figures["shards"]["total_bytes"] == sum(p.stat().st_size for p in (built / "shards").glob("*.tar"))
    assert figures["shards"]["total_samples"] == len(kept)

    # Recipe stages that measure nothing here say so instead of plotting zeros.
    for absent in ("products", "quality", "caption_words", "text"):
        assert figures[absent]["available"] is False

    # The page: self-contained, and its tables carry the same numbers.
    page = (built / "report" / "index.html").read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page), "the report must not load anything from the network"
    assert page.count('src="data:image/png;base64,') >= 6
    for k in ("inputs", "kept", "dropped", "failed"):
        assert f'data-k="{k}">{figures["totals"][k]}<' in page
    funnel_table = re.search(r'<table class="funnel">(.*?)</table>', page).group(1)
    cells = [re.findall(r"<td>(.*?)</td>", tr) for tr in re.findall(r"<tr>(.*?)</tr>", funnel_table)[1:]]
    by_stage = {c[0]: c for c in cells}
    for step in figures["funnel"]["steps"]:
        assert by_stage[step["stage"]][1] == str(step["dropped"]) and by_stage[step["stage"]][4] == str(step["remaining"])
    assert by_stage["kept"][4] == str(len(kept))


def _write_out(out: Path, table: pa.Table, shardlist: list[dict]) -> Path:
    out.mkdir(parents=True)
    pq.write_table(table, out / "manifest.parquet")
    (out / "index.json").write_text(json.dumps({"__kind__": "wids-shard-index-v1", "wids_version": 1, "name": "x", "shardlist": shardlist}))
    return out


def test_optional_metric_figures_follow_their_columns(tmp_path: Path):
    """Products, quality, captions, keypoints and text figures from the columns other stages record."""
    rng = np.random.default_rng(0)
    n = 500
    status = rng.choice(["kept", "dropped", "failed"], n, p=[0.7, 0.2, 0.1]).tolist()
    stage = [None if s == "kept" else "read" if s == "failed" else str(rng.choice(["quality", "dedup"])) for s in status]
    reason = [
        None if s == "kept" else (f"exact duplicate of /data/img{i}.jpg" if st == "dedup" else f"{st} said no")
        for i, (s, st) in enumerate(zip(status, stage))
    ]
    labels = rng.choice(["shoes", "bottle", "phone", ""], n).tolist()
    aesthetic = rng.uniform(2, 9, n)
    brisque = rng.uniform(0, 180, n)  # beyond the plotted 0-150: must land in the last bin, not vanish
    words = rng.integers(5, 120, n)
    kp_hands = rng.uniform(0, 42, n)
    table = pa.table(
        {
            "status": status, "stage": stage, "reason": reason,
            "split": ["train" if s == "kept" else None for s in status], "shard": [None] * n,
            "m.product_label": labels, "m.products": rng.integers(0, 4, n), "m.product_area": rng.uniform(0, 1, n),
            "m.aesthetic": aesthetic, "m.brisque": brisque, "m.caption_words": words, "m.kp_hands": kp_hands,
            "m.text_regions": rng.integers(0, 5, n), "m.text_removed": rng.integers(0, 2, n),
        }
    )  # fmt: skip
    out = _write_out(
        tmp_path / "out", table, [{"url": "shards/train-000000.tar", "nsamples": status.count("kept"), "filesize": 12345, "md5sum": "x"}]
    )
    f = compute_figures(out)
    kept = np.array(status) == "kept"

    assert f["products"]["labels"] == {k: v for k, v in Counter(l for l, k_ in zip(labels, kept) if k_ and l).items()} | (
        {"(none)": sum(1 for l, k_ in zip(labels, kept) if k_ and not l)}
    )
    assert sum(f["products"]["area"]["histogram"]["counts"]) == kept.sum()
    assert f["quality"]["aesthetic"]["kept"]["summary"]["mean"] == pytest.approx(aesthetic[kept].mean())
    assert f["quality"]["brisque"]["all"]["summary"]["max"] == pytest.approx(brisque.max())
    assert sum(f["quality"]["brisque"]["all"]["histogram"]["counts"]) == n
    assert f["quality"]["brisque"]["all"]["histogram"]["counts"][-1] == int((brisque >= 145).sum())
    assert f["caption_words"]["summary"]["median"] == pytest.approx(np.median(words[kept]))
    assert sum(f["caption_words"]["histogram"]["counts"]) == kept.sum()
    assert f["keypoints"]["parts"].keys() == {"hands"}  # only the recorded part
    assert f["keypoints"]["parts"]["hands"]["mean_fraction"] == pytest.approx(kp_hands[kept].mean() / 42)
    assert f["text"]["text_removed"]["total"] == table.column("m.text_removed").to_numpy()[kept].sum()
    # A manifest without reason codes (older builds): grouped by stage + the sentence without its per-input details.
    dedup = next(s for s in f["funnel"]["steps"] if s["stage"] == "dedup")
    assert dedup["reasons"] == {"dropped: dedup.exact duplicate": stage.count("dedup")}
    assert f["funnel"]["steps"][0]["stage"] == "read" and f["funnel"]["steps"][-1]["stage"] == "dedup"
    assert f["funnel"]["kept"] == kept.sum()


def test_a_build_without_metrics_reports_them_absent(tmp_path: Path):
    table = pa.table(
        {
            "status": ["kept", "failed"],
            "stage": [None, "read"],
            "reason": [None, "cannot read"],
            "split": ["train", None],
            "shard": ["shards/train-000000.tar", None],
        }
    )
    out = _write_out(tmp_path / "out", table, [])
    f = compute_figures(out)
    assert f["totals"] == {"inputs": 2, "kept": 1, "dropped": 0, "failed": 1}
    for name in ("resolution", "persons", "products", "quality", "caption_words", "keypoints", "text", "shards"):
        assert f[name]["available"] is False, name
    result = CliRunner().invoke(app, ["stats", str(out)])
    assert result.exit_code == 0, result.output
    assert "Not recorded by this build" in (out / "report" / "index.html").read_text()


def test_fast_histogram_bins_like_numpy():
    """The bincount histogram (used for speed on millions of rows) puts every value where np.histogram does."""
    from hoiforge.report.figures import histogram

    rng = np.random.default_rng(1)
    for _ in range(100):
        values = np.round(rng.uniform(0, 1, 1000), int(rng.integers(1, 4)))  # many values exactly on edges
        edges = np.linspace(0, 1, int(rng.integers(2, 40)))
        assert histogram(values, edges)["counts"] == np.histogram(values, edges)[0].tolist()
    sides = rng.integers(0, 3000, 1000).astype(float)
    edges = np.arange(0, 3000 + 128, 128.0)
    assert histogram(sides, edges)["counts"] == np.histogram(sides, edges)[0].tolist()


class _Blobs:
    """A stage added after the report was written: it declares its metrics and nothing else."""

    from hoiforge.stages.base import MetricSpec

    name = "blobs"
    metrics = (
        MetricSpec("blobs", "count", "blobs", "blobs per image"),
        MetricSpec("blob_area", "fraction", "of the image"),
        MetricSpec("blob_kind", "category"),
        MetricSpec("blob_odd", "flag", over="all"),
        MetricSpec("blob_missing", "score"),
    )


def test_a_new_stage_gets_its_figures_by_declaring_its_metrics(monkeypatch):
    from hoiforge.report.figures import declared_metrics
    from hoiforge.report.html import render_page
    from hoiforge.stages import REGISTRY

    monkeypatch.setitem(REGISTRY, "blobs", "tests.test_report:_Blobs")
    status = ["kept", "kept", "kept", "dropped"]
    table = pa.table(
        {
            "status": status, "m.blobs": [1, 3, 3, 9], "m.blob_area": [0.1, 0.5, 0.55, 0.9],
            "m.blob_kind": ["round", "square", "round", None], "m.blob_odd": [True, False, True, True],
        }
    )  # fmt: skip
    kept = pa.chunked_array([pa.array([s == "kept" for s in status])])
    decode, entry = declared_metrics(table, kept, ["decode", "blobs"])
    assert decode["stage"] == "decode" and not any(m["available"] for m in decode["metrics"])  # declared, not recorded here
    assert entry["stage"] == "blobs"
    fig = {m["name"]: m for m in entry["metrics"]}
    assert fig["blobs"]["counts"] == {"1": 1, "3": 2}  # kept samples only: the dropped 9 is not drawn
    assert fig["blob_area"]["histogram"]["edges"][0] == 0 and fig["blob_area"]["histogram"]["edges"][-1] == 1
    assert sum(fig["blob_area"]["histogram"]["counts"]) == 3
    assert fig["blob_kind"]["counts"] == {"round": 2, "square": 1}
    assert fig["blob_odd"]["counts"] == {"true": 3, "false": 1}  # over="all"
    assert fig["blob_missing"]["available"] is False
    figures = _page_figures(entry)
    page = render_page(figures)
    for name in ("blobs", "blob_area", "blob_kind", "blob_odd"):
        assert '<img alt="" src="data:image/png;base64,' in page.split(f'<figure id="metric-blobs-{name}">', 1)[1].split("</figure>")[0]
    assert "m.blob_missing" in page.split('<figure id="metric-blobs-blob_missing">', 1)[1].split("</figure>")[0]


def _page_figures(entry: dict) -> dict:
    """The smallest figures document render_page draws: only the declared metrics recorded."""
    absent = {"available": False, "column": "-"}
    return {
        "out": "/x", "totals": {"inputs": 4, "kept": 3, "dropped": 1, "failed": 0},
        "funnel": {"inputs": 4, "steps": [], "kept": 3}, "reasons": {}, "resolution": absent, "persons": absent,
        "products": absent, "quality": absent, "caption_words": absent, "keypoints": {"available": False, "parts": {}},
        "text": absent, "shards": {"available": False, "count": 0}, "splits": {}, "stage_time": {}, "stage_metrics": [entry],
    }  # fmt: skip
