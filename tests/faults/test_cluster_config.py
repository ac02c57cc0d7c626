"""ray_cluster.yaml gives every node what a build needs: OUT on a shared filesystem, disks for the
weights and spilling, a private token, no local venv or outputs copied, s3/gcs filesystems."""

from __future__ import annotations

import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
CONFIG = yaml.safe_load((ROOT / "ray_cluster.yaml").read_text())


def commands(key: str) -> str:
    return "\n".join(CONFIG.get(key) or [])


def test_every_node_mounts_the_shared_filesystem_out_lives_on():
    init = commands("initialization_commands")  # runs on the head and on every worker
    assert "mount -t nfs4" in init and "/mnt/shared" in init
    assert "--out /mnt/shared/" in (ROOT / "ray_cluster.yaml").read_text().splitlines()[2]


def test_worker_disks_hold_the_weights_and_spilling():
    for name, node in CONFIG["available_node_types"].items():
        disks = node["node_config"].get("BlockDeviceMappings", [])
        size = sum(d["Ebs"]["VolumeSize"] for d in disks)
        assert size >= 100, f"{name}: {size} GB root disk (weights ~25 GB + venv + object spilling)"


def test_rsync_leaves_the_venv_and_outputs_behind():
    excluded = CONFIG["rsync_exclude"]
    assert ".venv" in excluded and "out/" in excluded


def test_the_token_is_private_on_every_node():
    assert "chmod 600 ~/.ray/auth_token" in commands("setup_commands")
    assert "~/.ray/auth_token" in CONFIG["file_mounts"]


def test_remote_filesystems_are_an_extra_the_cluster_installs():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(d.startswith("s3fs") for d in extras["s3"]) and any(d.startswith("gcsfs") for d in extras["gcs"])
    assert ".[s3,gcs]" in commands("setup_commands")
