"""ShoeModel modules (WD, LpS phase 1/2, SW) with tiny random networks on CPU, and the whole system through the CLI.

The data is a real shoe-leg sample (basketball1.png through the shoeleg stages in-process, with
the hand-made 3-class wear label of tests/data), written as a shard by the pipeline's writer.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hoiforge.training.shoemodel import data as D
from hoiforge.training.shoemodel import heatmaps as H
from hoiforge.training.shoemodel import lps1, lps2, sw, wd
from hoiforge.training.shoemodel.config import ConfigError, load_config, preset
from tests.shoemodel_fixtures import shoeleg_samples, write_out

pytest.importorskip("mediapipe")
pytest.importorskip("diffusers")


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("shoeleg")
    return write_out(tmp / "out", shoeleg_samples(tmp))


@pytest.fixture(scope="module")
def sample(out) -> D.ShoeLegSample:
    return D.first_samples(D.shard_urls([out]), 1)[0]


def fit_one_batch(model, loss_fn, name: str, batch, steps: int, lr: float, frozen=None) -> list[float]:
    """Adam on one fixed batch: the losses of each step (seeded, so the noise draws repeat)."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    models = {name: model, **(frozen or {})}
    losses = []
    for i in range(steps):
        torch.manual_seed(i % 2)
        loss = loss_fn(batch, models)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def collate(examples):
    return torch.utils.data.default_collate(list(examples))


# -- configs -----------------------------------------------------------------------------------
def test_paper_config_holds_the_papers_settings_and_yaml_overrides_it(tmp_path):
    p = preset("paper")
    assert (p.wd.size, p.wd.train.max_steps, p.wd.train.lr, p.wd.train.batch_size) == (640, 160_000, 6e-5, 16)
    assert (p.wd.mosaic_p, p.wd.rotate_p, p.wd.rotate_deg) == (0.8, 0.5, 15.0)
    assert (p.lps1.size, p.lps1.heatmap_size, p.lps1.sigma, p.lps1.train.lr, p.lps1.train.batch_size) == (256, 64, 2.0, 5e-4, 240)
    assert (p.lps2.timesteps, p.lps2.train.max_steps, p.lps2.train.lr, p.lps2.train.batch_size) == (25, 700_000, 1e-4, 4096)
    assert (p.sw.resolution, p.sw.train.max_steps, p.sw.train.lr, p.sw.train.batch_size) == (512, 500_000, 1e-5, 128)
    assert p.sw.base_model == "stable-diffusion-v1-5" and not p.is_tiny and preset("tiny").is_tiny
    path = tmp_path / "mine.yaml"
    path.write_text("base: tiny\nlps2: {hidden: 32, train: {batch_size: 8}}\n")
    mine = load_config(path)
    assert mine.is_tiny and mine.lps2.hidden == 32 and mine.lps2.train.batch_size == 8 and mine.lps2.train.lr == 1e-3
    path.write_text("wd: {sise: 3}\n")
    with pytest.raises(ConfigError, match=r"wd.sise"):
        load_config(path)


# -- heatmaps ----------------------------------------------------------------------------------
def test_heatmap_encode_decode_round_trip_within_half_a_pixel():
    rng = np.random.default_rng(0)
    # Points at least 4 heatmap pixels (16 input pixels) inside the 256 crop, as foot points of a shoe crop with margin are.
    pts = np.column_stack([rng.uniform(16, 240, (300, 2)), np.ones(300)])
    heatmaps, weights = H.encode(pts, 256, 64, 2.0)
    assert heatmaps.shape == (300, 64, 64) and (weights == 1).all()
    dark, peaks = H.decode(heatmaps, 256, "dark")
    assert np.abs(dark - pts[:, :2]).max() < 0.5  # input pixels; seen here: 0.12
    assert np.allclose(peaks, 1.0, atol=0.1)
    quarter, _ = H.decode(heatmaps, 256, "quarter")
    assert np.abs(quarter - pts[:, :2]).max() <= 0.25 * 4 + 1e-6  # a quarter heatmap pixel
    plain, _ = H.decode(heatmaps, 256, "none")
    assert np.abs(dark - pts[:, :2]).mean() < np.abs(quarter - pts[:, :2]).mean() < np.abs(plain - pts[:, :2]).mean()


