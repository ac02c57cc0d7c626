"""Security agreements, checked on the code and on behaviour."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from hoiforge.pipeline.adapter import run_stage
from hoiforge.stages.decode import Decode
from hoiforge.stages.testing import sample_from_file
from tests.conftest import DATA

SRC = Path(__file__).resolve().parents[2] / "src" / "hoiforge"


def calls(name: str):
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call):
                func = node.func
                called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if called == name:
                    yield path, node


def test_every_torch_load_is_weights_only():
    found = list(calls("load"))
    torch_loads = [(p, n) for p, n in found if isinstance(n.func, ast.Attribute) and getattr(n.func.value, "id", "") == "torch"]
    assert torch_loads, "the check found no torch.load at all: it would pass vacuously"
    for path, node in torch_loads:
        kw = {k.arg: k.value for k in node.keywords}
        assert isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True, f"{path}:{node.lineno}"


def test_no_trust_remote_code_enabled_by_default():
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.keyword) and node.arg == "trust_remote_code":
                # Only ever passed through from an explicit user flag, never switched on in code.
                assert not (isinstance(node.value, ast.Constant) and node.value.value is True), f"{path}:{node.value.lineno}"


@pytest.fixture
def restore_pil_limit():
    from PIL import Image

    saved = Image.MAX_IMAGE_PIXELS
    yield
    Image.MAX_IMAGE_PIXELS = saved  # Decode.setup sets it per worker process; here that is pytest's


def test_pixel_limit_comes_from_the_recipe(restore_pil_limit):
    strict = Decode(Decode.Params(stage="decode", max_pixels=100_000))
    [big] = run_stage(strict, [sample_from_file(DATA / "astronaut.png")])  # 512x512 = 262k px
    assert big.status == "failed" and "too large" in big.reason
    lenient = Decode(Decode.Params(stage="decode", max_pixels=300_000))
    [fine] = run_stage(lenient, [sample_from_file(DATA / "astronaut.png")])
    assert fine.status == "ok"
