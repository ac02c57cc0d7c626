"""VirtualModel with the tiny config on CPU: the architecture's invariants, CFG dropout, both training stages,
exact resume, generation with Content Backfill, and the command line's one-line errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from hoiforge.cli import app
from hoiforge.training.core import read_metrics, seed_everything
from hoiforge.training.virtualmodel import conditioning as C
from hoiforge.training.virtualmodel.components import build_components
from hoiforge.training.virtualmodel.config import load_config
from hoiforge.training.virtualmodel.model import VirtualModelBranches, predict_noise
from hoiforge.training.virtualmodel.pipeline import backfill
from hoiforge.training.virtualmodel.train import VirtualModelTrainer
from tests.vm_shards import write_out

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def tiny():
    cfg = load_config("tiny")
    return cfg, build_components(cfg)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("vm") / "out"
    write_out(out, 6, per_shard=3, rle=True)
    return out


def conditions(batch: int, size: int, view_tokens: int, view_dim: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {
        "pose": torch.rand(batch, 3, size, size, generator=g),
        "edges": torch.rand(batch, 1, size, size, generator=g),
        "view": torch.randn(batch, view_tokens, view_dim, generator=g),
        "obj": torch.rand(batch, 3, size, size, generator=g) * 2 - 1,
        "mask": (torch.rand(batch, 1, size, size, generator=g) > 0.5).float(),
    }


@pytest.mark.parametrize(
    "ablation", [{}, {"content_branch": False}, {"identity_branch": False}, {"close_view": False}], ids=["full", "wo-CB", "wo-IB", "wo-Cv"]
)
def test_untrained_branches_leave_the_base_unet_output_unchanged(tiny, ablation):
    cfg, comp = tiny
    spec = comp.branch_spec(cfg.model_copy(update={"branches": cfg.branches.model_copy(update=ablation)}))
    torch.manual_seed(0)
    branches = VirtualModelBranches(comp.unet, spec)
    x = torch.randn(2, 4, 8, 8)
    t = torch.tensor([3, 700])
    text = torch.randn(2, 77, 32)
    with torch.no_grad():
        base = comp.unet(x, t, text).sample
        full = predict_noise(comp.unet, branches, x, t, text, **conditions(2, 64, spec.view_tokens, spec.view_dim))
    assert torch.equal(full, base)  # bit for bit: the zero convs add exact zeros
    # ... and the branches are really wired in: once a zero conv moves, the output moves.
    with torch.no_grad():
        (branches.ib or branches.cb).zero_convs[-1].bias.fill_(0.5)
        moved = predict_noise(comp.unet, branches, x, t, text, **conditions(2, 64, spec.view_tokens, spec.view_dim))
    assert not torch.allclose(moved, base)


def test_branches_are_wired_as_supplement_10_says(tiny):
    """F_H through zero-initialised 3x3 convs; F_IB/F_CB added on the INPUT of each transformer block of the output layers."""
    from hoiforge.training.virtualmodel import unet_walk

    cfg, comp = tiny
    torch.manual_seed(0)
    branches = VirtualModelBranches(comp.unet, comp.branch_spec(cfg))
    attn_inputs = [a for b in comp.unet.up_blocks for a in (getattr(b, "attentions", None) or [])]
    for branch in (branches.ib, branches.cb):
        assert all(c.kernel_size == (3, 3) and not c.weight.any() and not c.bias.any() for c in branch.from_base)
        assert len(branch.zero_convs) == len(attn_inputs) == len(unet_walk.output_attention_channels(comp.unet))
        assert len(attn_inputs) < len(unet_walk.output_channels(comp.unet))  # the up level without attention gets nothing

    seen: dict[str, list[torch.Tensor]] = {"base": [], "wired": []}
    key = ["base"]
    hooks = [a.register_forward_pre_hook(lambda m, args, kw: seen[key[0]].append(args[0].clone()), with_kwargs=True) for a in attn_inputs]
    x, t, text = torch.randn(2, 4, 8, 8), torch.tensor([3, 700]), torch.randn(2, 77, 32)
    conds = conditions(2, 64, branches.spec.view_tokens, branches.spec.view_dim)
    try:
        with torch.no_grad():
            comp.unet(x, t, text)
            key[0] = "wired"
            branches.ib.zero_convs[0].bias.fill_(0.25)
            predict_noise(comp.unet, branches, x, t, text, **conds)
    finally:
        for h in hooks:
            h.remove()
    # The first output transformer block sees exactly the base's input + the IB's constant 0.25.
    assert torch.allclose(seen["wired"][0], seen["base"][0] + 0.25, atol=1e-6)


def test_branches_under_gradient_checkpointing_match_without(tiny):
    """The walk is not a forward hook: re-running blocks under checkpointing adds each branch feature once."""
    cfg, comp = tiny
    unet = type(comp.unet).from_config(comp.unet.config)
    unet.load_state_dict(comp.unet.state_dict())
    torch.manual_seed(0)
    branches = VirtualModelBranches(unet, comp.branch_spec(cfg))
    with torch.no_grad():
        for conv in (*branches.ib.zero_convs, *branches.ib.from_base):
            conv.weight.normal_(0, 0.02)
    x, t, text = torch.randn(2, 4, 8, 8), torch.tensor([3, 700]), torch.randn(2, 77, 32)
    conds = conditions(2, 64, branches.spec.view_tokens, branches.spec.view_dim)

    def grads():
        branches.zero_grad()
        predict_noise(unet, branches, x, t, text, **conds).square().mean().backward()
        return [p.grad.clone() for p in branches.parameters() if p.grad is not None]

    branches.train()
    plain = grads()
    branches.enable_gradient_checkpointing()
    unet.enable_gradient_checkpointing()
    checkpointed = grads()
    assert len(plain) == len(checkpointed) > 0
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(plain, checkpointed, strict=True))


def test_branch_width_is_40_percent_and_ib_has_a_second_cross_attention(tiny):
    cfg, comp = tiny
    branches = VirtualModelBranches(comp.unet, comp.branch_spec(cfg))
    assert tuple(branches.ib.unet.config.block_out_channels) == (16, 24)  # 40 % of (32, 64), to multiples of 8 groups
    dual = [m for n, m in branches.ib.named_modules() if n.endswith("attn2.processor")]
    assert dual and all(hasattr(m, "ca2") for m in dual)
    assert not [n for n, _ in branches.cb.named_modules() if n.endswith("processor.ca2")]


def test_cfg_dropout_rates_on_10k_draws():
    seed_everything(0)
    keep = C.condition_keep(10_000, 0.1)
    dropped = {name: 1 - k.float().mean().item() for name, k in keep.items()}
    assert set(dropped) == set(C.CONDITIONS)
    for name, rate in dropped.items():
        assert abs(rate - 0.1) < 0.01, (name, rate)  # 3.3 standard deviations
    both = (~keep["text"] & ~keep["pose"]).float().mean().item()
    assert abs(both - 0.01) < 0.004  # independent draws

    batch = {
        "pose": torch.ones(6, 3, 4, 4),
        "edges": torch.ones(6, 1, 4, 4),
        "object": torch.ones(6, 3, 4, 4),
        "mask": torch.ones(6, 1, 4, 4),
    }
    k = {n: torch.tensor([True, False, True, True, False, True]) for n in C.CONDITIONS}
    conds = C.branch_conditions(batch, torch.ones(6, 5, 8), k, torch.float32)
    for v in conds.values():
        assert v[[1, 4]].abs().sum() == 0 and v[[0, 2, 3, 5]].min() == 1


def fixed_batches(data: Path, cfg, stage: str, n: int = 3):
    """Real decoded batches as a function of the step: what the uninterrupted and the resumed run both see."""
    trainer = VirtualModelTrainer(cfg, [data], Path("/nonexistent"), workers=0)
    it = iter(trainer.loader(stage, 0, 2, mode="eval", crop="center", rank=0, world=1))
    batches = [next(it) for _ in range(n)]

    def source(stage_name, start):
        step = start
        while True:
            yield batches[step % len(batches)]
            step += 1

    return source, batches


def quiet(cfg, **training):
    stages = {s: getattr(cfg.training, s).model_copy(update={"validate_every": None, "checkpoint_every": 1}) for s in ("base", "branches")}
    t = cfg.training.model_copy(update={**stages, **training})
    return cfg.model_copy(update={"training": t})


def test_resume_reproduces_the_next_steps_loss(tmp_path, data):
    cfg = quiet(load_config("tiny"))
    source, _ = fixed_batches(data, cfg, "branches")
    VirtualModelTrainer(cfg, [data], tmp_path / "full", batches=source).fit(("branches",), max_steps=3)
    VirtualModelTrainer(cfg, [data], tmp_path / "part", batches=source).fit(("branches",), max_steps=2)
    resumed = VirtualModelTrainer(cfg, [data], tmp_path / "part", batches=source).fit(("branches",), max_steps=3, resume=True)
    assert resumed["branches"].resumed_from == 2
    full, part = read_metrics(tmp_path / "full"), read_metrics(tmp_path / "part")
    assert [r["step"] for r in part] == [1, 2, 3]
    assert part[2]["loss"] == full[2]["loss"] and [r["loss"] for r in part] == [r["loss"] for r in full]


def test_loss_falls_when_overfitting_one_batch(tmp_path, data):
    cfg = quiet(load_config("tiny"), condition_dropout=0.0)
    cfg.training.branches.lr = 2e-3
    source, batches = fixed_batches(data, cfg, "branches", n=1)
    trainer = VirtualModelTrainer(cfg, [data], tmp_path / "run", batches=source)

    def held_out_loss():
        # The same noise, timesteps and batch each time: only the weights differ.
        models = {"unet": trainer.components.unet, "branches": trainer.branches}
        models.update(vae=trainer.components.vae, text_encoder=trainer.components.text_encoder, dino=trainer.components.dino)
        seed_everything(1234)
        with torch.no_grad():
            return trainer._branches_loss(batches[0], models).item()

    before: list[float] = []
    original = trainer._fit_stage

    def fit_stage(stage, max_steps, resume):
        trainer.text = C.TextEncoder(trainer.components.tokenizer, trainer.components.text_encoder, cfg.models.text_chunks)
        from hoiforge.training.virtualmodel.components import noise_scheduler

        trainer.noise = noise_scheduler(trainer.components)
        torch.manual_seed(cfg.training.branches.seed)
        trainer.branches = VirtualModelBranches(trainer.components.unet, trainer.components.branch_spec(cfg))
        before.append(held_out_loss())
        return original(stage, max_steps, resume)

    trainer._fit_stage = fit_stage
    trainer.fit(("branches",), max_steps=25)
    after = held_out_loss()
    assert after < 0.6 * before[0], (before, after)


def cli(*args) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output + (result.stderr if result.stderr_bytes else "")


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, data) -> Path:
    """``hoiforge train virtualmodel`` for one step of each stage (validation images included)."""
    run = tmp_path_factory.mktemp("runs") / "run"
    code, output = cli("train", "virtualmodel", "--data", data, "--config", "tiny", "--out", run, "--max-steps", "1")
    assert code == 0, output
    assert "UNTRAINED" in output
    return run


def test_one_step_of_each_stage_through_the_cli(trained_run):
    rows = read_metrics(trained_run)
    assert [(r["stage"], r["step"]) for r in rows] == [("base", 1), ("branches", 1)]
    assert all(np.isfinite(r["loss"]) and r["it_s"] > 0 and r["lr"] == 1e-4 for r in rows)
    assert load_config(trained_run / "config.yaml").name == "tiny"
    for stage, model in (("base", "unet"), ("branches", "branches")):
        assert (trained_run / "weights" / stage / f"{model}.safetensors").exists()
        assert (trained_run / "checkpoints" / f"{stage}-00000001" / "model.safetensors").exists()
        assert Image.open(trained_run / "validation" / f"{stage}-00000001-sample.png").size[1] == 64
    # Finished stages resume as no-ops; without --resume the run refuses to be overwritten.
    code, output = cli("train", "virtualmodel", "--data", trained_run.parent, "--config", "tiny", "--out", trained_run, "--max-steps", "1")
    assert code == 2 and "error:" in output


@pytest.fixture(scope="module")
def product(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("product")
    rgb = np.asarray(Image.open(Path(__file__).parent / "data" / "coffee.png").convert("RGB").resize((96, 64)))
    mask = np.zeros((64, 96), np.uint8)
    mask[12:52, 30:72] = 255
    kp = np.zeros((133, 3))
    kp[:, 0], kp[:, 1], kp[:, 2] = np.linspace(5, 90, 133), np.linspace(3, 60, 133), 0.9
    paths = {"product": d / "p.png", "mask": d / "m.png", "small": d / "small.png", "kp": d / "kp.json"}
    Image.fromarray(rgb).save(paths["product"])
    Image.fromarray(mask).save(paths["mask"])
    Image.fromarray(mask[:32]).save(paths["small"])
    paths["kp"].write_text(json.dumps({"persons": [{"keypoints": kp.tolist()}]}))
    return paths


def test_generate_backfills_the_product_byte_for_byte(trained_run, product, tmp_path):
    out = tmp_path / "img.png"
    code, output = cli(
        "generate", "virtualmodel", "--checkpoint", trained_run, "--product", product["product"], "--mask", product["mask"],
        "--pose", product["kp"], "--prompt", "a woman holding a cup", "--out", out, "--steps", "2", "--size", "64",
    )  # fmt: skip
    assert code == 0, output
    generated = np.asarray(Image.open(out).convert("RGB"))
    source = np.asarray(Image.open(product["product"]).convert("RGB"))
    inside = np.asarray(Image.open(product["mask"])) > 127
    assert generated.shape == source.shape
    assert np.array_equal(generated[inside], source[inside])
    assert (generated[~inside] != source[~inside]).any()  # outside the mask it is the model's image


def test_backfill_at_another_output_size():
    rng = np.random.default_rng(0)
    gen = rng.integers(0, 256, (16, 24, 3), dtype=np.uint8)
    prod = rng.integers(0, 256, (16, 24, 3), dtype=np.uint8)
    mask = rng.random((16, 24)) > 0.5
    out = backfill(gen, prod, mask)
    assert np.array_equal(out[mask], prod[mask]) and np.array_equal(out[~mask], gen[~mask])
    with pytest.raises(ValueError):
        backfill(gen, prod[:8], mask)


def test_one_line_errors(trained_run, product, data, tmp_path):
    def fails(*args, match: str):
        code, output = cli(*args)
        assert code == 2, output
        assert "Traceback" not in output and match in " ".join(output.split()), output

    gen = ("generate", "virtualmodel", "--pose", product["kp"], "--prompt", "x", "--out", tmp_path / "x.png", "--size", "64")
    fails(
        *gen,
        "--checkpoint",
        trained_run,
        "--product",
        product["product"],
        "--mask",
        product["small"],
        match="give a mask of the product's size",
    )
    fails(*gen, "--checkpoint", data, "--product", product["product"], "--mask", product["mask"], match="is not a VirtualModel run")

    # A run whose config.yaml now describes another architecture than its weights.
    other = tmp_path / "other"
    other.mkdir()
    shutil.copytree(trained_run / "weights", other / "weights")  # a copy: a symlink out of the run is refused (run_paths)
    cfg = load_config("tiny")
    (other / "config.yaml").write_text(cfg.model_copy(update={"branches": cfg.branches.model_copy(update={"close_view": False})}).to_yaml())
    fails(*gen, "--checkpoint", other, "--product", product["product"], "--mask", product["mask"], match="was trained with config 'tiny'")

    empty = tmp_path / "empty"
    empty.mkdir()
    fails("train", "virtualmodel", "--data", empty, "--out", tmp_path / "r1", match="no kept train samples")
    no_masks = tmp_path / "no-masks"
    write_out(no_masks, 2, drop=("mask.png",))
    fails("train", "virtualmodel", "--data", no_masks, "--out", tmp_path / "r2", "--stage", "branches", match="`products` stage writes it")
    yaml_path = tmp_path / "wide.yaml"
    yaml_path.write_text(cfg.model_copy(update={"branches": cfg.branches.model_copy(update={"channel_fraction": 0.5})}).to_yaml())
    fails(
        "train",
        "virtualmodel",
        "--data",
        data,
        "--config",
        yaml_path,
        "--out",
        trained_run,
        "--resume",
        match="checkpoints of config 'tiny'",
    )
    fails("train", "virtualmodel", "--data", data, "--config", "nope", "--out", tmp_path / "r3", match="neither a bundled config")


def test_pretrained_configs_load_from_a_local_folder_and_say_what_to_fetch_without_one(tiny, tmp_path, data, monkeypatch):
    cfg, comp = tiny
    sd, dino = tmp_path / "sd", tmp_path / "dino"
    comp.unet.save_pretrained(sd / "unet")
    comp.vae.save_pretrained(sd / "vae")
    comp.text_encoder.save_pretrained(sd / "text_encoder")
    comp.tokenizer.save_pretrained(sd / "tokenizer")
    (sd / "scheduler").mkdir()
    (sd / "scheduler" / "scheduler_config.json").write_text(json.dumps({"_class_name": "PNDMScheduler", **comp.schedule}))
    comp.dino.save_pretrained(dino)
    models = cfg.models.model_copy(update={"source": "pretrained", "stable_diffusion": str(sd), "dino": str(dino)})
    loaded = build_components(cfg.model_copy(update={"models": models, "untrained": False}))
    assert torch.equal(loaded.unet.conv_in.weight, comp.unet.conv_in.weight)
    assert torch.equal(loaded.dino.embeddings.cls_token, comp.dino.embeddings.cls_token)
    assert loaded.schedule["beta_schedule"] == "scaled_linear" and loaded.tokenizer("ab")["input_ids"] == comp.tokenizer("ab")["input_ids"]

    monkeypatch.setenv("HOIFORGE_WEIGHTS", str(tmp_path / "no-weights"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "no-cache"))
    code, output = cli("train", "virtualmodel", "--data", data, "--config", "sd15", "--out", tmp_path / "run")
    assert code == 2 and "Traceback" not in output
    assert "stable-diffusion-v1-5" in output and "hoiforge models fetch" in " ".join(output.split())
    assert not (tmp_path / "run").exists()
