"""A recipe's ``concurrency`` larger than the cluster (issue #27 item 7): refused before the plan runs,
with the cluster's size in the message (``concurrency: 1000000`` used to hang the build silently)."""

from __future__ import annotations

import threading

import pytest

from hoiforge import stages
from hoiforge.errors import RecipeError
from hoiforge.pipeline.cluster import check_pools, plan_segments
from hoiforge.pipeline.recipe import parse_recipe
from hoiforge.pipeline.runner import instantiate
from tests.conftest import DATA


@pytest.fixture(autouse=True)
def explode_registered(monkeypatch):
    monkeypatch.setitem(stages.REGISTRY, "explode", "tests.faults.stages:Explode")  # an actor-pool stage without weights


def _recipe(concurrency: int | None, **resources):
    pool = {"concurrency": concurrency} if concurrency else {}
    return parse_recipe({"name": "pools", "stages": [{"stage": "decode"}, {"stage": "explode", "resources": {**pool, **resources}}]})


def test_a_pool_larger_than_the_cluster_is_refused_with_its_size():
    _, segments = plan_segments(instantiate(_recipe(1_000_000)), cpus=2, gpus=0)
    with pytest.raises(RecipeError) as e:
        check_pools(segments, {"CPU": 2.0})
    msg = str(e.value)
    assert "stage explode: concurrency 1000000 asks for 1000000 actors" in msg
    assert "this Ray cluster has 2 CPU (2 CPU, 0 GPU)" in msg and "at most 2" in msg
    assert "\n" not in msg

    _, segments = plan_segments(instantiate(_recipe(4, num_gpus=1)), cpus=16, gpus=1)
    with pytest.raises(RecipeError, match="4 actors of 1 GPU .* this Ray cluster has 1 GPU .*at most 1"):
        check_pools(segments, {"CPU": 16.0, "GPU": 1.0})


def test_pools_that_fit_and_default_pools_pass():
    for recipe in (_recipe(2, num_cpus=1), _recipe(1), _recipe(None)):
        _, segments = plan_segments(instantiate(recipe), cpus=2, gpus=0)
        assert segments[-1].execution == "actors"
        check_pools(segments, {"CPU": 2.0})


@pytest.mark.slow
def test_build_with_a_huge_concurrency_stops_at_once_with_one_sentence(ray_local, tmp_path):
    from hoiforge.pipeline.runner import build

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.png").write_bytes((DATA / "coffee.png").read_bytes())
    outcome: list = []

    def run() -> None:
        try:
            build([str(tmp_path / "in")], tmp_path / "out", _recipe(1_000_000), progress=False)
            outcome.append("built")
        except Exception as e:  # noqa: BLE001 - the test inspects it
            outcome.append(e)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(180)  # before the fix: never returned
    assert outcome, "the build is still running after 180 s"
    assert isinstance(outcome[0], RecipeError) and "this Ray cluster has 2 CPU" in str(outcome[0])
    assert not (tmp_path / "out" / "manifest.parquet").exists()