def test_unseen_or_far_outside_points_get_zero_weight():
    pts = np.array([[100, 100, 0.9], [100, 100, 0.1], [400, 100, 0.9], [-30, 50, 0.9]], np.float64)
    heatmaps, weights = H.encode(pts, 256, 64, 2.0, min_score=0.3)
    assert weights.tolist() == [1, 0, 0, 0] and heatmaps[1:].max() == 0


# -- WD ----------------------------------------------------------------------------------------
def test_wd_examples_hold_all_three_classes_and_the_model_learns_one_batch(sample, tmp_path):
    cfg = preset("tiny").wd
    crop = wd.crop(sample, cfg)
    assert crop is not None and set(np.unique(crop[1]).tolist()) == {0, 1, 2}
    batch = collate(
        e for _, e in zip(range(2), wd.examples(iter([sample] * 8), np.random.default_rng(0), cfg.model_copy(update={"mosaic_p": 0.0})))
    )
    assert batch["pixel_values"].shape == (2, 3, 128, 128) and batch["labels"].dtype == torch.int64
    model = wd.build(cfg)
    losses = fit_one_batch(model, wd.loss, "wd", batch, 12, 3e-3)
    assert losses[-1] < 0.7 * losses[0], losses
    scores = wd.score(model.eval(), [crop])
    assert set(scores["IoU"]) == {"background", "visible", "wearable"} and 0 <= scores["aAcc"] <= 100

    # The saved directory is what the wear_labels stage's SegformerWearSegmenter loads.
    from hoiforge.models.wd_segmenter import SegformerWearSegmenter

    wd.save(model, tmp_path / "model", cfg.size)
    seg = SegformerWearSegmenter(str(tmp_path / "model"), device="cpu")
    assert seg.size == cfg.size
    pred = seg.predict([crop[0]], valid=[crop[2] > 0])[0]
    assert pred.labels.shape == crop[1].shape and set(np.unique(pred.labels).tolist()) <= {0, 1, 2}
    with torch.no_grad():
        direct = wd.predict_labels(model, [crop[0]])[0]
    assert (pred.labels[crop[2] > 0] == direct[crop[2] > 0]).mean() > 0.99


# -- LpS phase 1 -------------------------------------------------------------------------------
def test_lps1_heatmaps_are_64_square_and_the_model_learns_one_batch(sample):
    cfg = preset("tiny").lps1
    batch = collate(e for _, e in zip(range(2), lps1.examples(iter([sample] * 4), np.random.default_rng(0), cfg)))
    assert batch["pixel_values"].shape == (2, 3, 256, 256) and batch["target"].shape == (2, 8, 64, 64)
    # mediapipe has no small toes: those two points carry no weight.
    assert batch["weight"][:, [3, 6]].sum() == 0 and batch["weight"].sum() == 12
    model = lps1.build(cfg)
    assert model.config.num_labels == 8
    losses = fit_one_batch(model, lps1.loss, "lps1", batch, 15, 3e-3)
    assert losses[-1] < 0.7 * losses[0], losses
    found = lps1.crop_and_points(sample, cfg.crop_margin, cfg.size)
    _m, _xw, foot = found
    pred = lps1.predict(model.eval(), [np.zeros((256, 256, 3), np.uint8)])[0]
    assert pred.shape == (8, 3)
    # The foot points land on the shoe crop: toes and heels inside it.
    seen = foot[:, 2] > 0.3
    assert ((foot[seen, :2] > 0) & (foot[seen, :2] < 256)).all()


# -- LpS phase 2 -------------------------------------------------------------------------------
def test_keypoint_diffusion_schedule_reaches_noise_at_t25():
    sched = lps2.scheduler(preset("paper").lps2)
    assert sched.config.num_train_timesteps == 25
    assert float(sched.alphas_cumprod[-1]) < 1e-3  # seen: 3.9e-6
    linear = lps2.scheduler(preset("paper").lps2.model_copy(update={"beta_schedule": "linear"}))
    assert float(linear.alphas_cumprod[-1]) > 0.5  # the trap: 25 linear steps leave alpha_bar_T ~ 0.78


