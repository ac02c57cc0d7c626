"""ShoeModel from photos to pictures: a real shoeleg build (local Ray) of the bundled photos, each module trained through the CLI, then generation.

The shoeleg recipe keeps few fixture photos (most shoes touch the frame), so cut-off shoes are
kept (``cut_off: keep``), and the wear_labels stage imports the hand-made 3-class label of
tests/data so WD sees a wearable area.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.shoemodel_fixtures import DATA, full_frame_wear_label

pytestmark = pytest.mark.slow
pytest.importorskip("mediapipe")
pytest.importorskip("diffusers")


def test_build_then_train_every_module_then_generate(ray_local, tmp_path):
    import torch
    from typer.testing import CliRunner

    from hoiforge.cli import app
    from hoiforge.pipeline.recipe import load_recipe
    from hoiforge.pipeline.runner import build
    from hoiforge.stages.wear_labels import WearLabels

    recipe = load_recipe("shoeleg")
    stages = [p.model_copy(update={"cut_off": "keep"}) if p.stage == "shoes" else p for p in recipe.stages]
    labels = full_frame_wear_label(tmp_path / "labels")
    stages.append(WearLabels.Params(stage="wear_labels", labels_dir=str(labels), if_missing="keep"))
    recipe = recipe.model_copy(update={"stages": stages})
    out = tmp_path / "out"
    build([str(DATA / n) for n in ("basketball1.png", "astronaut.png", "coffee.png")], out, recipe, progress=False)
    assert sum(s["nsamples"] for s in json.loads((out / "index.train.json").read_text())["shardlist"]) == 1

    runner, run = CliRunner(), tmp_path / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for module in ("wd", "lps1", "lps2", "sw"):
            args = ["train", "shoemodel", "--module", module, "--data", str(out), "--config", "tiny", "--out", str(run), "--max-steps", "3"]
            result = runner.invoke(app, [*args, "--no-progress"])
            assert result.exit_code == 0, result.output
            assert f"{module}: step 3" in result.output
            losses = [json.loads(line)["loss"] for line in (run / module / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]
            assert len(losses) == 3 and all(np.isfinite(losses))

        # The shoe of the built sample, cut out with its transparency, goes back in.
        import tarfile

        (shard,) = sorted((out / "shards").glob("*.tar"))
        with tarfile.open(shard) as tar:
            shoe = next(tar.extractfile(m).read() for m in tar if m.name.endswith(".shoe.png"))
        shoe_png = tmp_path / "shoe.png"
        shoe_png.write_bytes(shoe)
        result = runner.invoke(app, ["generate", "shoemodel", "--checkpoint", str(run), "--shoe", str(shoe_png),
                                     "--prompt", "a basketball player", "--n", "2", "--out", str(tmp_path / "gen")])  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    rgba = np.asarray(Image.open(shoe_png))
    info = json.loads((tmp_path / "gen" / "shoemodel.json").read_text())
    visible = rgba[..., 3] >= 128
    for i in range(2):
        image = np.asarray(Image.open(tmp_path / "gen" / f"{i}.png"))
        assert (image[visible] == rgba[..., :3][visible]).all(-1).sum() == info["visible_pixels"] > 0
        assert Path(tmp_path / "gen" / f"leg_{i}.png").is_file()
