"""The README's loader snippet streams a finished OUT from any working directory (index urls are
relative to OUT) and decodes each member as what it is."""

from __future__ import annotations

import json

import pytest

from tests.faults.test_output_safety import finished_out
from tests.snippets import run


@pytest.mark.filterwarnings("ignore")
def test_readme_loader_reads_every_kept_sample_from_another_directory(tmp_path, monkeypatch):
    out, _ = finished_out(tmp_path / "build")
    index = json.loads((out / "index.train.json").read_text())
    assert all(not s["url"].startswith("/") for s in index["shardlist"])  # relative: the reason for the snippet
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    scope = run("readme-loader", out)
    samples = list(scope["dataset"])
    assert len(samples) == sum(s["nsamples"] for s in index["shardlist"]) == 3
    for s in samples:
        assert s["image"].mode == "RGB" and s["json"]["id"] == s["__key__"]
        assert s["image"].size == (s["json"]["image"]["width"], s["json"]["image"]["height"])
