"""Issue #27 items 6 and 10: a received RUN (or config) is data.

6. A crafted config is refused in one sentence naming the key BEFORE any model is built (sizes in
   range, the shape buildable on the meta device, the parameter count bounded).
10. A RUN is self-contained: paths it records are relative to it; a record (or a symlink) leading
   out of it is refused in one sentence unless the user vouches with --allow-outside-run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from hoiforge.cli import app
from hoiforge.errors import HoiforgeError
from hoiforge.training.core.run_paths import RunPathError

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def shoe_run(tmp_path_factory) -> Path:
    """The four tiny ShoeModel modules, one step each."""
    from hoiforge.training.shoemodel.train import train
    from tests.shoemodel_fixtures import shoeleg_samples, write_out

    tmp = tmp_path_factory.mktemp("shoe")
    out = write_out(tmp / "out", shoeleg_samples(tmp))
    run = tmp / "run"
    for module in ("wd", "lps1", "lps2", "sw"):
        train(module, [str(out)], "tiny", run, max_steps=1, progress=False, say=lambda _: None)
    return run


def test_the_sw_record_names_its_base_inside_the_run_and_a_copy_loads_its_own(shoe_run, tmp_path):
    from hoiforge.training.shoemodel.system import ShoeModel

    record = json.loads((shoe_run / "sw" / "shoemodel.json").read_text())
    assert record["base_model"] == {"run": "sw/base"}
    copy = tmp_path / "copy"
    shutil.copytree(shoe_run, copy)
    moved = shoe_run.with_name("moved-away")
    shoe_run.rename(moved)  # the original is gone: the copy must not need it
    try:
        model = ShoeModel(copy, device="cpu")
        assert model.pipe.unet is not None
    finally:
        moved.rename(shoe_run)


@pytest.mark.parametrize(
    "base_model",
    ["/usr", {"outside": "/usr"}, {"run": "../../elsewhere"}, {"run": "/usr"}],
    ids=["old-absolute", "outside", "dotdot", "absolute-as-run"],
)
def test_a_record_pointing_out_of_the_run_is_refused(shoe_run, tmp_path, base_model):
    from hoiforge.training.shoemodel.system import ShoeModel

    run = tmp_path / "run"
    shutil.copytree(shoe_run, run)
    path = run / "sw" / "shoemodel.json"
    record = json.loads(path.read_text())
    path.write_text(json.dumps({**record, "base_model": base_model}))
    with pytest.raises(RunPathError) as refused:
        ShoeModel(run, device="cpu")
    message = str(refused.value)
    assert str(path) in message and "outside the run" in message and "\n" not in message


def test_an_outside_base_loads_only_with_allow_outside_run(shoe_run, tmp_path):
    from hoiforge.training.shoemodel.system import ShoeModel

    run, elsewhere = tmp_path / "run", tmp_path / "my-base"
    shutil.copytree(shoe_run, run)
    shutil.move(run / "sw" / "base", elsewhere)
    path = run / "sw" / "shoemodel.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "base_model": {"outside": str(elsewhere)}}))
    result = CliRunner().invoke(app, ["generate", "shoemodel", "--checkpoint", str(run), "--shoe", str(tmp_path / "x.png"),
                                      "--prompt", "p", "--out", str(tmp_path / "gen")])  # fmt: skip
    assert result.exit_code == 2 and "--allow-outside-run" in result.output and "Traceback" not in result.output
    assert ShoeModel(run, device="cpu", allow_outside_run=True).pipe is not None


def test_a_module_symlinked_out_of_the_run_is_refused(shoe_run, tmp_path):
    from hoiforge.training.shoemodel.system import ShoeModel

    run, elsewhere = tmp_path / "run", tmp_path / "elsewhere"
    shutil.copytree(shoe_run, run)
    shutil.move(run / "sw" / "controlnet", elsewhere)
    (run / "sw" / "controlnet").symlink_to(elsewhere)
    with pytest.raises(RunPathError, match="leads outside the run"):
        ShoeModel(run, device="cpu")


# -- VirtualModel: the models a RUN's config.yaml names --------------------------------------
def vm_run(tmp_path: Path, stable_diffusion: str) -> Path:
    from hoiforge.training.virtualmodel.config import load_config

    doc = load_config("sd15").model_dump(mode="json")
    doc["models"]["stable_diffusion"] = stable_diffusion
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump(doc))
    return run


@pytest.mark.parametrize("where", ["/usr", "../outside"])
def test_a_virtualmodel_config_naming_a_folder_outside_the_run_is_refused(tmp_path, where):
    from hoiforge.training.virtualmodel.generate import load_run

    run = vm_run(tmp_path, where)
    with pytest.raises(RunPathError) as refused:
        load_run(run)
    assert "models.stable_diffusion" in str(refused.value) and "outside the run" in str(refused.value)


def test_a_virtualmodel_config_path_is_relative_to_the_run(tmp_path):
    from hoiforge.training.virtualmodel.config import load_config
    from hoiforge.training.virtualmodel.generate import run_models

    run = vm_run(tmp_path, "sd")
    cfg = run_models(load_config(run / "config.yaml"), run)
    assert cfg.models.stable_diffusion == str(run / "sd") and cfg.models.dino == "dinov2-base"  # registry names stay names
    assert run_models(load_config(run / "config.yaml").model_copy(), run, allow_outside_run=True).models.dino == "dinov2-base"


# -- 6: crafted configs, refused before anything is built --------------------------------------
def cli(*args) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


@pytest.fixture
def nothing_built(monkeypatch):
    """Any model construction of the VirtualModel or ShoeModel trainers fails the test."""
    from hoiforge.training.shoemodel import lps2, sw
    from hoiforge.training.virtualmodel import components

    def built(*args, **kw):
        raise AssertionError("a model was built before the config was checked")

    monkeypatch.setattr(components, "_random", built)
    monkeypatch.setattr(components, "_pretrained", built)
    monkeypatch.setattr(lps2, "build", built)
    monkeypatch.setattr(sw, "tiny_base", built)


def tiny_yaml(tmp_path: Path, **unet) -> Path:
    from hoiforge.training.virtualmodel.config import load_config

    doc = load_config("tiny").model_dump(mode="json")
    doc["models"]["unet"].update(unet)
    path = tmp_path / "crafted.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.parametrize(
    "unet, says",
    [
        ({"block_out_channels": [65536, 131072]}, "models.unet.block_out_channels = 65536 is outside 0..16,384"),
        ({"layers_per_block": 10**9}, "models.unet.layers_per_block = 1000000000 is outside 0..128"),
        ({"down_block_types": ["DownBlock2D"] * 3}, "models.unet does not describe a model that can be built"),
    ],
    ids=["huge-channels", "huge-depth", "wrong-shape"],
)
def test_a_crafted_virtualmodel_config_is_refused_before_building(tmp_path, nothing_built, unet, says):
    from tests.vm_shards import write_out

    data = tmp_path / "out"
    write_out(data, 2, per_shard=2)
    code, output = cli("train", "virtualmodel", "--data", data, "--config", tiny_yaml(tmp_path, **unet), "--out", tmp_path / "run")
    assert code == 2 and says in " ".join(output.split()) and "Traceback" not in output, output
    assert output.count("error:") == 1
    assert not (tmp_path / "run").exists()


def test_a_received_virtualmodel_run_with_a_crafted_config_is_refused_by_generate(tmp_path, nothing_built):
    from hoiforge.training.virtualmodel.generate import load_run

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(tiny_yaml(tmp_path, block_out_channels=[65536, 131072]).read_text())
    (run / "weights" / "branches").mkdir(parents=True)
    (run / "weights" / "branches" / "branches.safetensors").write_bytes(b"")
    with pytest.raises(HoiforgeError, match=r"models\.unet\.block_out_channels = 65536"):
        load_run(run)


def test_a_crafted_shoemodel_yaml_is_refused_before_building(tmp_path, nothing_built):
    from hoiforge.training.shoemodel.train import train

    path = tmp_path / "crafted.yaml"
    path.write_text("base: tiny\nlps2: {timesteps: 10000000}\n")
    with pytest.raises(HoiforgeError) as refused:
        train("lps2", [str(tmp_path / "no-data-needed")], str(path), tmp_path / "run", progress=False, say=lambda _: None)
    assert "lps2.timesteps = 10000000 is outside 0..100,000" in str(refused.value)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "file, key, value, says",
    [
        ("lps2/scheduler/scheduler_config.json", "num_train_timesteps", 10_000_000, "num_train_timesteps = 10000000"),
        ("sw/base/unet/config.json", "block_out_channels", [65536, 131072], "block_out_channels = 65536"),
        ("sw/controlnet/config.json", "layers_per_block", 10**9, "layers_per_block = 1000000000"),
    ],
    ids=["lps2-timesteps", "sw-base-unet", "sw-controlnet"],
)
def test_a_received_shoemodel_run_with_crafted_model_configs_is_refused(shoe_run, tmp_path, monkeypatch, file, key, value, says):
    from hoiforge.training.shoemodel import lps2, sw, system

    run = tmp_path / "run"
    shutil.copytree(shoe_run, run)
    doc = json.loads((run / file).read_text())
    (run / file).write_text(json.dumps({**doc, key: value}))

    def loaded(*args, **kw):
        raise AssertionError("a model was loaded before the configs were checked")

    monkeypatch.setattr(lps2, "load", loaded)
    monkeypatch.setattr(sw, "load_base", loaded)
    with pytest.raises(HoiforgeError) as refused:
        system.ShoeModel(run, device="cpu")
    message = str(refused.value)
    assert says in message and file.split("/")[-1] in message and "\n" not in message


def test_real_architectures_pass_the_limits():
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from hoiforge.training.core.arch_limits import check_buildable, check_values

    sd15_unet = {"block_out_channels": [320, 640, 1280, 1280], "cross_attention_dim": 768, "attention_head_dim": 8, "sample_size": 64}
    check_values(
        {"unet": sd15_unet, "scheduler": {"num_train_timesteps": 1000}, "dino": {"hidden_size": 1536, "num_hidden_layers": 40}}, "x"
    )
    assert 8e8 < check_buildable("SD 1.5 UNet", UNet2DConditionModel) < 9e8  # diffusers' defaults are SD 1.5's UNet
    assert check_buildable("SD 1.5 VAE", lambda: AutoencoderKL(
        block_out_channels=[128, 256, 512, 512], down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
        layers_per_block=2, latent_channels=4)) > 8e7  # fmt: skip
