"""The weights registry: complete entries tied to real backends, one weights root, resolve/preflight/check."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hoiforge.cli.models import models_app
from hoiforge.errors import BackendUnavailable
from hoiforge.models import registry
from hoiforge.models.weights import registry as W
from hoiforge.pipeline.recipe import Recipe, load_recipe, parse_recipe
from hoiforge.pipeline.weights_plan import preflight, required_for, with_weights

# Every paper-grade backend of the recipe stages (and eval/train), as (stage, backend) -> its entries.
PAPER_GRADE: dict[tuple[str, str], set[str]] = {
    ("person", "yolo"): {"yolo11x"},
    ("person", "rtdetr"): {"rtdetr-r50vd-coco-o365"},
    ("pose", "vitpose"): {"vitpose-h-wholebody"},
    ("pose", "rtmw"): {"rtmw-x-wholebody", "dwpose-l-wholebody"},  # DWPose: an alternative model, same runtime
    ("products", "grounding-dino"): {"grounding-dino-base"},
    ("products", "sam"): {"sam-vit-h"},
    ("products", "hf-sam"): {"sam-vit-huge-hf"},
    ("cleanup", "paddleocr"): {"ppocr-v4-det", "ppocr-v4-rec"},
    ("cleanup", "lama"): {"big-lama"},
    ("caption", "qwen2-vl"): {"qwen2-vl-7b-instruct"},
    ("caption", "marian"): {"opus-mt-zh-en"},
    ("quality", "laion-aesthetic"): {"clip-vit-large-patch14", "laion-aesthetic-mlp"},
    ("eval", "clip-score"): {"clip-vit-base-patch16"},
    ("eval", "fid"): {"fid-inception"},
    ("train", "virtualmodel"): {"dinov2-base", "stable-diffusion-v1-5"},
    ("precompute", "sd-vae"): {"stable-diffusion-v1-5"},
    ("precompute", "clip-text"): {"stable-diffusion-v1-5"},
    ("precompute", "dinov2"): {"dinov2-base"},
    ("train", "shoemodel"): {"stable-diffusion-v1-5"},
}

PAPER_RECIPE = """
name: paper
stages:
  - stage: decode
  - stage: person
    detector: yolo
  - stage: products
    detector: grounding-dino
    segmenter: sam
  - stage: cleanup
    ocr: paddleocr
    inpaint: {backend: lama, options: {model_path: /data/mine/big-lama.pt}}
  - stage: quality
    scorer: laion-aesthetic
    min_aesthetic: 6
  - stage: edges
"""


def recipe(*stages: dict) -> Recipe:
    return parse_recipe({"name": "t", "stages": [{"stage": "decode"}, *stages]})


@pytest.fixture
def unpinned(monkeypatch):
    """Registry entries without their pins, for tests that make entries present with stand-in bytes."""
    from dataclasses import replace

    for name, s in list(W.REGISTRY.items()):
        monkeypatch.setitem(W.REGISTRY, name, replace(s, revision=None, files=tuple(replace(f, sha256=None) for f in s.files)))


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


@pytest.fixture
def paper(tmp_path) -> Recipe:
    (tmp_path / "paper.yaml").write_text(PAPER_RECIPE)
    return load_recipe(str(tmp_path / "paper.yaml"))


# -- the registry itself ---------------------------------------------------------------------
def test_every_paper_grade_backend_has_its_entries():
    for need, names in PAPER_GRADE.items():
        have = {s.name for s in W.REGISTRY.values() if need in {(u.stage, u.backend) for u in s.needed_by}}
        assert have == names, need
    unused = {s.name for s in W.REGISTRY.values()} - set().union(*PAPER_GRADE.values())
    assert not unused


@pytest.mark.parametrize("s", list(W.REGISTRY.values()), ids=lambda s: s.name)
def test_entry_is_complete(s: W.WeightSpec):
    assert re.fullmatch(r"[a-z0-9][a-z0-9.-]*", s.name)
    assert s.needed_by and s.files and s.licence and s.size_mb > 0 and s.notes
    paths = [f.path for f in s.files]
    assert len(set(paths)) == len(paths) and not any(p.startswith("/") or ".." in Path(p).parts for p in paths)
    if s.hf_repo:  # pinned to a commit, or the notes say none was found
        assert re.fullmatch(r"[\w.-]+/[\w.-]+", s.hf_repo)
        assert W.is_commit(s.revision) or (s.revision is None and "No commit pinned" in s.notes)
        assert all(f.url is None for f in s.files)
    else:  # the URL ends with the file's name (URL-quoted), so the saved name is the published one
        assert all(f.url and f.url.startswith("https://") and f.url.endswith(Path(f.path).name.replace("+", "%2B")) for f in s.files)
        assert all(f.sha256 for f in s.files) and "sha256" in s.notes  # every URL file pinned, its source noted
    for f in s.files:
        assert f.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", f.sha256)
    assert (s.converter is None) == (s.converted is None)


@pytest.mark.parametrize("s", [s for s in W.REGISTRY.values() if s.converter], ids=lambda s: s.name)
def test_converters_offer_convert(s: W.WeightSpec):
    if importlib.util.find_spec(s.converter) is None:
        pytest.skip(f"{s.converter} is not written yet")
    params = list(inspect.signature(importlib.import_module(s.converter).convert).parameters.values())
    assert len(params) >= 2 and all(p.default is inspect.Parameter.empty for p in params[:2])  # convert(src, dst)


def _backend_weight_options() -> list[tuple[registry.Backend, str, registry.Weights]]:
    return [(b, option, marker) for b in registry.all_backends() for option, marker in registry.weight_fields(b.load()).items()]


@pytest.mark.parametrize("b,option,marker", _backend_weight_options(), ids=lambda v: getattr(v, "name", None) or str(v))
def test_backend_weight_options_name_real_entries(b, option: str, marker: registry.Weights):
    """The typed options drive what a recipe needs; the entry's ``needed_by`` documents the same."""
    s = W.spec(marker.entry)
    assert marker.file is None or marker.file in s.expected_paths()
    stage = {"person-detector": "person", "pose-estimator": "pose", "product-detector": "products", "box-segmenter": "products",
             "text-reader": "cleanup", "inpainter": "cleanup", "captioner": "caption", "translator": "caption", "quality-scorer": "quality",
             "vae-encoder": "precompute", "text-encoder": "precompute", "image-encoder": "precompute"}[b.task]  # fmt: skip
    assert W.Use(stage, b.name, option, marker.file) in s.needed_by


