"""The paper configs at the papers' sizes, on the meta device (no weights, no accelerator): parameter counts,
the papers' training settings, global batch plans and the ``--dry-run`` memory plan."""

from __future__ import annotations

import math

import pytest
import torch
from typer.testing import CliRunner

from hoiforge.cli import app
from hoiforge.training.core import BatchPlanError, ConfigError, TrainSettings, plan_batch
from hoiforge.training.shoemodel import dry_run as SD
from hoiforge.training.shoemodel.config import ModuleTrain
from hoiforge.training.shoemodel.config import load_config as shoe_config
from hoiforge.training.virtualmodel import dry_run as VD
from hoiforge.training.virtualmodel.config import load_config as vm_config
from hoiforge.training.virtualmodel.model import VirtualModelBranches

runner = CliRunner()


def millions(module: torch.nn.Module) -> float:
    return round(sum(p.numel() for p in module.parameters()) / 1e6, 1)


@pytest.mark.parametrize(
    ("global_batch", "world", "limit", "per_device", "accumulation"),
    [(256, 8, 32, 32, 1), (256, 1, 32, 32, 8), (128, 8, 16, 16, 1), (240, 8, 16, 15, 2), (16, 4, None, 4, 1), (4096, 8, 512, 512, 1)],
)
def test_a_global_batch_splits_into_per_device_batch_and_accumulation(global_batch, world, limit, per_device, accumulation):
    plan = plan_batch(global_batch, world, limit)
    assert (plan.per_device_batch, plan.accumulation_steps) == (per_device, accumulation)
    assert plan.per_device_batch * plan.world_size * plan.accumulation_steps == global_batch


def test_a_global_batch_that_cannot_be_split_is_refused_before_training(tmp_path):
    with pytest.raises(BatchPlanError, match="global batch 128 cannot be split over 3 processes"):
        plan_batch(128, 3, 16)
    from hoiforge.training.virtualmodel.train import VirtualModelTrainer

    with pytest.raises(BatchPlanError, match="global batch 2 cannot be split over 4 processes"):
        VirtualModelTrainer(vm_config("tiny"), [], tmp_path).plans(("base",), world=4)


def test_one_settings_model_for_every_trainer():
    cfg, shoe = vm_config("sd15"), shoe_config("paper")
    assert isinstance(cfg.training.base, TrainSettings) and isinstance(shoe.sw.train, TrainSettings)
    assert isinstance(shoe.sw.train, ModuleTrain)
    with pytest.raises(ValueError, match="gradient_accumulation_steps is derived now"):
        TrainSettings(batch_size=8, lr=1e-4, max_steps=1, gradient_accumulation_steps=2)
    with pytest.raises(ValueError, match="exactly one of max_steps and epochs"):
        TrainSettings(batch_size=8, lr=1e-4, max_steps=1, epochs=2)
    assert TrainSettings(batch_size=240, lr=1e-4, epochs=180).steps(10_000) == math.ceil(180 * 10_000 / 240)
    with pytest.raises(ConfigError, match="needs the size of the training split"):
        TrainSettings(batch_size=240, lr=1e-4, epochs=180).steps(0)


def test_older_virtualmodel_configs_still_load(tmp_path):
    """A RUN config.yaml written before the global batch: per-process batch + accumulation, shared keys at training level."""
    old = vm_config("tiny").model_dump(mode="json")
    old["training"] = {
        "base": {"batch_size": 8, "gradient_accumulation_steps": 4, "lr": 1e-5, "max_steps": 50},
        "branches": {"batch_size": 8, "gradient_accumulation_steps": 2, "lr": 2e-5, "max_steps": 50},
        "condition_dropout": 0.1,
        "mixed_precision": "bf16",
        "gradient_checkpointing": True,
        "ema": None,
        "checkpoint_every": 1000,
        "checkpoints_keep": 3,
        "validate_every": 1000,
        "log_every": 1,
        "seed": 7,
    }
    import yaml

    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(old))
    t = vm_config(path).training
    assert (t.base.batch_size, t.base.per_device_batch, t.branches.batch_size, t.branches.lr) == (32, 8, 16, 2e-5)
    assert t.base.mixed_precision == "bf16" and t.branches.gradient_checkpointing and t.base.seed == 7 and t.base.optimizer == "adam"