def test_lps2_masks_missing_points_and_overfits_one_condition(sample):
    cfg = preset("tiny").lps2.model_copy(update={"hidden": 128, "depth": 3, "rotate_p": 0.0})
    ((leg, size),) = lps2.records(sample, cfg.min_score)
    v = lps2.vectors(torch.tensor(leg, dtype=torch.float32)[None], torch.tensor([size]), cfg.min_score)
    # Missing foot points (no small toes) are exactly 0 in the condition; hips..ankles all seen here.
    cond = v["cond"].reshape(8, 2)
    assert (cond[[3, 6]] == 0).all() and (cond[[0, 1, 2, 4, 5, 7]] > 0.1).all()
    assert v["mask"].sum() == 12 and v["x0"].abs().max() <= 1
    points, sizes = np.repeat(leg[None], 1, 0).astype(np.float32), np.array([size], np.float32)
    batches = iter(lps2.TableBatches(points, sizes, cfg.model_copy(update={"train": cfg.train.model_copy(update={"batch_size": 128})}), 0))
    model, sched = lps2.build(cfg), lps2.scheduler(cfg)
    loss_fn = lps2.make_loss(sched)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for step in range(300):
        torch.manual_seed(step)
        loss = loss_fn(next(batches), {"lps2": model})
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-50:]) < 0.3 * np.mean(losses[:10])
    legs = lps2.sample(model.eval(), sched, leg[list(D.FOOT_IN_LEG)], size, 16, cfg.min_score, torch.Generator().manual_seed(0))
    assert legs.shape == (16, 6, 3)
    error = np.linalg.norm(legs[..., :2] - leg[None, :6, :2], axis=-1)
    assert np.median(error) < 0.03 * size, np.median(error)  # within ~19 px of 640 for most points; seen: 4 px


def test_lps2_draws_diverse_legs_for_the_same_feet(sample):
    """Two leg poses over the same feet (knees and hips swung 120 px apart): samples land near both, not between them."""
    cfg = preset("tiny").lps2.model_copy(update={"hidden": 128, "depth": 3, "rotate_p": 0.0})
    ((leg, size),) = lps2.records(sample, cfg.min_score)
    other = leg.copy()
    other[:4, 0] += 120
    points = np.stack([leg, other]).astype(np.float32)
    train_cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"batch_size": 128})})
    batches = iter(lps2.TableBatches(points, np.full(2, size, np.float32), train_cfg, 0))
    model, sched = lps2.build(cfg), lps2.scheduler(cfg)
    loss_fn = lps2.make_loss(sched)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for step in range(800):
        torch.manual_seed(step)
        loss = loss_fn(next(batches), {"lps2": model})
        opt.zero_grad()
        loss.backward()
        opt.step()
    legs = lps2.sample(model.eval(), sched, leg[list(D.FOOT_IN_LEG)], size, 64, cfg.min_score, torch.Generator().manual_seed(0))
    near = [np.linalg.norm(legs[..., :2] - target[None, :6, :2], axis=-1).mean(1) < 25 for target in (leg, other)]
    assert near[0].mean() > 0.2 and near[1].mean() > 0.2, (near[0].mean(), near[1].mean())  # seen: 0.61 / 0.36
    assert (near[0] | near[1]).mean() > 0.8


def test_lps2_masked_targets_do_not_count():
    cfg = preset("tiny").lps2
    model, sched = lps2.build(cfg), lps2.scheduler(cfg)
    pts = torch.zeros(4, 12, 3)
    pts[:, 4:12] = torch.tensor([100.0, 400.0, 1.0])
    pts[:, 0] = torch.tensor([120.0, 200.0, 1.0])  # targets seen: the left hip and both ankles (foot points 4, 5)
    batch = lps2.vectors(pts, torch.full((4,), 640.0), cfg.min_score)
    assert batch["mask"][0].tolist() == [1, 1, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1]
    with torch.no_grad():
        model.out.bias.copy_(torch.tensor([0.0, 0.0] + [1e3] * 6 + [0.0] * 4))  # huge error on the masked coordinates only
        assert lps2.make_loss(sched)(batch, {"lps2": model}).item() < 10