def test_needed_by_documents_only_real_backend_options():
    declared = {(m.entry, b.name, option) for b, option, m in _backend_weight_options()}
    for s in W.REGISTRY.values():
        for u in s.needed_by:
            if u.stage not in ("eval", "train") and s.default:
                assert (s.name, u.backend, u.option) in declared, (s.name, u)


# -- one weights root, resolve ---------------------------------------------------------------
def test_weights_root_precedence(monkeypatch, tmp_path):
    assert W.weights_root() == (tmp_path / "home" / ".cache" / "hoiforge" / "weights").resolve()
    monkeypatch.setenv(W.WEIGHTS_ENV, str(tmp_path / "env"))
    assert W.weights_root() == (tmp_path / "env").resolve()
    assert W.weights_root(tmp_path / "flag") == (tmp_path / "flag").resolve()
    assert W.runtime_env_vars()[W.WEIGHTS_ENV] == str((tmp_path / "env").resolve())


def test_resolve_missing_says_how_to_fetch(tmp_path):
    with pytest.raises(BackendUnavailable) as e:
        W.resolve("sam-vit-h", root=tmp_path)
    msg = str(e.value)
    assert "sam_vit_h_4b8939.pth" in msg and f"hoiforge models fetch sam-vit-h --to {tmp_path.resolve()}" in msg


def test_resolve_present_folder_and_file(tmp_path, monkeypatch, unpinned):
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
    snapshot = repo / "snapshots" / s.revision  # the pinned commit
    for f in s.files:
        (snapshot / f.path).parent.mkdir(parents=True, exist_ok=True)
        (snapshot / f.path).write_bytes(b"w")
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(s.revision)
    assert W.resolve("dinov2-base", "model.safetensors", root=tmp_path / "empty") == snapshot / "model.safetensors"
    (snapshot / "model.safetensors").unlink()  # an incomplete cache copy is not a copy
    with pytest.raises(BackendUnavailable):
        W.resolve("dinov2-base", root=tmp_path / "empty")


# -- what a recipe needs -----------------------------------------------------------------------
def test_required_for_reads_every_slot_and_respects_user_options(paper):
    # big-lama is absent: the recipe gives its own model_path. Registry order.
    assert [s.name for s in required_for(paper)] == [
        "yolo11x", "grounding-dino-base", "sam-vit-h", "ppocr-v4-det", "ppocr-v4-rec",
        "clip-vit-large-patch14", "laion-aesthetic-mlp",
    ]  # fmt: skip


@pytest.mark.parametrize("name", ["demo", "hoihuman", "shoeleg"])
def test_bundled_recipes_with_embedded_backends_need_nothing(name):
    assert required_for(load_recipe(name)) == []


def test_alternatives_are_not_required():
    assert [s.name for s in required_for(recipe({"stage": "person"}, {"stage": "pose", "estimator": "rtmw"}))] == ["rtmw-x-wholebody"]


