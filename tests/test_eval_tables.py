"""Result tables in the papers' rows and columns, with the published numbers beside ours."""

from __future__ import annotations

import csv
import io
import json
import math

import numpy as np

from hoiforge.eval.paper_tables import TABLES
from hoiforge.eval.scoring import shoemodel_row, virtualmodel_row, wd_row
from hoiforge.eval.tables import GenerationSettings, csv_text, markdown, write_table

SETTINGS = GenerationSettings(sampler="DDIM", steps=30, cfg=7.0, resolution="short side 512", seed=0, n=5000)


def our_rows():
    scores = {"fid": 20.5, "kid": 0.0061, "kid_x1k": 6.1, "kid_std": 0.0004, "clip": 24.0, "ap": 30.0, "ar": 50.0, "oer_pct": 2.0}
    ablation = {**scores, "ap": 27.5, "oer_pct": 9.0}
    return [virtualmodel_row("VirtualModel", scores, SETTINGS), virtualmodel_row("w/o CB", ablation, SETTINGS)]


def test_the_papers_numbers_are_held_as_data():
    t1 = TABLES["virtualmodel-table1"]
    assert t1.keys == ["fid", "kid_x1k", "clip", "ap", "ar", "oer_pct"]
    assert t1.paper_row("VirtualModel") == {
        "method": "VirtualModel", "task": "OHG", "fid": 18.37, "kid_x1k": 5.92, "clip": 24.17, "ap": 31.74, "ar": 51.28, "oer_pct": 1.71,
    }  # fmt: skip
    assert TABLES["virtualmodel-table4"].paper_row("w/o IB")["ap"] == 0.7
    assert TABLES["shoemodel-table3"].paper_row("ShoeModel")["kid_x1k"] == 6.67
    assert TABLES["shoemodel-table5"].paper_row("WD (3 classes)")["aacc"] == 98.60
    assert len(TABLES["virtualmodel-table1"].paper_rows) == 9 and len(TABLES["shoemodel-table3"].paper_rows) == 6


def test_markdown_has_our_rows_with_settings_and_compare_puts_the_paper_beside():
    rows = our_rows()
    plain = markdown("virtualmodel-table1", rows)
    assert "| method | task | FID ↓ | KID×1k ↓ | CLIP ↑ | AP ↑ | AR ↑ | OER % ↓ | N | resolution | generation |" in plain
    assert (
        "| VirtualModel | OHG | 20.50 | 6.10 | 24.00 | 30.00 | 50.00 | 2.00 | 5000 | short side 512 | DDIM, 30 steps, CFG 7, seed 0 |"
        in plain
    )
    assert "(paper)" not in plain
    compared = markdown("virtualmodel-table1", rows, compare=True)
    lines = compared.splitlines()
    ours = next(i for i, line in enumerate(lines) if line.startswith("| VirtualModel |"))
    assert lines[ours + 1].startswith("| VirtualModel (paper) | OHG | 18.37 | 5.92 | 24.17 | 31.74 | 51.28 | 1.71 |")
    assert lines[ours + 2].startswith("| Δ ours − paper |  | +2.13 | +0.18 | -0.17 | -1.74 | -1.28 | +0.29 |")
    assert "| SDXL (paper) | HIG | 25.22 | 6.66 | 24.97 | – | – | – |" in compared  # the other published rows close the table
    t4 = markdown("virtualmodel-table4", rows, compare=True)
    assert "| w/o CB | 27.50 | 50.00 | 9.00 |" in t4 and "| w/o CB (paper) | 28.66 | 50.77 | 10.25 |" in t4


def test_csv_and_json_carry_settings_details_and_the_paper(tmp_path):
    rows = our_rows()
    paths = write_table("virtualmodel-table1", rows, tmp_path / "report", compare=True)
    assert sorted(p.name for p in paths.values()) == ["virtualmodel-table1.csv", "virtualmodel-table1.json", "virtualmodel-table1.md"]
    table = list(csv.DictReader(io.StringIO(paths["csv"].read_text())))
    ours = [r for r in table if r["source"] == "ours"]
    assert [r["method"] for r in ours] == ["VirtualModel", "w/o CB"]
    assert ours[0]["fid"] == "20.5" and ours[0]["steps"] == "30" and ours[0]["cfg"] == "7.0" and ours[0]["n"] == "5000"
    assert ours[0]["kid_std"] == "0.0004"
    assert {r["method"] for r in table if r["source"] == "paper"} >= {"VirtualModel", "SD1.5", "HumanSD"}
    doc = json.loads(paths["json"].read_text())
    assert doc["table"] == "virtualmodel-table1" and doc["rows"][0]["settings"]["cfg"] == 7.0
    assert doc["rows"][0]["metrics"]["fid"] == 20.5 and doc["paper"]["rows"][-1]["fid"] == 18.37


def test_shoemodel_rows_and_a_wd_row_from_a_confusion_matrix():
    row = shoemodel_row("ShoeModel", {"fid": 23.0, "kid": 0.007, "clip": 24.1}, SETTINGS)
    assert row.metrics["kid_x1k"] == 7.0
    assert "| ShoeModel (paper) | 22.54 | 6.67 | 24.02 |" in markdown("shoemodel-table3", [row], compare=True)
    cm = np.array([[90, 5, 5], [2, 40, 8], [1, 2, 20]])
    wd = wd_row("WD (3 classes)", cm, n_images=200)
    assert wd.metrics["bg_iou"] == 100 * 90 / (100 + 93 - 90) and wd.metrics["aacc"] == 100 * 150 / 173
    two = wd_row("WD (2 classes: other / wearable)", np.array([[140, 10], [3, 20]]), ("other", "wearable"))
    assert two.metrics["visible_iou"] is None and two.metrics["wearable_acc"] == 100 * 20 / 23
    text = csv_text("shoemodel-table5", [wd, two], compare=True)
    assert "WD (3 classes)" in text and not math.isnan(float(next(csv.DictReader(io.StringIO(text)))["miou"]))