# -- SW ----------------------------------------------------------------------------------------
def test_sw_controlnet_has_six_channels_and_learns_one_batch(sample):
    cfg = preset("tiny").sw
    ex = next(sw.examples(iter([sample]), np.random.default_rng(0), cfg, 0.3))
    # The crop keeps the shoe: X_w (first 3 channels) has shoe pixels, X_p (last 3) has the drawn legs.
    assert ex["conditioning"].shape == (6, 64, 64) and ex["conditioning"][:3].max() > 0 and ex["conditioning"][3:].max() > 0
    base = sw.tiny_base({})
    for name in ("vae", "unet", "text_encoder"):
        base[name].requires_grad_(False)
    controlnet = sw.controlnet_from_unet(base["unet"], base["vae"])
    assert controlnet.config.conditioning_channels == 6
    batch = collate([ex])
    frozen = {k: base[k] for k in ("vae", "unet", "text_encoder")}
    losses = fit_one_batch(controlnet, sw.make_loss(base["tokenizer"], base["scheduler"]), "controlnet", batch, 8, 1e-3, frozen)
    assert np.mean(losses[-2:]) < np.mean(losses[:2]), losses


def test_backfill_copies_exactly_the_visible_pixels():
    gen = np.full((4, 5, 3), 7, np.uint8)
    shoe = np.arange(60, dtype=np.uint8).reshape(4, 5, 3)
    visible = np.zeros((4, 5), bool)
    visible[1:3, 2:4] = True
    out = sw.backfill(gen, shoe, visible)
    assert np.array_equal(out[visible], shoe[visible]) and (out[~visible] == 7).all()


# -- the command line --------------------------------------------------------------------------
def cli(*args: str):
    from typer.testing import CliRunner

    from hoiforge.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def train_cli(module: str, out: Path, run: Path, *extra: str):
    return cli("train", "shoemodel", "--module", module, "--data", out, "--config", "tiny", "--out", run, "--no-progress", *extra)


@pytest.fixture(scope="module")
def run(out, tmp_path_factory) -> Path:
    """All four modules trained 2 steps each through the CLI."""
    run = tmp_path_factory.mktemp("run")
    for module in ("wd", "lps1", "lps2", "sw"):
        result = train_cli(module, out, run, "--max-steps", "2")
        assert result.exit_code == 0, result.output
        assert f"{module}: step 2" in result.output and "tiny" in result.output
    return run


@pytest.fixture(scope="module")
def shoe_png(sample, tmp_path_factory) -> Path:
    """A shoe image with transparency: the shoe-only pixels of the fixture photo around its feet."""
    path = tmp_path_factory.mktemp("shoe") / "shoe.png"
    Image.fromarray(sample.shoe_rgba()[340:480, 10:230]).save(path)
    return path


def test_each_module_writes_its_checkpoint_and_metrics(run):
    for module in ("wd", "lps1", "lps2", "sw"):
        folder = run / module
        record = json.loads((folder / "shoemodel.json").read_text())
        assert record["module"] == module and record["step"] == 2 and record["tiny"] is True
        rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
        assert [r["step"] for r in rows if "loss" in r] == [1, 2] and all(np.isfinite(r["loss"]) for r in rows if "loss" in r)
    wd_scores = [json.loads(line) for line in (run / "wd" / "metrics.jsonl").read_text().splitlines() if "mIoU" in line]
    assert wd_scores and {"IoU/wearable", "Acc/visible", "mAcc", "aAcc"} <= set(wd_scores[-1])
    assert (run / "wd" / "model" / "model.safetensors").is_file() and (run / "wd" / "model" / "preprocessor_config.json").is_file()
    assert (run / "lps2" / "scheduler" / "scheduler_config.json").is_file()
    assert json.loads((run / "lps2" / "shoemodel.json").read_text())["schedule"]["alpha_bar_T"] < 1e-3
    assert (run / "sw" / "controlnet" / "config.json").is_file() and (run / "sw" / "base" / "unet").is_dir()


