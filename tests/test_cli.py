"""The CLI forms scripts depend on: build, inspect, validate; errors are one clear line."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hoiforge.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def built(ray_local, tmp_path_factory):
    from .conftest import DATA

    out = tmp_path_factory.mktemp("cli") / "out"
    result = runner.invoke(
        app,
        ["build", str(DATA / "astronaut.png"), str(DATA / "coffee.png"), "--out", str(out), "--recipe", "demo", "--no-progress"],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    assert "kept" in result.output
    # One summary line per reason code, with its parameters: coffee.png has nobody in it.
    assert "1 × person.count" in result.output and "persons 0..0" in result.output
    return out


@pytest.mark.slow
def test_inspect_prints_annotations_by_id_prefix_and_by_path(built, tmp_path):
    import pyarrow.parquet as pq

    rows = {Path(r["key"]).name: r for r in pq.read_table(built / "manifest.parquet").to_pylist()}
    kept = rows["astronaut.png"]
    result = runner.invoke(app, ["inspect", str(built), kept["id"][:8], "--extract", str(tmp_path)])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["annotation"]["id"] == kept["id"] and doc["annotation"]["persons"]
    assert (tmp_path / f"{kept['id']}.png").read_bytes() == Path(kept["uri"]).read_bytes()
    result = runner.invoke(app, ["inspect", str(built), rows["coffee.png"]["key"]])
    assert json.loads(result.output)["manifest"]["status"] == "dropped"
    assert runner.invoke(app, ["inspect", str(built), "ffffffffffff"]).exit_code == 2


@pytest.mark.slow
def test_validate_passes_then_catches_a_tampered_shard(built, tmp_path):
    assert runner.invoke(app, ["validate", str(built)]).exit_code == 0
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(built, copy)
    shard = next((copy / "shards").glob("*.tar"))
    with tarfile.open(shard) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar]
    with tarfile.open(shard, "w") as tar:
        for m, data in members:
            if not m.name.endswith(".json"):
                tar.addfile(m, __import__("io").BytesIO(data))
    result = runner.invoke(app, ["validate", str(copy)])
    assert result.exit_code == 1
    assert "no .json annotation" in result.output and "sha256 differs" in result.output


def test_recipe_errors_are_one_line_and_exit_2(tmp_path):
    bad = tmp_path / "r.yaml"
    bad.write_text("name: x\nstages:\n  - stage: decode\n  - stage: resolution\n    min_short: 3\n")
    result = runner.invoke(app, ["build", str(tmp_path), "--out", str(tmp_path / "o"), "--recipe", str(bad)])
    assert result.exit_code == 2
    assert "stages[1] (resolution): min_short: unknown key" in result.output
    assert "Traceback" not in result.output


def test_unknown_backend_and_unwritable_output_fail_before_work(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: x\nstages:\n  - stage: decode\n  - stage: person\n    detector: yolox-from-mars\n")
    result = runner.invoke(app, ["build", str(tmp_path), "--out", str(tmp_path / "o"), "--recipe", str(recipe)])
    assert result.exit_code == 2 and "unknown backend 'yolox-from-mars'" in result.output
    assert not (tmp_path / "o").exists()

    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    from .conftest import DATA

    # An input with an image in it: a folder of no images is refused first, for that reason.
    result = runner.invoke(app, ["build", str(DATA / "coffee.png"), "--out", str(blocker / "out"), "--recipe", "demo"])
    assert result.exit_code == 2 and "not writable" in result.output


def test_out_of_bounds_overrides_are_one_line(tmp_path):
    result = runner.invoke(app, ["build", str(tmp_path), "--out", str(tmp_path / "o"), "--test-size", "1.5"])
    assert result.exit_code == 2 and "test_size: Input should be less than 1" in result.output
    assert "Traceback" not in result.output


def test_missing_input_fails_before_the_output_exists(tmp_path):
    result = runner.invoke(app, ["build", str(tmp_path / "nope"), "--out", str(tmp_path / "o"), "--recipe", "demo"])
    assert result.exit_code == 2 and "no such file or directory" in result.output
    assert not (tmp_path / "o").exists()
