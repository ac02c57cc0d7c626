"""The weights registry: complete entries, one weights root, resolve/preflight/check messages."""

from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hoiforge.errors import BackendUnavailable
from hoiforge.models import weights as W
from hoiforge.models.cli import models_app
from hoiforge.pipeline.recipe import Recipe, load_recipe
from hoiforge.stages.base import StageParams

# Every paper-grade backend named in the weights issue, as (stage, backend) -> the entries it needs.
PAPER_GRADE: dict[tuple[str, str], set[str]] = {
    ("person", "ultralytics"): {"yolo11x"},
    ("person", "yolox"): {"yolox-x-humanart"},
    ("person", "rtdetr"): {"rtdetr-r50vd-coco-o365"},
    ("pose", "vitpose"): {"vitpose-h-wholebody"},
    ("pose", "rtmw"): {"rtmw-x-wholebody"},
    ("pose", "dwpose"): {"dwpose-l-wholebody"},
    ("products", "groundingdino"): {"grounding-dino-base"},
    ("products", "sam"): {"sam-vit-h"},
    ("cleanup", "lama"): {"big-lama"},
    ("cleanup", "paddleocr"): {"ppocr-v4"},
    ("caption", "qwen2-vl"): {"qwen2-vl-7b-instruct"},
    ("aesthetic", "laion"): {"clip-vit-large-patch14", "laion-aesthetic-mlp"},
    ("eval", "clip-score"): {"clip-vit-base-patch16"},
    ("eval", "fid"): {"fid-inception"},
    ("train", "virtualmodel"): {"dinov2-base", "stable-diffusion-v1-5"},
    ("train", "shoemodel"): {"stable-diffusion-v1-5"},
}


class ProductsParams(StageParams):  # the shape a two-model stage takes: detector + segmenter keys
    detector: str = "groundingdino"
    segmenter: str = "sam"


def recipe(*stages: StageParams) -> Recipe:
    return Recipe(name="t", stages=[StageParams(stage="decode"), *stages])


