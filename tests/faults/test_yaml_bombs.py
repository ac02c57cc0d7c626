"""YAML alias bombs in a recipe and in a received RUN's config.yaml (issue #27 item 5): refused in one
sentence before anything walks the expanded tree; ordinary anchors still load."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hoiforge import safe_yaml
from hoiforge.errors import shown

ROOT = Path(__file__).resolve().parents[2]


def laughs(levels: int = 9, key: str = "name") -> str:
    """The billion-laughs document: level i is ten aliases of level i-1 (10^9 strings at nine levels)."""
    lines = ['a0: &a0 "lol"']
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]")
    lines.append(f"{key}: *a{levels}")
    return "\n".join(lines) + "\n"


def _run(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    """The CLI in a child, bounded in time and memory: before the fix this hung at 3.3 GB."""
    limit = "import resource; resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30)); "
    code = limit + "import sys; from hoiforge.cli import app; sys.argv = ['hoiforge', *sys.argv[1:]]; app()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def test_build_refuses_a_billion_laughs_recipe_in_one_line(tmp_path):
    recipe = tmp_path / "bomb.yaml"
    recipe.write_text(laughs() + "stages:\n  - stage: decode\n")
    images = tmp_path / "in"
    images.mkdir()
    (images / "a.png").write_bytes((ROOT / "tests" / "data" / "coffee.png").read_bytes())
    done = _run(["build", str(images), "--out", str(tmp_path / "out"), "--recipe", str(recipe)])
    assert done.returncode != 0
    assert "Traceback" not in done.stderr and "MemoryError" not in done.stderr
    assert "bomb.yaml: not valid YAML" in done.stderr and "expands to more than 100000 values" in done.stderr
    assert not (tmp_path / "out" / "manifest.parquet").exists()


@pytest.mark.parametrize("trainer", ["virtualmodel", "shoemodel"])
def test_a_received_runs_bombed_config_is_a_config_error(tmp_path, trainer):
    import importlib

    config = importlib.import_module(f"hoiforge.training.{trainer}.config")
    path = tmp_path / "config.yaml"
    path.write_text(laughs(key="data"))
    with pytest.raises(config.ConfigError, match="expands to more than 100000 values"):
        config.load_config(path)


def test_generate_refuses_a_run_whose_config_is_a_bomb(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(laughs(key="models"))
    from PIL import Image

    product = tmp_path / "product.png"
    Image.new("RGBA", (64, 64), (200, 30, 30, 255)).save(product)
    done = _run(
        ["generate", "virtualmodel", "--checkpoint", str(run), "--product", str(product), "--pose", str(product), "--prompt", "x",
         "--out", str(tmp_path / "g.png")]
    )  # fmt: skip
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "expands to more than 100000 values" in done.stderr


def test_recursive_aliases_and_deep_nesting_are_refused_small_anchors_load():
    with pytest.raises(safe_yaml.YamlBomb, match="refers to itself"):
        safe_yaml.load("a: &a [*a]\n")
    with pytest.raises(yaml.YAMLError):
        safe_yaml.load("[" * 100_000 + "]" * 100_000)
    doc = safe_yaml.load("base: &b {lr: 0.1, steps: 3}\nstage1: *b\nstage2: {<<: *b, lr: 0.2}\n")
    assert doc == {"base": {"lr": 0.1, "steps": 3}, "stage1": {"lr": 0.1, "steps": 3}, "stage2": {"lr": 0.2, "steps": 3}}


def test_error_messages_show_a_bounded_value():
    tree = yaml.safe_load(laughs(levels=7))["name"]  # shared references: cheap to hold, 10^7 strings to repr
    text = shown(tree)
    assert len(text) <= 80 and text.startswith("[[[...]")
    assert "..." in shown("x" * 10_000) and len(shown("x" * 10_000)) <= 80


def test_every_yaml_load_in_the_source_goes_through_safe_yaml():
    offenders = [
        f"{p.relative_to(ROOT)}:{n}"
        for p in (ROOT / "src" / "hoiforge").rglob("*.py")
        if p.name != "safe_yaml.py"
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if re.search(r"(?<![\w.])yaml\.(safe_load|load|full_load|unsafe_load|load_all|safe_load_all)\(", line)
    ]
    assert offenders == []