def test_generate_keeps_the_shoes_visible_pixels_in_every_output(run, shoe_png, tmp_path):
    result = cli("generate", "shoemodel", "--checkpoint", run, "--shoe", shoe_png, "--prompt", "a man in sneakers on a street",
                 "--n", "2", "--out", tmp_path / "gen", "--seed", "3")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "tiny random modules" in result.output and "alpha channel" in result.output
    rgba = np.asarray(Image.open(shoe_png))
    info = json.loads((tmp_path / "gen" / "shoemodel.json").read_text())
    assert info["visible_pixels"] + info["wearable_pixels"] == int((rgba[..., 3] >= 128).sum())
    for i in range(2):
        image = np.asarray(Image.open(tmp_path / "gen" / f"{i}.png"))
        leg = np.asarray(Image.open(tmp_path / "gen" / f"leg_{i}.png"))
        assert image.shape == (*rgba.shape[:2], 3) and leg.shape == image.shape
        shoe = rgba[..., 3] >= 128
        kept = (image[shoe] == rgba[..., :3][shoe]).all(-1)
        assert kept.sum() == info["visible_pixels"] > 0  # every visible shoe pixel is the input's
        assert not np.array_equal(image[~shoe], rgba[..., :3][~shoe])  # and the rest was generated
    assert len(info["legs"]) == 2 and np.asarray(info["legs"]).shape == (2, 12, 3)


def test_generate_with_a_move_layout_keeps_the_moved_pixels(run, shoe_png, tmp_path):
    result = cli("generate", "shoemodel", "--checkpoint", run, "--shoe", shoe_png, "--prompt", "legs", "--n", "1",
                 "--out", tmp_path / "g", "--layout", "move:-5,-30")  # fmt: skip
    assert result.exit_code == 0, result.output
    rgba = np.asarray(Image.open(shoe_png))
    moved = np.zeros_like(rgba)
    moved[:-30, :-5] = rgba[30:, 5:]
    image = np.asarray(Image.open(tmp_path / "g" / "0.png"))
    info = json.loads((tmp_path / "g" / "shoemodel.json").read_text())
    shoe = moved[..., 3] >= 128
    assert (image[shoe] == moved[..., :3][shoe]).all(-1).sum() == info["visible_pixels"] > 0


def test_bad_inputs_are_one_clear_line(run, out, shoe_png, tmp_path, sample):
    # A run without some modules: say which, and how to train them.
    partial = tmp_path / "partial"
    (partial / "wd").mkdir(parents=True)
    for f in ("shoemodel.json", "model"):
        src = run / "wd" / f
        (partial / "wd" / f).symlink_to(src, target_is_directory=src.is_dir())
    result = cli("generate", "shoemodel", "--checkpoint", partial, "--shoe", shoe_png, "--prompt", "x", "--out", tmp_path / "g")
    assert result.exit_code == 2 and "no trained lps1, lps2, sw modules" in result.output
    assert f"hoiforge train shoemodel --module lps1 --data {Path(out).resolve()} --config tiny --out {partial}" in result.output
    assert "Traceback" not in result.output
    # A shoe image where nothing is a shoe.
    empty = tmp_path / "empty.png"
    Image.fromarray(np.zeros((64, 64, 4), np.uint8)).save(empty)
    result = cli("generate", "shoemodel", "--checkpoint", run, "--shoe", empty, "--prompt", "x", "--out", tmp_path / "g")
    assert result.exit_code == 2 and "no shoe found" in result.output
    # A layout that pushes the shoe out of the picture.
    result = cli("generate", "shoemodel", "--checkpoint", run, "--shoe", shoe_png, "--prompt", "x", "--out", tmp_path / "g",
                 "--layout", "move:500,0")  # fmt: skip
    assert result.exit_code == 2 and "out of the" in result.output
    # WD on an OUT whose samples have no wear labels.
    unlabelled = write_out(tmp_path / "unlabelled", [_without_wear(sample)])
    result = train_cli("wd", unlabelled, tmp_path / "r", "--max-steps", "1")
    assert result.exit_code == 2 and "no wear.png" in result.output and "wear_labels" in result.output
    # Training into a folder that already holds that module's run needs --resume.
    result = train_cli("lps2", out, run, "--max-steps", "2")
    assert result.exit_code == 2 and "--resume" in result.output


