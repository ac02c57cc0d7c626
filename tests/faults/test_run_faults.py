"""Issue #27 items 8, 11, 12: faults while training a RUN, on the shared training core (a small regression).

8. two trainers in one RUN: the second is refused at once in the OUT lock's words, the first finishes;
11. a truncated newest checkpoint: one warning naming it, ``--resume`` continues from the newest complete one;
12. a full disk while saving: one sentence (what to free, rerun with --resume), the previous checkpoint intact.
"""

from __future__ import annotations

import errno
import logging
import os
import subprocess
import threading
from pathlib import Path

import pytest
import torch
from torch import nn

from hoiforge.errors import OutputError
from hoiforge.training.core import OptimizerConfig, TrainConfig, Trainer, list_checkpoints, read_metrics
from hoiforge.training.core import checkpoints as ckpt

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def model(width: int = 16) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, width), nn.Tanh(), nn.Linear(width, 1))


def batches(start_step: int):
    step = start_step
    while True:
        g = torch.Generator().manual_seed(1000 + step)
        x = torch.randn(8, 4, generator=g)
        yield {"x": x, "y": x.sum(dim=1, keepdim=True)}
        step += 1


def loss(batch, models):
    return nn.functional.mse_loss(models["net"](batch["x"]), batch["y"])


def config(run: Path, **kw) -> TrainConfig:
    base = dict(output_dir=run, name="toy", max_steps=4, optimizer=OptimizerConfig(lr=1e-2), checkpoint_every=2, progress=False)
    return TrainConfig(**{**base, **kw})


def losses(run: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in read_metrics(run, "toy")]


# -- 8: one trainer per RUN --------------------------------------------------------------------
def test_a_second_trainer_on_the_same_run_is_refused_and_the_first_finishes(tmp_path):
    run = tmp_path / "run"
    inside, release = threading.Event(), threading.Event()

    def slow(start_step):
        for i, batch in enumerate(batches(start_step)):
            if start_step == 0 and i == 1:  # the first trainer pauses after its first step
                inside.set()
                assert release.wait(60)
            yield batch

    first: dict = {}

    def train_first():
        try:
            first["result"] = Trainer(config(run), trainable={"net": model()}, data=slow, loss=loss).fit()
        except BaseException as e:  # noqa: BLE001 - reported below
            first["error"] = e

    thread = threading.Thread(target=train_first)
    thread.start()
    try:
        assert inside.wait(60)
        with pytest.raises(OutputError) as refused:
            Trainer(config(run), trainable={"net": model()}, data=batches, loss=loss).fit(resume=True)
    finally:
        release.set()
        thread.join(60)
    message = str(refused.value)
    assert f"{run} is being written by pid {os.getpid()} on " in message and "(or use another --out)" in message
    assert "\n" not in message
    assert "error" not in first, first.get("error")
    assert first["result"].step == 4 and [s for s, _ in list_checkpoints(run, "toy")] == [2, 4]
    # Released when the first ends: the next trainer on the RUN is let in.
    assert Trainer(config(run, max_steps=5), trainable={"net": model()}, data=batches, loss=loss).fit(resume=True).step == 5


# -- 11: checksums, fallback to the newest complete checkpoint --------------------------------
def test_a_truncated_newest_checkpoint_is_named_and_resume_falls_back(tmp_path, caplog):
    full = tmp_path / "full"
    Trainer(config(full, max_steps=6), trainable={"net": model()}, data=batches, loss=loss).fit()

    run = tmp_path / "run"
    Trainer(config(run), trainable={"net": model()}, data=batches, loss=loss).fit()
    newest = ckpt.checkpoint_dir(run, "toy", 4)
    assert (newest / ckpt.CHECKSUMS).is_file() and ckpt.verify(newest) is None
    weights = newest / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])

    with caplog.at_level(logging.WARNING, logger="hoiforge.training"):
        result = Trainer(config(run, max_steps=6), trainable={"net": model()}, data=batches, loss=loss).fit(resume=True)
    assert result.resumed_from == 2
    named = [r.getMessage() for r in caplog.records if str(weights) in r.getMessage()]
    assert len(named) == 1 and "truncated" in named[0] and "\n" not in named[0]
    assert losses(run) == losses(full)  # steps 3-6 redone exactly


