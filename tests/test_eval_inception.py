"""The embedded FID Inception on real photos: resize, features, FID behaviour, streaming, cache, unreadable files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hoiforge.metrics.feature_cache import cached_folder_features
from hoiforge.metrics.features import Features, extract_folder, extract_images
from hoiforge.metrics.fid import fid
from hoiforge.metrics.image_folder import skipped_line
from hoiforge.metrics.inception import InceptionV3Features, short_side_resize, tf1_resize_bilinear

DATA = Path(__file__).parent / "data"
PHOTOS = ("astronaut.png", "basketball1.png", "coffee.png", "scenetext01.jpg")


def photos() -> list[np.ndarray]:
    """Real photos plus crops and a flip: 12 varied images."""
    out = []
    for name in PHOTOS:
        rgb = np.asarray(Image.open(DATA / name).convert("RGB"))
        h, w = rgb.shape[:2]
        out += [rgb, rgb[:, ::-1], rgb[h // 5 :, w // 6 :]]
    return [np.ascontiguousarray(x) for x in out]


@pytest.fixture(scope="module")
def extractor():
    # resolution 256: the papers' 512 would only add resize time; the Inception input is 299 either way.
    return InceptionV3Features(resolution=256, device="cpu")


@pytest.fixture(scope="module")
def base(extractor):
    images = photos()
    values, _ = extract_images([(str(i), im) for i, im in enumerate(images)], extractor, batch_size=6)
    return images, values


def test_tf1_resize_samples_without_half_pixel_centres():
    x = torch.arange(4, dtype=torch.float32).reshape(1, 1, 1, 4).expand(1, 1, 2, 4)
    # 4 -> 8: output i samples input i / 2 (TF1), clamped at the last column; not (i + 0.5) / 2 - 0.5.
    assert tf1_resize_bilinear(x, (2, 8))[0, 0, 0].tolist() == [0, 0.5, 1, 1.5, 2, 2.5, 3, 3]
    # 4 -> 2: output i samples input 2 i: the values 0 and 2, no averaging.
    assert tf1_resize_bilinear(x, (2, 2))[0, 0, 0].tolist() == [0, 2]


def test_short_side_resize_keeps_aspect():
    rgb = np.zeros((300, 450, 3), np.uint8)
    assert short_side_resize(rgb, 200).shape == (200, 300, 3)
    assert short_side_resize(rgb, None) is rgb and short_side_resize(rgb, 300) is rgb


def test_features_are_2048d_pool_activations_and_batching_does_not_change_them(extractor, base):
    images, values = base
    assert values.shape == (12, 2048) and values.dtype == np.float32
    assert (values >= 0).all() and values.mean() > 0.05  # post-ReLU average pool
    one_by_one, _ = extract_images([(str(i), im) for i, im in enumerate(images[:3])], extractor, batch_size=1)
    np.testing.assert_allclose(one_by_one, values[:3], rtol=1e-4, atol=1e-5)


def test_fid_on_real_features_is_zero_against_itself_and_rises_with_noise(extractor, base):
    images, values = base
    assert abs(fid(values, values, method="eigh")) < 1e-3
    rng = np.random.default_rng(0)
    fids = []
    for sigma in (8, 32, 96):
        noisy = [np.clip(im + rng.normal(0, sigma, im.shape), 0, 255).astype(np.uint8) for im in images]
        feats, _ = extract_images([(str(i), im) for i, im in enumerate(noisy)], extractor, batch_size=6)
        fids.append(fid(values, feats, method="eigh"))
    assert 1.0 < fids[0] < fids[1] < fids[2], fids


def _write(folder: Path, images: list[np.ndarray]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, im in enumerate(images):
        Image.fromarray(im).save(folder / f"{i:03d}.png")
    return folder


def test_folder_features_stream_skip_unreadable_files_and_save_load(tmp_path, extractor, base):
    images, values = base
    folder = _write(tmp_path / "set", images[:4])
    (folder / "notes.txt").write_text("not an image, not listed")
    (folder / "zz_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (folder / "zz_empty.jpg").write_bytes(b"")
    seen_batches = []
    original = extractor.features
    extractor.features = lambda batch: seen_batches.append(len(batch)) or original(batch)
    try:
        f = extract_folder(folder, extractor, batch_size=3, progress=False)
    finally:
        extractor.features = original
    assert seen_batches == [3, 1]  # never more than one batch of images at a time
    assert f.n == 4 and f.names == ["000.png", "001.png", "002.png", "003.png"] and f.total_files == 6
    assert [name for name, _ in f.skipped] == ["zz_broken.png", "zz_empty.jpg"]
    line = skipped_line(f.source, f.total_files, f.skipped)
    assert line.startswith("2 of 6 files in ") and "zz_broken.png (not an image)" in line and "zz_empty.jpg (empty file)" in line
    np.testing.assert_allclose(f.values, values[:4], rtol=1e-4, atol=1e-5)  # PNG round trip is lossless
    loaded = Features.load(f.save(tmp_path / "f.npz"))
    assert loaded.settings == f.settings and loaded.names == f.names and loaded.skipped == f.skipped
    np.testing.assert_array_equal(loaded.values, f.values)


def test_real_set_features_are_cached_by_content(tmp_path, extractor, base):
    images, _ = base
    folder = _write(tmp_path / "real", images[:3])
    calls = []
    original = extractor.features
    extractor.features = lambda batch: calls.append(len(batch)) or original(batch)
    try:
        first, hit1 = cached_folder_features(folder, extractor, tmp_path / "cache", progress=False)
        second, hit2 = cached_folder_features(folder, extractor, tmp_path / "cache", progress=False)
        assert (hit1, hit2) == (False, True) and sum(calls) == 3  # the second run ran no Inception
        np.testing.assert_array_equal(first.values, second.values)
        renamed = tmp_path / "elsewhere"
        folder.rename(renamed)
        _, hit3 = cached_folder_features(renamed, extractor, tmp_path / "cache", progress=False)
        assert hit3  # content, not paths, is the key
        Image.fromarray(images[5]).save(renamed / "001.png")
        _, hit4 = cached_folder_features(renamed, extractor, tmp_path / "cache", progress=False)
        assert not hit4 and sum(calls) == 6
        other = InceptionV3Features(resolution=128, device="cpu")
        other.net = extractor.net
        other.features = extractor.features
        _, hit5 = cached_folder_features(renamed, other, tmp_path / "cache", progress=False)
        assert not hit5  # another resolution is another key
    finally:
        extractor.features = original
