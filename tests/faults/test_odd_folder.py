"""A build over a folder of mixed odd files: inputs == files found, each with its outcome; the CLI
summary prints tar member names literally; validate passes."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from hoiforge.cli import app
from hoiforge.datasets.validate import validate
from tests.faults.odd_folder import entries_found, make_odd_folder

pytestmark = pytest.mark.slow

RECIPE = """
name: odd
stages:
  - stage: decode
  - stage: resolution
    min_short_side: 8
  - stage: edges
    region: image
"""


def test_every_file_found_is_accounted_once(ray_local, tmp_path):
    folder = tmp_path / "in"
    expected = make_odd_folder(folder)
    (tmp_path / "odd.yaml").write_text(RECIPE)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["build", str(folder), "--out", str(out), "--recipe", str(tmp_path / "odd.yaml"), "--no-progress"], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    rows = pq.read_table(out / "manifest.parquet").to_pylist()
    assert len(rows) == len({r["key"] for r in rows}) == entries_found(folder) == len(expected)
    outcome = {r["key"]: r["status"] if r["status"] == "kept" else f"{r['status']}:{r['stage']}" for r in rows}
    assert outcome == expected
    for r in rows:
        if r["stage"] == "list":
            assert r["reason"].startswith("not an image file by extension (") and r["sha256"] is None  # never read
    summary = " ".join(result.output.split())
    assert f"inputs │ {len(expected)}" in summary and "not images │ 8 file(s) skipped unread" in summary
    assert "read.unsafe_member" in summary and "input ../[/]x.jpg" in summary  # a member name full of markup, printed as it is
    # One line per stage, in run order (no terminal here: no Ray progress dumps, no Ray Data log lines).
    assert "list │ 45 in → 37 on" in summary and "read │ 37 in → 33 on" in summary and "decode │ 33 in → 32 on" in summary
    assert "Running" not in result.output and "execution finished" not in result.output
    assert validate(out) == []
