"""``hoiforge eval metrics`` end to end: real Inception, tiny CLIP, --json, the cache, and the one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from hoiforge.cli import app
from tests.eval_helpers import build_tiny_clip

DATA = Path(__file__).parent / "data"
PHOTOS = ("astronaut.png", "basketball1.png", "coffee.png", "scenetext01.jpg")
FAST = ["--resolution", "256", "--fid-method", "eigh", "--no-progress"]


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval-cli")
    real, fake = root / "real", root / "fake" / "nested"
    real.mkdir()
    fake.mkdir(parents=True)
    rng = np.random.default_rng(0)
    captions = []
    for i, name in enumerate(PHOTOS):
        rgb = np.asarray(Image.open(DATA / name).convert("RGB"))
        Image.fromarray(rgb).save(real / f"{i}.png")
        Image.fromarray(np.ascontiguousarray(rgb[:, ::-1])).save(real / f"{i}_flip.png")
        noisy = np.clip(rgb + rng.normal(0, 25, rgb.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(fake / f"{i}.png")
        captions.append({"file": f"nested/{i}.png", "caption": f"a photo of {name.split('.')[0]}" + " in detail" * 10 * (i == 0)})
    (fake / "broken.png").write_bytes(b"not a png")
    (root / "captions.jsonl").write_text("\n".join(json.dumps(c) for c in captions) + "\n")
    return root, real, root / "fake", root / "captions.jsonl", build_tiny_clip(root / "clip")


def run(*args: str):
    return CliRunner().invoke(app, ["eval", "metrics", *args])


def test_metrics_json_last_line_then_the_cache_is_used(sets):
    root, real, fake, captions, clip = sets
    args = ["--real", str(real), "--fake", str(fake), "--cache-dir", str(root / "cache"), *FAST]
    first = run(*args, "--captions", str(captions), "--clip-model", str(clip), "--json")
    assert first.exit_code == 0, first.output
    doc = json.loads(first.stdout.strip().splitlines()[-1])
    assert {"fid", "kid", "kid_std", "n_real", "n_fake", "clip"} <= set(doc)
    assert (doc["n_real"], doc["n_fake"], doc["resolution"], doc["clip_n"], doc["clip_truncated"]) == (8, 4, 256, 4, 1)
    assert doc["fid"] > 1 and 0 <= doc["clip"] <= 100 and doc["kid_std"] > 0
    assert "FID " in first.stdout and "N real 8, N fake 4, short side 256 px" in first.stdout
    assert "1 of 5 files in " in first.stderr and "broken.png (not an image)" in first.stderr
    assert "KID subset size lowered from 1000 to 2" in first.stderr and "cached at" in first.stderr

    second = run(*args, "--json")
    assert second.exit_code == 0, second.output
    again = json.loads(second.stdout.strip().splitlines()[-1])
    assert "read from" in second.stderr and "clip" not in again
    assert again["fid"] == pytest.approx(doc["fid"]) and again["kid"] == pytest.approx(doc["kid"])

    # The cached features file is itself a valid --real; at another resolution it is refused.
    cached = next((root / "cache").glob("*.npz"))
    assert run("--real", str(cached), "--fake", str(fake), *FAST).exit_code == 0
    other = run("--real", str(cached), "--fake", str(fake), "--resolution", "128", "--fid-method", "eigh", "--no-progress")
    assert other.exit_code == 2
    assert "different settings" in other.stderr and "short side 256 px" in other.stderr and "short side 128 px" in other.stderr


def test_bad_inputs_get_one_clear_line(sets, tmp_path, monkeypatch):
    _root, real, fake, captions, _ = sets
    one = tmp_path / "one"
    one.mkdir()
    Image.open(DATA / "coffee.png").save(one / "a.png")
    (one / "b.png").write_bytes(b"")
    cases = {
        "few": (["--real", str(real), "--fake", str(one)], "1 readable image(s) (1 unreadable); FID and KID need at least 2"),
        "missing": (["--real", str(tmp_path / "nope"), "--fake", str(fake)], "--real is a folder of images or a features .npz"),
        "resolution": (["--real", str(real), "--fake", str(fake), "--resolution", "8"], "--resolution 8: give a short side of at least 16"),
    }
    for name, (args, message) in cases.items():
        result = run(*args, "--no-progress")
        assert result.exit_code == 2, name
        assert message in result.stderr and "Traceback" not in result.output, (name, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, (name, result.stderr)
    monkeypatch.setenv("HOIFORGE_WEIGHTS", str(tmp_path / "no-weights"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "no-hf"))
    no_clip = run("--real", str(real), "--fake", str(fake), "--captions", str(captions), "--no-progress")
    assert no_clip.exit_code == 2 and "hoiforge models fetch clip-vit-base-patch16" in no_clip.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"file": "nested/0.png"}\n')
    result = run("--real", str(real), "--fake", str(fake), "--captions", str(bad), "--no-progress")
    assert result.exit_code == 2 and 'bad.jsonl:1: each line is {"file": NAME, "caption": TEXT}' in result.stderr
