"""The README's loader snippet streams a finished OUT from any working directory (index urls are relative to OUT)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.faults.test_output_safety import finished_out

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_snippet() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    [block] = [b for b in blocks if "(readme-loader)" in b]
    return "\n".join(line.strip() for line in block.splitlines())


@pytest.mark.filterwarnings("ignore")
def test_readme_loader_reads_every_kept_sample_from_another_directory(tmp_path, monkeypatch):
    out, _ = finished_out(tmp_path / "build")
    index = json.loads((out / "index.train.json").read_text())
    assert all(not s["url"].startswith("/") for s in index["shardlist"])  # relative: the reason for the snippet
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code = readme_snippet().replace('out = "/data/hoihuman"', f"out = {str(out)!r}")
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    keys = sorted(sample["__key__"] for sample in scope["dataset"])
    assert len(keys) == sum(s["nsamples"] for s in index["shardlist"]) == 3
