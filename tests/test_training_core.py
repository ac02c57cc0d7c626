"""The shared training core on a small regression problem: loss falls, resume is exact, files land where documented."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from torch import nn

from hoiforge.training.core import EMAConfig, OptimizerConfig, TrainConfig, Trainer, list_checkpoints, read_metrics

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))


def batches(start_step: int):
    # A deterministic function of the step: resuming at step s yields what the full run saw from s on.
    step = start_step
    while True:
        g = torch.Generator().manual_seed(1000 + step)
        x = torch.randn(8, 4, generator=g)
        yield {"x": x, "y": x.sum(dim=1, keepdim=True) * 0.5}
        step += 1


def noisy_loss(batch, models):
    # Draws from the global RNG, as a diffusion loss draws noise: the core's per-step seeding makes it reproducible.
    jitter = 0.01 * torch.randn_like(batch["y"])
    return nn.functional.mse_loss(models["net"](batch["x"]), batch["y"] + jitter)


def config(tmp_path, **kw) -> TrainConfig:
    base = dict(
        output_dir=tmp_path / "run", name="toy", max_steps=6, optimizer=OptimizerConfig(lr=1e-2), checkpoint_every=2, progress=False
    )
    return TrainConfig(**{**base, **kw})


def test_loss_falls_and_files_land_where_documented(tmp_path):
    cfg = config(tmp_path, max_steps=60, checkpoint_every=20, checkpoints_keep=2, validate_every=30, ema=EMAConfig(decay=0.9))
    seen = []

    def validate(step, models):
        seen.append(step)
        return {"grey": Image.new("RGB", (8, 8), (step, step, step))}

    result = Trainer(cfg, trainable={"net": make_model()}, data=batches, loss=noisy_loss, validate=validate, metadata={"k": "v"}).fit()
    rows = read_metrics(cfg.output_dir, "toy")
    assert [r["step"] for r in rows] == list(range(1, 61))
    assert {"loss", "lr", "it_s", "elapsed_s"} <= set(rows[0])
    assert sum(r["loss"] for r in rows[-5:]) < 0.2 * sum(r["loss"] for r in rows[:5])
    assert [s for s, _ in list_checkpoints(cfg.output_dir, "toy")] == [40, 60]  # rotation keeps 2
    assert seen == [30, 60] and (cfg.output_dir / "validation" / "toy-00000030-grey.png").exists()
    weights = load_file(result.weights["net"])
    assert set(weights) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    ema = load_file(result.ema_weights["net"])
    assert not torch.equal(ema["0.weight"], weights["0.weight"])  # the EMA lags the weights
    meta = json.loads((list_checkpoints(cfg.output_dir, "toy")[-1][1] / "hoiforge.json").read_text())
    assert meta["k"] == "v" and meta["step"] == 60


@pytest.mark.parametrize("with_ema", [False, True])
def test_resume_reproduces_the_next_steps(tmp_path, with_ema):
    ema = EMAConfig(decay=0.5) if with_ema else None
    full = Trainer(config(tmp_path / "full", ema=ema), trainable={"net": make_model()}, data=batches, loss=noisy_loss).fit()
    full_rows = read_metrics(tmp_path / "full" / "run")

    part_cfg = config(tmp_path / "part", ema=ema, max_steps=4)
    Trainer(part_cfg, trainable={"net": make_model()}, data=batches, loss=noisy_loss).fit()
    resumed = Trainer(config(tmp_path / "part", ema=ema), trainable={"net": make_model()}, data=batches, loss=noisy_loss).fit(resume=True)
    assert resumed.resumed_from == 4
    part_rows = read_metrics(tmp_path / "part" / "run")
    assert [r["step"] for r in part_rows] == [1, 2, 3, 4, 5, 6]
    assert [r["loss"] for r in part_rows] == [r["loss"] for r in full_rows]  # exact, steps 5 and 6 included
    for key in ("weights", "ema_weights"):
        a, b = getattr(full, key), getattr(resumed, key)
        for name in a:
            wa, wb = load_file(a[name]), load_file(b[name])
            assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_resume_without_a_checkpoint_starts_fresh_and_a_finished_run_is_a_no_op(tmp_path):
    cfg = config(tmp_path, max_steps=2)
    r1 = Trainer(cfg, trainable={"net": make_model()}, data=batches, loss=noisy_loss).fit(resume=True)
    assert r1.resumed_from is None and r1.step == 2
    r2 = Trainer(cfg, trainable={"net": make_model()}, data=batches, loss=noisy_loss).fit(resume=True)
    assert r2.resumed_from == 2 and r2.step == 2 and len(read_metrics(cfg.output_dir)) == 2


def test_frozen_modules_get_no_gradient(tmp_path):
    frozen = nn.Linear(4, 4)
    before = frozen.weight.detach().clone()

    def loss(batch, models):
        return nn.functional.mse_loss(models["net"](models["pre"](batch["x"])), batch["y"])

    Trainer(config(tmp_path, max_steps=3), trainable={"net": make_model()}, frozen={"pre": frozen}, data=batches, loss=loss).fit()
    assert torch.equal(frozen.weight, before) and not frozen.weight.requires_grad


def test_samples_the_loaders_skipped_are_written_to_metrics_and_never_reach_the_loss(tmp_path, caplog):
    """A loader batch carries ``skipped`` (samples its worker could not decode since its previous batch);
    each metrics row holds the sum since the previous row, the run's total is logged once at the end."""

    def with_skips(start_step: int):
        for step, batch in enumerate(batches(start_step), start=start_step):
            yield {**batch, "skipped": 2 if step % 3 == 0 else 0}

    def loss(batch, models):
        assert "skipped" not in batch
        return noisy_loss(batch, models)

    cfg = config(tmp_path, max_steps=6, log_every=2, checkpoint_every=6)
    with caplog.at_level("WARNING", logger="hoiforge.training"):
        Trainer(cfg, trainable={"net": make_model()}, data=with_skips, loss=loss).fit()
    rows = read_metrics(cfg.output_dir, "toy")
    assert [(r["step"], r["skipped"]) for r in rows] == [(2, 2), (4, 2), (6, 0)]  # data steps 0 and 3 skipped 2 each
    assert "4 samples skipped in this run" in caplog.text
