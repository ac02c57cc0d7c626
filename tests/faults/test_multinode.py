"""A real two-node Ray cluster on this machine (head + a worker node with a custom resource
standing in for a GPU node), token authentication on, `hoiforge build --address` with the model
stage pinned to the second node."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from hoiforge.datasets.validate import validate
from tests.conftest import DATA

pytestmark = pytest.mark.slow

RECIPE = """
name: two-nodes
stages:
  - stage: decode
  - stage: person
    detector: mediapipe
    resources: {custom: {gpu_node: 1}}
  - stage: edges
    region: image
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_bin() -> str:
    return str(Path(sys.executable).with_name("ray"))


@pytest.fixture
def two_node_cluster():
    temp_dir = tempfile.mkdtemp(prefix="hfmn", dir="/tmp")  # short: Ray's socket paths have a length limit
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["RAY_AUTH_MODE"] = "token"
    subprocess.run([ray_bin(), "get-auth-token", "--generate"], env=env, check=True, capture_output=True)
    port = free_port()
    common = ["--num-cpus=1", "--disable-usage-stats"]
    subprocess.run(
        [ray_bin(), "start", "--head", f"--port={port}", f"--temp-dir={temp_dir}", "--include-dashboard=false", *common],
        env=env,
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [ray_bin(), "start", f"--address=127.0.0.1:{port}", '--resources={"gpu_node": 1}', *common],
        env=env,
        check=True,
        capture_output=True,
    )
    try:
        yield f"127.0.0.1:{port}", env
    finally:
        # Stop only this cluster's processes (a plain `ray stop` would stop every Ray here).
        found = subprocess.run(["pgrep", "-f", temp_dir], capture_output=True, text=True).stdout.split()
        for pid in found:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        time.sleep(1)
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_build_on_two_nodes_with_stage_pinned_to_the_worker(two_node_cluster, tmp_path):
    address, env = two_node_cluster
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("astronaut.png", "basketball1.png", "coffee.png"):
        shutil.copy(DATA / name, inputs / name)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE)
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "hoiforge.cli",
        "build",
        str(inputs),
        "--out",
        str(out),
        "--recipe",
        str(recipe),
        "--address",
        address,
        "--no-progress",
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {Path(r["key"]).name: r for r in pq.read_table(out / "manifest.parquet").to_pylist()}
    assert {n: r["status"] for n, r in rows.items()} == {"astronaut.png": "kept", "basketball1.png": "kept", "coffee.png": "dropped"}
    index = json.loads((out / "index.json").read_text())
    assert sum(s["nsamples"] for s in index["shardlist"]) == 2
    assert validate(out) == []

    # Without the token the cluster refuses the driver: auth is really on.
    wrong_token = {**env, "RAY_AUTH_TOKEN": "0" * 64, "HOME": str(tmp_path)}
    cmd[cmd.index("--out") + 1] = str(tmp_path / "refused")
    refused = subprocess.run(cmd, env=wrong_token, capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and not (tmp_path / "refused" / "manifest.parquet").exists()