def _without_wear(sample):
    """The fixture sample's stage output without wear.png (a recipe with bootstrap_wear: false and no wear_labels)."""
    from hoiforge.stages.base import Sample

    members = {k: v for k, v in sample.members.items()}
    ann = json.loads(members.pop("json"))
    image = members.pop("png")
    ann.pop("wear", None)
    s = Sample(key="x", index=0, uri="x", member=None, image=image, ann=ann)
    s.members = {k: v for k, v in members.items() if k != "wear.png"}
    return s


def test_resume_continues_from_the_newest_checkpoint(out, tmp_path):
    run = tmp_path / "run"
    assert train_cli("lps2", out, run, "--max-steps", "2").exit_code == 0
    result = train_cli("lps2", out, run, "--max-steps", "4", "--resume")
    assert result.exit_code == 0, result.output
    assert "lps2: step 4 (resumed from step 2)" in result.output
    steps = [json.loads(line)["step"] for line in (run / "lps2" / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]
    assert steps == [1, 2, 3, 4]


# -- pretrained starting points (paper config) from local folders ------------------------------
def test_wd_starts_from_a_segformer_folder_with_a_new_three_class_head(tmp_path):
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    arch = preset("tiny").wd.architecture
    torch.manual_seed(1)
    source = SegformerForSemanticSegmentation(SegformerConfig(**arch, num_labels=150))  # an ADE-style checkpoint
    source.save_pretrained(tmp_path / "segformer")
    model = wd.build(preset("tiny").wd.model_copy(update={"pretrained": str(tmp_path / "segformer")}))
    assert model.config.num_labels == 3 and model.config.id2label[2] == "wearable"
    for name, p in source.segformer.state_dict().items():
        assert torch.equal(model.segformer.state_dict()[name], p), name  # the encoder is the checkpoint's
    assert model.decode_head.classifier.weight.shape[0] == 3
    # An ImageNet encoder checkpoint (nvidia/mit-bN is a SegformerForImageClassification) gives the encoder too.
    from transformers import SegformerForImageClassification

    SegformerForImageClassification(SegformerConfig(**arch, num_labels=1000)).save_pretrained(tmp_path / "mit")
    encoder = SegformerForImageClassification.from_pretrained(tmp_path / "mit").segformer.state_dict()
    model = wd.build(preset("tiny").wd.model_copy(update={"pretrained": str(tmp_path / "mit")}))
    assert all(torch.equal(model.segformer.state_dict()[k], v) for k, v in encoder.items())


def test_lps1_starts_from_a_vitpose_folder_with_resized_position_embeddings(tmp_path):
    from transformers import VitPoseBackboneConfig, VitPoseConfig, VitPoseForPoseEstimation

    arch = dict(preset("tiny").lps1.architecture)
    bb = VitPoseBackboneConfig(**arch, image_size=[256, 192], patch_size=[16, 16], out_indices=[arch["num_hidden_layers"]])
    torch.manual_seed(2)
    source = VitPoseForPoseEstimation(VitPoseConfig(backbone_config=bb, num_labels=17))  # a COCO 17-point ViTPose
    source.save_pretrained(tmp_path / "vitpose")
    cfg = preset("tiny").lps1.model_copy(update={"pretrained": str(tmp_path / "vitpose")})
    model = lps1.build(cfg)
    assert model.config.num_labels == 8 and model.config.backbone_config.image_size == [256, 256]
    pos = model.backbone.embeddings.position_embeddings
    assert pos.shape[1] == 16 * 16 + 1
    assert torch.equal(pos[:, 0], source.backbone.embeddings.position_embeddings[:, 0])
    name = "backbone.encoder.layer.0.attention.attention.query.weight"
    assert torch.equal(model.state_dict()[name], source.state_dict()[name])
    assert model(pixel_values=torch.zeros(1, 3, 256, 256)).heatmaps.shape == (1, 8, 64, 64)
