"""Issue #27 item 9: a run killed mid-way and resumed writes exactly the uninterrupted run's metrics.jsonl
(loss and lr of every step; timings excepted), and two fresh runs with the same seed are identical.

Each trainer reads its real shard loader here (no test batches): the loader's stream is what a
resume used to lose. The kill is an exception from the loss at step 4 (after the step-2 checkpoint),
so the resumed run restarts from step 2 and redoes 3 and 4.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hoiforge.training.core import read_metrics

pytestmark = pytest.mark.usefixtures("torch_one_thread")

TIMINGS = ("it_s", "elapsed_s")


class Killed(Exception):
    pass


def rows(run: Path, stage: str) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMINGS} for r in read_metrics(run, stage) if "loss" in r]


def killing(loss, at_call: int):
    calls = {"n": 0}

    def wrapped(*args, **kw):
        calls["n"] += 1
        if calls["n"] == at_call:
            raise Killed
        return loss(*args, **kw)

    return wrapped


# -- VirtualModel ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def vm_data(tmp_path_factory) -> Path:
    from tests.vm_shards import write_out

    out = tmp_path_factory.mktemp("vm") / "out"
    write_out(out, 6, per_shard=3, rle=True)
    return out


def vm_config():
    from hoiforge.training.virtualmodel.config import load_config

    cfg = load_config("tiny")
    every = {"validate_every": None, "checkpoint_every": 2, "checkpoints_keep": 3}  # each stage's TrainSettings
    t = cfg.training.model_copy(update={s: getattr(cfg.training, s).model_copy(update=every) for s in ("base", "branches")})
    return cfg.model_copy(update={"training": t, "data": cfg.data.model_copy(update={"shuffle_buffer": 4})})


@pytest.mark.parametrize("stage", ["base", "branches"])
def test_virtualmodel_resumed_after_a_kill_logs_the_uninterrupted_metrics(tmp_path, vm_data, stage, monkeypatch):
    from hoiforge.training.virtualmodel.train import VirtualModelTrainer

    cfg = vm_config()
    VirtualModelTrainer(cfg, [vm_data], tmp_path / "full").fit((stage,), max_steps=4)
    again = VirtualModelTrainer(cfg, [vm_data], tmp_path / "again")
    again.fit((stage,), max_steps=4)
    assert rows(tmp_path / "again", stage) == rows(tmp_path / "full", stage)  # fresh runs, same seed: identical

    loss_name = "_base_loss" if stage == "base" else "_branches_loss"
    killed = VirtualModelTrainer(cfg, [vm_data], tmp_path / "part")
    monkeypatch.setattr(killed, loss_name, killing(getattr(killed, loss_name), 4))
    with pytest.raises(Killed):
        killed.fit((stage,), max_steps=4)
    assert [r["step"] for r in rows(tmp_path / "part", stage)] == [1, 2, 3]
    resumed = VirtualModelTrainer(cfg, [vm_data], tmp_path / "part").fit((stage,), max_steps=4, resume=True)
    assert resumed[stage].resumed_from == 2
    full = rows(tmp_path / "full", stage)
    assert [r["step"] for r in full] == [1, 2, 3, 4]
    assert rows(tmp_path / "part", stage) == full


# -- ShoeModel -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shoe_data(tmp_path_factory) -> Path:
    from tests.shoemodel_fixtures import shoeleg_samples, write_out

    tmp = tmp_path_factory.mktemp("shoeleg")
    return write_out(tmp / "out", shoeleg_samples(tmp))


def shoe_config(module: str):
    from hoiforge.training.shoemodel.config import preset

    cfg = preset("tiny")
    part = getattr(cfg, module)
    train = part.train.model_copy(update={"checkpoint_every": 2, "shuffle_buffer": 4, "validate_every": None})
    return cfg.model_copy(update={module: part.model_copy(update={"train": train})})


@pytest.mark.parametrize("module", ["wd", "lps1", "lps2", "sw"])
def test_shoemodel_resumed_after_a_kill_logs_the_uninterrupted_metrics(tmp_path, shoe_data, module, monkeypatch):
    from hoiforge.training.core import loop
    from hoiforge.training.shoemodel.train import train

    cfg = shoe_config(module)
    quiet = {"progress": False, "say": lambda _: None}
    train(module, [str(shoe_data)], cfg, tmp_path / "full", max_steps=4, **quiet)
    train(module, [str(shoe_data)], cfg, tmp_path / "again", max_steps=4, **quiet)
    full = rows(tmp_path / "full" / module, module)
    assert [r["step"] for r in full] == [1, 2, 3, 4]
    assert rows(tmp_path / "again" / module, module) == full  # fresh runs, same seed: identical

    real_init = loop.Trainer.__init__

    def init(self, *args, **kw):
        real_init(self, *args, **kw)
        self.loss = killing(self.loss, 4)

    with monkeypatch.context() as m:
        m.setattr(loop.Trainer, "__init__", init)
        with pytest.raises(Killed):
            train(module, [str(shoe_data)], cfg, tmp_path / "part", max_steps=4, **quiet)
    assert [r["step"] for r in rows(tmp_path / "part" / module, module)] == [1, 2, 3]
    summary = train(module, [str(shoe_data)], cfg, tmp_path / "part", max_steps=4, resume=True, **quiet)
    assert summary.resumed_from == 2
    assert rows(tmp_path / "part" / module, module) == full