def test_the_paper_configs_hold_the_papers_settings():
    vm = vm_config("sd15")
    b, br = vm.training.base, vm.training.branches
    assert (b.batch_size, br.batch_size, b.lr, br.lr, b.optimizer, br.optimizer) == (256, 128, 1e-5, 1e-5, "adam", "adam")
    assert vm.training.condition_dropout == 0.1 and (vm.generate.steps, vm.generate.cfg) == (30, 7.0)
    assert vm.branches.channel_fraction == 0.4
    from hoiforge.training.virtualmodel.components import SD_SCHEDULE

    assert SD_SCHEDULE["num_train_timesteps"] == 1000

    p = shoe_config("paper")
    assert (p.wd.size, p.wd.train.max_steps, p.wd.train.lr, p.wd.train.batch_size) == (640, 160_000, 6e-5, 16)
    l1 = p.lps1
    assert (l1.size, l1.train.epochs, l1.train.max_steps, l1.train.lr, l1.train.batch_size) == (256, 180, None, 5e-4, 240)
    assert (l1.rotate_deg, l1.rotate_p, l1.flip_p) == (15.0, 0.5, 0.0)  # "[-15, 15] degree range and 0.5 probability", no flip
    l2 = p.lps2
    assert (l2.timesteps, l2.train.max_steps, l2.train.lr, l2.train.batch_size, l2.rotate_deg) == (25, 700_000, 1e-4, 4096, 15.0)
    assert (p.sw.resolution, p.sw.train.max_steps, p.sw.train.lr, p.sw.train.batch_size) == (512, 500_000, 1e-5, 128)


def test_lps1_rotation_follows_the_config():
    """Drawn angles stay in [-15, 15] and about half the draws rotate (p 0.5)."""
    import numpy as np

    from hoiforge.training.shoemodel.augment import keypoint_affine

    rng = np.random.default_rng(0)
    c = shoe_config("paper").lps1
    angles = []
    for _ in range(2000):
        m = keypoint_affine(rng, c.size, c.rotate_deg, c.rotate_p, (1.0, 1.0), 0.0)
        angles.append(np.degrees(np.arctan2(m[1, 0], m[0, 0])))
    angles = np.abs(np.array(angles))
    assert angles.max() <= 15.0 + 1e-9
    assert abs((angles > 1e-9).mean() - 0.5) < 0.04


@pytest.fixture(scope="module")
def sd15_meta():
    cfg = vm_config("sd15")
    return cfg, VD.meta_components(cfg)


def test_virtualmodel_at_the_papers_size(sd15_meta):
    cfg, comp = sd15_meta
    assert next(comp.unet.parameters()).device.type == "meta"
    assert millions(comp.unet) == 859.5  # SD1.5 UNet
    with torch.device("meta"):
        branches = VirtualModelBranches(comp.unet, comp.branch_spec(cfg))
    assert tuple(branches.ib.unet.config.block_out_channels) == (128, 256, 512, 512)  # 40 % width
    # IB + CB with their condition blocks. 380.9M with 1x1 projections of F_H and a zero conv after every output layer;
    # 407.3M wired as supp. §10 says (3x3 zero convs for F_H, additions on the 9 output transformer blocks' inputs).
    assert millions(branches) == 407.3


def test_shoemodel_modules_at_the_papers_size():
    cfg = shoe_config("paper")
    sizes = {m: millions(SD.build_meta(cfg, m)[0][m]) for m in ("wd", "lps1", "lps2")}
    assert sizes == {"wd": 84.6, "lps1": 85.9, "lps2": 4.8}  # SegFormer-B5 (3 classes), ViTPose-B (8 points), LpS2 MLP 512 x 4
    trainable, frozen = SD.build_meta(cfg, "sw")
    assert millions(trainable["controlnet"]) == 361.3 and trainable["controlnet"].config.conditioning_channels == 6
    assert millions(frozen["unet"]) == 859.5


