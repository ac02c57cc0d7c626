"""bench/gpu_check.py --smoke in the suite, so the prepared GPU check cannot rot (#26).

The smoke run is the GPU run's code path at tiny sizes on the CPU: the project's trainers and
pipeline, every stage backend's model, the json and the markdown table. It runs in a fresh
interpreter where ``ray``, ``webdataset`` and ``wids`` cannot be imported (the GPU machine has
none of them), so a new import of them on the check's path fails here. No timing is asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCKED = ("ray", "webdataset", "wids")
TRAINING = {"vm-base", "vm-branches", "sw", "wd", "lps1", "lps2"}
STAGES = {"rtdetr", "clip-aesthetic", "grounding-dino", "sam-encoder", "lama", "vitpose", "caption", "vae-encoder", "clip-text", "dinov2"}

RUNNER = textwrap.dedent(
    """
    import runpy, sys

    BLOCKED = {blocked!r}

    class Absent:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {{name!r}} (blocked: the GPU machine has none)", name=name)
            return None

    sys.meta_path.insert(0, Absent())
    sys.argv = ["bench/gpu_check.py", "--smoke", "--out", {out!r}]
    try:
        runpy.run_path({script!r}, run_name="__main__")
    finally:
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
        print("BLOCKED-LOADED", loaded)
    """
)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check")
    code = RUNNER.format(blocked=BLOCKED, out=str(out), script=str(ROOT / "bench" / "gpu_check.py"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    return SimpleNamespace(out=out, proc=proc)


def test_smoke_runs_every_case_without_error(smoke):
    proc = smoke.proc
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "BLOCKED-LOADED []" in proc.stdout
    doc = json.loads((smoke.out / "gpu_check.json").read_text())
    assert doc["environment"]["smoke"] is True and doc["skipped"] == []
    rows = {r["case"]: r for r in doc["rows"]}
    assert not [r for r in rows.values() if "error" in r]
    for name in TRAINING:
        r = rows[name]
        assert r["s_per_step"] > 0 and r["samples_per_s"] == pytest.approx(r["batch"] / r["s_per_step"])
        assert r["steps_timed"] >= 1 and r["batch"] == r["plan"]["per_device"] and r["oom_at"] == []
    for b in (1, 2):
        assert rows[f"vm-generate-b{b}"]["s_per_image"] > 0
    for key in STAGES:
        r = rows[f"{key}-fp32"]
        assert r["key"] == key and r["images_per_s"] == pytest.approx(r["batch"] / r["s_per_call"]) and r["path"]
    assert rows["caption-fp32"]["prefill_s"] > 0 and rows["caption-fp32"]["new_tokens"] > 0
    assert "STAND-IN" in rows["lama-fp32"]["path"]


def test_smoke_table_lists_every_row(smoke):
    md = (smoke.out / "gpu_check.md").read_text()
    assert "SMOKE sizes, not a measurement" in md
    for header in ("| training step |", "| generation |", "| stage model |"):
        assert header in md
    rows = json.loads((smoke.out / "gpu_check.json").read_text())["rows"]
    assert all(r["what"] in md for r in rows)
    assert md.count("\n|") >= len(rows) + 6  # each row, plus three headers and three rules


def test_per_device_plan_is_the_paper_configs_plan():
    sys.path.insert(0, str(ROOT / "bench"))
    from gpu_check import PROCESSES, paper_settings, per_device_batch

    for job in PROCESSES:
        p, settings = per_device_batch(job), paper_settings(job)
        assert p.global_batch == settings.batch_size and p.per_device <= settings.per_device_batch
        assert p.per_device * p.processes * p.accumulation == p.global_batch  # the paper's global batch exactly
    vm = per_device_batch("vm-base")
    assert (vm.global_batch, vm.per_device, vm.processes, vm.accumulation) == (256, 32, 8, 1)  # sd15.yaml: 32 x 8 GPUs = 256


def test_gpu_hours_measured_columns(smoke, capsys):
    """--measured puts the check's seconds beside the FLOP estimate (a hand-made table: the real one needs minutes of meta counts)."""
    sys.path.insert(0, str(ROOT / "bench"))
    from gpu_hours import Row, load_measured, measured_table

    path = str(smoke.out / "gpu_check.json")
    measured, _env = load_measured(path, caption_tokens=160)
    doc = json.loads(Path(path).read_text())
    rows = {r["case"]: r for r in doc["rows"]}
    assert measured["rtdetr"][0] == pytest.approx(rows["rtdetr-fp32"]["s_per_image"])
    cap = rows["caption-fp32"]
    per_token = (cap["s_per_call"] - cap["prefill_s"]) / cap["batch"] / cap["new_tokens"]
    assert measured["caption-decode"][0] == pytest.approx(per_token * 160)
    assert measured["caption-prefill"][0] == pytest.approx(cap["prefill_s"] / cap["batch"])

    table = [
        Row("pose", "ViTPose", 1e8, 100.0, "vit", "test", per_image=2.0, key="vitpose"),
        Row("cleanup", "OCR", 0, 250.0, "onnx", "test"),  # never measured: the estimate stays in the total
    ]
    measured_table(table, SimpleNamespace(measured=path, caption_tokens=160), 1e6)
    text = capsys.readouterr().out
    assert "--smoke run" in text and "not an H100" in text
    vit_h = rows["vitpose-fp32"]["s_per_image"] * 2.0 * 1e6 / 3600
    est_total = sum(r.seconds for r in table) * 1e6 / 3600
    assert f"measured (estimate where not measured) {vit_h + table[1].seconds * 1e6 / 3600:.1f}" in text
    assert f"total H100-hours: estimate {est_total:.1f}" in text
    assert "not measured: estimate used in the total" in text


def test_the_import_guard_blocks(tmp_path):
    """The guard above would catch a new import: a script importing webdataset fails under it."""
    script = tmp_path / "imports_webdataset.py"
    script.write_text("import webdataset\n")
    code = RUNNER.format(blocked=BLOCKED, out=str(tmp_path), script=str(script))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "blocked: the GPU machine has none" in proc.stderr