def test_no_complete_checkpoint_is_one_sentence_naming_the_file(tmp_path):
    run = tmp_path / "run"
    Trainer(config(run, max_steps=2), trainable={"net": model()}, data=batches, loss=loss).fit()
    only = ckpt.checkpoint_dir(run, "toy", 2) / "optimizer.bin"
    only.write_bytes(b"\0" * only.stat().st_size)  # same size, other bytes: a corrupted copy
    with pytest.raises(ckpt.CheckpointError) as broken:
        Trainer(config(run, max_steps=3), trainable={"net": model()}, data=batches, loss=loss).fit(resume=True)
    message = str(broken.value)
    assert str(only) in message and "does not match its checksum" in message and "\n" not in message


def test_a_checkpoint_without_checksums_is_incomplete(tmp_path):
    run = tmp_path / "run"
    Trainer(config(run, max_steps=4), trainable={"net": model()}, data=batches, loss=loss).fit()
    (ckpt.checkpoint_dir(run, "toy", 4) / ckpt.CHECKSUMS).unlink()
    assert ckpt.latest_complete(run, "toy")[0] == 2


# -- 12: a full disk while saving --------------------------------------------------------------
def _fail_second_save(monkeypatch, error: Exception):
    """The step-4 checkpoint's optimizer write fails as a full disk does, after writing part of its bytes."""
    real = torch.save

    def save(obj, f, *args, **kw):
        if ".tmp-toy-00000004" in str(f):
            Path(f).write_bytes(b"\0" * 64)
            raise error
        return real(obj, f, *args, **kw)

    monkeypatch.setattr(torch, "save", save)


@pytest.mark.parametrize(
    "error",
    [
        OSError(errno.ENOSPC, "No space left on device"),
        RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 4416 vs 4304"),
    ],
    ids=["ENOSPC", "torch-unexpected-pos"],
)
def test_a_full_disk_while_saving_is_one_sentence_and_resume_continues(tmp_path, monkeypatch, error):
    run = tmp_path / "run"
    with monkeypatch.context() as m:
        _fail_second_save(m, error)
        with pytest.raises(OutputError) as full:
            Trainer(config(run), trainable={"net": model()}, data=batches, loss=loss).fit()
    message = str(full.value)
    previous = ckpt.checkpoint_dir(run, "toy", 2)
    assert "is full" in message and "free space" in message and "--resume" in message and "\n" not in message
    assert f"checkpoint {previous} (step 2) is intact" in message
    assert not list((run / ckpt.CHECKPOINTS).glob(".tmp-*"))  # the half-written checkpoint's space is freed
    assert ckpt.verify(previous) is None
    result = Trainer(config(run), trainable={"net": model()}, data=batches, loss=loss).fit(resume=True)
    assert result.resumed_from == 2 and result.step == 4


@pytest.fixture
def tiny_disk(tmp_path):
    """A 600 kB tmpfs (root only): room for one checkpoint of the wide model below, not two."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip() or done.returncode}); the patched test covers it")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_really_full_tmpfs_while_saving_is_one_sentence(tiny_disk):
    run = tiny_disk / "run"
    cfg = config(run, checkpoints_keep=None)
    with pytest.raises(OutputError) as full:  # ~330 kB per checkpoint (weights + Adam moments)
        Trainer(cfg, trainable={"net": model(width=6000)}, data=batches, loss=loss).fit()
    assert "is full" in str(full.value) and "--resume" in str(full.value)
    assert [s for s, _ in list_checkpoints(run, "toy")] == [2] and ckpt.verify(ckpt.checkpoint_dir(run, "toy", 2)) is None


def test_generate_from_a_run_with_truncated_weights_is_one_sentence_naming_the_file(tmp_path):
    from typer.testing import CliRunner

    from hoiforge.cli import app
    from tests.vm_shards import write_out

    data, run = tmp_path / "out", tmp_path / "run"
    write_out(data, 2, per_shard=2, rle=True)
    runner = CliRunner()
    trained = runner.invoke(app, ["train", "virtualmodel", "--data", str(data), "--config", "tiny", "--out", str(run), "--max-steps", "1"])
    assert trained.exit_code == 0, trained.output
    weights = run / "weights" / "branches" / "branches.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    product = tmp_path / "product.png"
    from PIL import Image

    Image.new("RGBA", (64, 64), (200, 10, 10, 255)).save(product)
    pose = tmp_path / "pose.png"
    Image.new("RGB", (64, 64)).save(pose)
    result = runner.invoke(app, ["generate", "virtualmodel", "--checkpoint", str(run), "--product", str(product), "--pose", str(pose),
                                 "--prompt", "x", "--out", str(tmp_path / "x.png"), "--size", "64"])  # fmt: skip
    output = " ".join(result.output.split())
    assert result.exit_code == 2 and str(weights) in output and "truncated" in output and "Traceback" not in result.output
