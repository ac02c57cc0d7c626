"""End to end (slow): hoihuman-recipe shards train the tiny VirtualModel through the CLI; two processes train as one run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from hoiforge.cli import app
from hoiforge.pipeline.recipe import load_recipe
from hoiforge.pipeline.runner import build
from hoiforge.training.core import read_metrics

pytestmark = pytest.mark.slow
DATA = Path(__file__).parent / "data"


def test_hoihuman_shards_train_the_tiny_config_through_the_cli(ray_local, tmp_path, torch_one_thread):
    # The recipe keeps people holding products; of the bundled photos that is the astronaut (her helmet).
    # Mirrored and rescaled copies are other images (other bytes, other ids) of the same kind, so a few are kept.
    photos = tmp_path / "photos"
    photos.mkdir()
    astronaut = Image.open(DATA / "astronaut.png").convert("RGB")
    astronaut.save(photos / "astronaut.png")
    astronaut.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(photos / "mirrored.png")
    astronaut.resize((448, 448), Image.Resampling.LANCZOS).save(photos / "smaller.jpg", quality=95)
    Image.open(DATA / "basketball1.png").save(photos / "basketball1.png")

    out = tmp_path / "out"
    build([str(photos)], out, load_recipe("hoihuman"), progress=False)
    index = json.loads((out / "index.train.json").read_text())
    kept = sum(s["nsamples"] for s in index["shardlist"])
    assert kept >= 2, f"the hoihuman recipe kept {kept} of 4 photos"

    run = tmp_path / "run"
    result = CliRunner().invoke(
        app, ["train", "virtualmodel", "--data", str(out), "--config", "tiny", "--out", str(run), "--max-steps", "2"]
    )
    assert result.exit_code == 0, result.output
    rows = read_metrics(run)
    assert [(r["stage"], r["step"]) for r in rows] == [("base", 1), ("base", 2), ("branches", 1), ("branches", 2)]
    assert all(np.isfinite(r["loss"]) for r in rows)
    assert (run / "weights" / "branches" / "branches.safetensors").exists()
    assert (run / "validation" / "branches-00000002-sample.png").exists()


def test_two_processes_train_as_one_run(tmp_path):
    """``torchrun --nproc_per_node 2`` (gloo on CPU): one metrics writer, every process's RNG state in each checkpoint."""
    import os
    import subprocess
    import sys

    from tests.vm_shards import write_out

    out, run = tmp_path / "out", tmp_path / "run"
    write_out(out, 8, per_shard=2, rle=True)
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(root / "src"), str(root)])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533", "-m", "hoiforge.cli"]
    cmd += ["train", "virtualmodel", "--data", str(out), "--config", "tiny", "--out", str(run), "--max-steps", "2"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert [(r["stage"], r["step"]) for r in read_metrics(run)] == [("base", 1), ("base", 2), ("branches", 1), ("branches", 2)]
    for stage in ("base", "branches"):
        assert {p.name for p in (run / "checkpoints" / f"{stage}-00000002").glob("random_states_*.pkl")} == {
            "random_states_0.pkl",
            "random_states_1.pkl",
        }