def test_with_weights_fills_unset_options_with_local_paths(paper, tmp_path, unpinned):
    root = tmp_path / "weights"
    for s in required_for(paper):
        put(root, s)
    filled = {p.stage: p for p in with_weights(paper, root).stages}
    r = root.resolve()
    assert filled["person"].detector.options == {"model": str(r / "yolo11x" / "yolo11x.pt")}
    assert filled["products"].detector.options == {"model": str(r / "grounding-dino-base")}
    assert filled["products"].segmenter.options == {"checkpoint": str(r / "sam-vit-h" / "sam_vit_h_4b8939.pth")}
    assert filled["cleanup"].ocr.options == {"det_model_dir": str(r / "ppocr-v4-det"), "rec_model_dir": str(r / "ppocr-v4-rec")}
    assert filled["cleanup"].inpaint.options == {"model_path": "/data/mine/big-lama.pt"}  # the user's, untouched
    assert filled["quality"].scorer.options == {
        "clip_model": str(r / "clip-vit-large-patch14"),
        "mlp_weights": str(r / "laion-aesthetic-mlp" / "sac+logos+ava1-l14-linearMSE.safetensors"),
    }
    assert {p.stage: p for p in paper.stages}["person"].detector.options == {}  # the input recipe is not modified


def test_preflight_lists_every_missing_entry_at_once(paper, tmp_path):
    for name in ("sam-vit-h", "ppocr-v4-det", "ppocr-v4-rec", "clip-vit-large-patch14", "laion-aesthetic-mlp"):
        put(tmp_path, W.REGISTRY[name])
    with pytest.raises(BackendUnavailable) as e:
        with_weights(paper, tmp_path)
    msg = str(e.value)
    assert "yolo11x (" in msg and "grounding-dino-base (" in msg and "sam-vit-h (" not in msg
    assert msg.endswith(f"hoiforge models fetch yolo11x grounding-dino-base --to {tmp_path.resolve()}")
    put(tmp_path, W.REGISTRY["yolo11x"])
    put(tmp_path, W.REGISTRY["grounding-dino-base"])
    preflight(paper, tmp_path)  # all present: no error


# -- the CLI -----------------------------------------------------------------------------------
def test_cli_check_on_empty_dir_lists_exactly_the_recipe_needs(tmp_path):
    (tmp_path / "paper.yaml").write_text(PAPER_RECIPE)
    root = tmp_path / "weights"
    result = CliRunner().invoke(models_app, ["check", "--recipe", str(tmp_path / "paper.yaml"), "--weights", str(root)])
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    needed = [s.name for s in required_for(load_recipe(str(tmp_path / "paper.yaml")))]
    assert [ln.split(" ")[1] for ln in lines if ln.startswith("missing:")] == needed
    assert lines[-1] == f"get them with: hoiforge models fetch {' '.join(needed)} --to {root.resolve()}"

    for name in needed:
        put(root, W.REGISTRY[name])
    result = CliRunner().invoke(models_app, ["check", "--recipe", str(tmp_path / "paper.yaml"), "--weights", str(root)])
    assert result.exit_code == 0 and f"ok: all {len(needed)} weights" in result.stdout


def test_cli_check_embedded_recipe_passes(tmp_path):
    result = CliRunner().invoke(models_app, ["check", "--recipe", "demo", "--weights", str(tmp_path)])
    assert result.exit_code == 0 and "ok: all 0 weights for demo" in result.stdout


def test_cli_check_verify_refuses_a_corrupted_file(tmp_path):
    (tmp_path / "yolo.yaml").write_text("name: y\nstages:\n  - stage: decode\n  - stage: person\n    detector: yolo\n")
    s = W.REGISTRY["yolo11x"]
    put(tmp_path, s)
    # What fetch would have recorded for the good file; the file on disk differs (same size).
    (tmp_path / s.name / W.MANIFEST).write_text('{"files": {"yolo11x.pt": {"size": 1, "sha256": "' + "0" * 64 + '"}}}')
    result = CliRunner().invoke(models_app, ["check", "--recipe", str(tmp_path / "yolo.yaml"), "--weights", str(tmp_path), "--verify"])
    assert result.exit_code == 1
    assert "corrupt: yolo11x/yolo11x.pt: sha256" in result.stderr and "does not match" in result.stderr
    assert "hoiforge models fetch yolo11x" in result.stderr


def test_cli_check_bad_recipe_is_one_line(tmp_path):
    result = CliRunner().invoke(models_app, ["check", "--recipe", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2 and result.stderr.startswith("error: recipe") and len(result.stderr.splitlines()) == 1


def test_cli_list_shows_presence_and_recipes(tmp_path):
    put(tmp_path, W.REGISTRY["sam-vit-h"])
    result = CliRunner().invoke(models_app, ["list", "--weights", str(tmp_path)], env={"COLUMNS": "500"})
    assert result.exit_code == 0
    rows = {ln.split("│")[1].strip(): ln for ln in result.stdout.splitlines() if ln.count("│") > 2}
    assert set(W.REGISTRY) <= set(rows)
    assert str((tmp_path / "sam-vit-h").resolve()) in rows["sam-vit-h"] and "missing" in rows["big-lama"]
    assert "recipe demo: no weights (embedded backends only)" in result.stdout