def cli(*args):
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def test_dry_run_sw_paper_fits_80gb():
    code, out = cli("train", "shoemodel", "--module", "sw", "--config", "paper", "--dry-run", "--world-size", "8")
    assert code == 0, out
    assert "global batch 128 = 16 per device x 8 device(s) x 1 accumulation" in out
    assert "361.3M trainable" in out and "gradient checkpointing on" in out and "mixed precision fp16" in out
    assert "pretrained weights NOT loaded" in out and "'stable-diffusion-v1-5'" in out
    assert "fits 80 GB" in out and "NOT fit" not in out


def test_dry_run_sw_at_128_per_process_does_not_fit(tmp_path):
    path = tmp_path / "sw128.yaml"
    path.write_text("base: paper\nsw: {train: {per_device_batch: 128, gradient_checkpointing: false}}\n")
    code, out = cli("train", "shoemodel", "--module", "sw", "--config", path, "--dry-run", "--world-size", "1")
    assert code == 1 and "128 per device" in out and "does NOT fit 80 GB" in out


def test_dry_run_virtualmodel_sd15_fits_80gb():
    code, out = cli("train", "virtualmodel", "--config", "sd15", "--dry-run", "--world-size", "8")
    assert code == 0, out
    assert "base: global batch 256 = 32 per device x 8 device(s)" in out
    assert "branches: global batch 128 = 16 per device x 8 device(s)" in out
    assert "859.5M trainable" in out and "407.3M trainable" in out
    assert out.count("fits 80 GB") == 2 and "activations" in out and "measured" in out
    assert "pretrained weights NOT loaded" in out


def test_epochs_count_the_kept_training_samples(tmp_path):
    """``epochs`` (LpS phase 1: 180) becomes steps from the index's kept samples and the global batch."""
    from hoiforge.datasets.loader import split_size
    from hoiforge.training.shoemodel.train import _train_samples
    from tests.vm_shards import write_out

    out = tmp_path / "out"
    write_out(out, 5, per_shard=2)
    assert split_size([out]) == 5
    lps1 = shoe_config("paper").lps1.train
    assert lps1.steps(_train_samples([str(out)], lps1)) == math.ceil(180 * 5 / 240)


def test_dry_run_input_errors_are_one_sentence():
    for args, message in (
        (("train", "virtualmodel", "--config", "sd15", "--dry-run", "--stage", "foo"), "--stage must be base or branches"),
        (("train", "shoemodel", "--module", "sw", "--config", "paper", "--dry-run", "--gpu-memory", "lots"), "is not a size such as 80GB"),
        (("train", "virtualmodel", "--config", "tiny", "--dry-run", "--world-size", "3"), "global batch 2 cannot be split over 3"),
        (("train", "virtualmodel", "--config", "sd15"), "give --data OUT and --out RUN"),
    ):
        code, out = cli(*args)
        assert code == 2 and message in out and "Traceback" not in out, out


def test_activations_are_the_tensors_saved_for_backward():
    """Linear -> ReLU -> Linear on 8 x 10: the first input (320 B) and the ReLU output (640 B, read by ReLU's and the
    second Linear's backward, counted once); weights are not activations. Meta device and CPU agree."""
    from torch import nn

    from hoiforge.training.core.memory import parse_memory, saved_activation_bytes

    for device in ("meta", "cpu"):
        with torch.device(device):
            m = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 5))
            x = torch.zeros(8, 10)
        assert saved_activation_bytes(lambda m=m, x=x: m(x), [m]) == 8 * 10 * 4 + 8 * 20 * 4
    assert parse_memory("80GB") == parse_memory("80 GiB") == 80 * 2**30 and parse_memory("40960MB") == 40 * 2**30
