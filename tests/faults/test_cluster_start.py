"""Starting Ray for a build: workers' library noise stays out of the console unless --verbose,
and OUT must be the same folder on every node."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from hoiforge.errors import OutputError

pytestmark = pytest.mark.slow

NOISY_WORKERS = textwrap.dedent(
    """
    import os, sys, time
    import ray
    from hoiforge.pipeline.cluster import connect

    @ray.remote
    def noisy(tag):
        # what mediapipe/TFLite do: C++ logging straight to the process's stderr
        os.write(2, f"W0000 inference_feedback_manager.cc:114] noise-{tag}\\n".encode())
        return tag

    for verbose in (False, True):
        connect(None, verbose=verbose)
        ray.get(noisy.remote("verbose" if verbose else "quiet"))
        time.sleep(3)  # log forwarding is asynchronous
        ray.shutdown()
    print("done", flush=True)
    """
)


def test_worker_library_output_is_quiet_unless_verbose():
    env_script = NOISY_WORKERS
    done = subprocess.run([sys.executable, "-c", env_script], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0 and "done" in done.stdout, done.stderr[-2000:]
    console = done.stdout + done.stderr
    assert "noise-verbose" in console  # the check can see worker output at all
    assert "noise-quiet" not in console


def test_out_must_be_visible_from_every_node(ray_local, tmp_path):
    from hoiforge.pipeline.visibility import check_out_visible, nodes_not_seeing

    shards = tmp_path / "out" / "shards"
    shards.mkdir(parents=True)
    check_out_visible(shards)  # one node, same disk: fine, and the probe is gone
    assert list(shards.iterdir()) == []
    # A node that sees another folder at that path is named (here: a probe no node can read).
    blind = nodes_not_seeing(tmp_path / "not-mounted-here", "token")
    assert len(blind) == len([n for n in ray_local.nodes() if n["Alive"]]) >= 1


def test_a_blind_node_stops_the_build_before_work(ray_local, tmp_path, monkeypatch):
    import hoiforge.pipeline.visibility as visibility

    monkeypatch.setattr(visibility, "nodes_not_seeing", lambda probe, token: ["10.0.0.7"])
    shards = tmp_path / "out" / "shards"
    shards.mkdir(parents=True)
    with pytest.raises(OutputError, match=r"not the same folder on every node: 1 node\(s\) \(10.0.0.7\).*Mount the shared filesystem"):
        visibility.check_out_visible(shards)