def put(root: Path, s: W.WeightSpec) -> None:
    """Make ``s`` present the way a copy by hand would (files of any content)."""
    for rel in s.expected_paths():
        (root / s.name / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / s.name / rel).write_bytes(b"w")


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """No test sees the user's weights or Hugging Face cache."""
    monkeypatch.delenv(W.WEIGHTS_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf-cache"))


def test_every_paper_grade_backend_has_its_entries():
    for need, names in PAPER_GRADE.items():
        have = {s.name for s in W.REGISTRY.values() if need in s.needed_by}
        assert have == names, need
    unused = {s.name for s in W.REGISTRY.values()} - set().union(*PAPER_GRADE.values())
    assert not unused


@pytest.mark.parametrize("s", list(W.REGISTRY.values()), ids=lambda s: s.name)
def test_entry_is_complete(s: W.WeightSpec):
    assert re.fullmatch(r"[a-z0-9][a-z0-9.-]*", s.name)
    assert s.needed_by and s.files and s.licence and s.size_mb > 0 and s.notes
    paths = [f.path for f in s.files]
    assert len(set(paths)) == len(paths) and not any(p.startswith("/") or ".." in Path(p).parts for p in paths)
    if s.hf_repo:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+", s.hf_repo) and s.revision
        assert all(f.url is None for f in s.files)
    else:
        assert all(f.url and f.url.startswith("https://") and f.url.rstrip("/").endswith(Path(f.path).name.replace("+", "%2B")) for f in s.files)
    for f in s.files:
        assert f.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", f.sha256)
    assert (s.converter is None) == (s.converted is None)


@pytest.mark.parametrize("s", [s for s in W.REGISTRY.values() if s.converter], ids=lambda s: s.name)
def test_converters_offer_convert(s: W.WeightSpec):
    if importlib.util.find_spec(s.converter) is None:
        pytest.skip(f"{s.converter} is not written yet")
    assert callable(importlib.import_module(s.converter).convert)


def test_weights_root_precedence(monkeypatch, tmp_path):
    assert W.weights_root() == (tmp_path / "home" / ".cache" / "hoiforge" / "weights").resolve()
    monkeypatch.setenv(W.WEIGHTS_ENV, str(tmp_path / "env"))
    assert W.weights_root() == (tmp_path / "env").resolve()
    assert W.weights_root(tmp_path / "flag") == (tmp_path / "flag").resolve()
    assert W.runtime_env_vars()[W.WEIGHTS_ENV] == str((tmp_path / "env").resolve())


def test_required_for_reads_backend_and_model_keys():
    r = recipe(StageParams(stage="person", backend="ultralytics"), ProductsParams(stage="products"),
               StageParams(stage="aesthetic", backend="laion"), StageParams(stage="edges"))  # fmt: skip
    assert [s.name for s in W.required_for(r)] == [
        "yolo11x", "grounding-dino-base", "sam-vit-h", "clip-vit-large-patch14", "laion-aesthetic-mlp",
    ]  # fmt: skip


@pytest.mark.parametrize("name", ["demo", "hoihuman", "shoeleg"])
def test_bundled_recipes_with_embedded_backends_need_nothing(name):
    assert W.required_for(load_recipe(name)) == []


def test_resolve_missing_says_how_to_fetch(tmp_path):
    with pytest.raises(BackendUnavailable) as e:
        W.resolve("sam-vit-h", root=tmp_path)
    msg = str(e.value)
    assert "sam_vit_h_4b8939.pth" in msg and f"hoiforge models fetch sam-vit-h --to {tmp_path.resolve()}" in msg


def test_resolve_present_folder_and_file(tmp_path, monkeypatch):
    put(tmp_path, W.REGISTRY["sam-vit-h"])
    monkeypatch.setenv(W.WEIGHTS_ENV, str(tmp_path))
    assert W.resolve("sam-vit-h") == (tmp_path / "sam-vit-h").resolve()
    assert W.resolve("sam-vit-h", "sam_vit_h_4b8939.pth").read_bytes() == b"w"
    with pytest.raises(BackendUnavailable, match="no file 'other.pth'"):
        W.resolve("sam-vit-h", "other.pth")
    with pytest.raises(BackendUnavailable, match="unknown weights 'sam'"):
        W.resolve("sam")


def test_truncated_file_counts_as_missing(tmp_path):
    s = W.REGISTRY["big-lama"]
    put(tmp_path, s)
    (tmp_path / s.name / W.MANIFEST).write_text('{"files": {"big-lama.pt": {"size": 196000000}}}')
    assert s.missing_in(tmp_path / s.name) == ["big-lama.pt"]


def test_converted_output_is_required(tmp_path):
    s = W.REGISTRY["laion-aesthetic-mlp"]
    (tmp_path / s.name).mkdir()
    (tmp_path / s.name / s.files[0].path).write_bytes(b"pth")
    assert s.missing_in(tmp_path / s.name) == [s.converted]


def test_hugging_face_cache_copy_is_used(tmp_path):
    s = W.REGISTRY["dinov2-base"]
    repo = tmp_path / "hf-cache" / "models--facebook--dinov2-base"
    snapshot = repo / "snapshots" / ("a" * 40)
    for f in s.files:
        (snapshot / f.path).parent.mkdir(parents=True, exist_ok=True)
        (snapshot / f.path).write_bytes(b"w")
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("a" * 40)
    assert W.resolve("dinov2-base", "model.safetensors", root=tmp_path / "empty") == snapshot / "model.safetensors"
    (snapshot / "model.safetensors").unlink()  # an incomplete cache copy is not a copy
    with pytest.raises(BackendUnavailable):
        W.resolve("dinov2-base", root=tmp_path / "empty")


def test_preflight_lists_every_missing_entry_at_once(tmp_path):
    r = recipe(StageParams(stage="person", backend="ultralytics"), ProductsParams(stage="products"))
    put(tmp_path, W.REGISTRY["sam-vit-h"])
    with pytest.raises(BackendUnavailable) as e:
        W.preflight(r, tmp_path)
    msg = str(e.value)
    assert "yolo11x" in msg and "grounding-dino-base" in msg and "sam-vit-h (" not in msg
    assert msg.endswith(f"hoiforge models fetch yolo11x grounding-dino-base --to {tmp_path.resolve()}")
    put(tmp_path, W.REGISTRY["yolo11x"])
    put(tmp_path, W.REGISTRY["grounding-dino-base"])
    W.preflight(r, tmp_path)  # all present: no error


def write_recipe(path: Path, person_backend: str) -> Path:
    path.write_text(
        "name: paper\nstages:\n  - stage: decode\n"
        f"  - stage: person\n    backend: {person_backend}\n"
        "  - stage: edges\n    region: image\n"
    )
    return path


def test_cli_check_on_empty_dir_lists_exactly_the_recipe_needs(tmp_path):
    yaml = write_recipe(tmp_path / "paper.yaml", "ultralytics")
    root = tmp_path / "weights"
    result = CliRunner().invoke(models_app, ["check", "--recipe", str(yaml), "--weights", str(root)])
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert [ln.split(" ")[1] for ln in lines if ln.startswith("missing:")] == ["yolo11x"]
    assert lines[-1] == f"get them with: hoiforge models fetch yolo11x --to {root.resolve()}"

    put(root, W.REGISTRY["yolo11x"])
    result = CliRunner().invoke(models_app, ["check", "--recipe", str(yaml), "--weights", str(root)])
    assert result.exit_code == 0 and "ok: all 1 weights" in result.stdout


def test_cli_check_embedded_recipe_passes(tmp_path):
    result = CliRunner().invoke(models_app, ["check", "--recipe", "demo", "--weights", str(tmp_path)])
    assert result.exit_code == 0 and "ok: all 0 weights for demo" in result.stdout


def test_cli_check_verify_refuses_a_corrupted_file(tmp_path):
    yaml = write_recipe(tmp_path / "paper.yaml", "ultralytics")
    s = W.REGISTRY["yolo11x"]
    put(tmp_path, s)
    # What fetch would have recorded for the good file; the file on disk differs (same size).
    (tmp_path / s.name / W.MANIFEST).write_text('{"files": {"yolo11x.pt": {"size": 1, "sha256": "' + "0" * 64 + '"}}}')
    result = CliRunner().invoke(models_app, ["check", "--recipe", str(yaml), "--weights", str(tmp_path), "--verify"])
    assert result.exit_code == 1
    assert "corrupt: yolo11x/yolo11x.pt: sha256" in result.stderr and "does not match" in result.stderr
    assert "hoiforge models fetch yolo11x" in result.stderr


def test_cli_check_bad_recipe_is_one_line(tmp_path):
    result = CliRunner().invoke(models_app, ["check", "--recipe", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 1 and result.stderr.startswith("error: recipe") and len(result.stderr.splitlines()) == 1


def test_cli_list_shows_presence_and_recipes(tmp_path):
    put(tmp_path, W.REGISTRY["sam-vit-h"])
    result = CliRunner().invoke(models_app, ["list", "--weights", str(tmp_path)], env={"COLUMNS": "300"})
    assert result.exit_code == 0
    rows = {ln.split("│")[1].strip(): ln for ln in result.stdout.splitlines() if ln.count("│") > 2}
    assert set(W.REGISTRY) <= set(rows)
    assert str((tmp_path / "sam-vit-h").resolve()) in rows["sam-vit-h"] and "missing" in rows["big-lama"]
    assert "recipe demo: no weights (embedded backends only)" in result.stdout
