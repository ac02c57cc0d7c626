"""OCR and inpainting backends on the real fixture photos; LaMa's loader on a tiny TorchScript model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from hoiforge.errors import BackendUnavailable
from hoiforge.models.inpaint import LamaInpainter, PatchMatchInpainter, TeleaInpainter, dilate
from hoiforge.models.ocr import PaddleOCRReader, RapidOCRReader, regions_from_paddle
from tests.overlays import DATA, changed_pixels, sale_overlay


@pytest.fixture(scope="module")
def reader():
    return RapidOCRReader()


@pytest.fixture(scope="module")
def overlay():
    clean = np.asarray(Image.open(DATA / "astronaut.png").convert("RGB"))
    drawn = np.asarray(sale_overlay())
    return clean, drawn, changed_pixels(drawn, clean)


def texts(regions) -> str:
    return " ".join(r.text for r in regions).upper().replace(" ", "")


# -- OCR ---------------------------------------------------------------------------------------
def test_rapidocr_reads_the_overlay_where_it_was_drawn(reader, overlay):
    clean, drawn, text_pixels = overlay
    regions = reader.read([drawn, np.asarray(Image.open(DATA / "coffee.png").convert("RGB"))])
    found, on_coffee = regions
    assert "SALE50%OFF" in texts(found) and "SHOPMARK" in texts(found)
    assert all(r.score < 0.5 for r in on_coffee)  # a clean product photo has no text (boxes may be found, nothing is read)
    sale = next(r for r in found if "SALE" in r.text.upper())
    x0, y0, x1, y1 = sale.box
    ys, xs = np.nonzero(text_pixels[: int(0.6 * clean.shape[0])])  # the headline's drawn pixels
    assert x0 <= xs.min() + 4 and xs.max() - 4 <= x1 and y0 <= ys.min() + 4 and ys.max() - 4 <= y1
    assert 0.5 <= sale.score <= 1 and len(sale.polygon) == 4
    doc = sale.to_json()
    assert set(doc) == {"polygon", "box", "text", "score", "det_score"} and doc["box"] == [round(v, 1) for v in sale.box]
    assert 0.5 <= sale.det_score <= 1 and all(r.det_score is not None for r in found)


def test_paddleocr_says_what_to_do_when_not_installed_or_no_models(tmp_path):
    with pytest.raises(BackendUnavailable, match="paddleocr|det_model_dir"):
        PaddleOCRReader.check(det_model_dir=str(tmp_path), rec_model_dir=str(tmp_path))


def test_paddleocr_results_become_text_regions():
    # The mapping PaddleOCR 3.x's OCRResult exposes (rec_polys are int16 4x2 arrays).
    result = {
        "rec_polys": [np.array([[10, 20], [90, 20], [90, 40], [10, 40]], np.int16), np.array([[0, 0], [5, 0], [5, 5], [0, 5]], np.int16)],
        "rec_texts": ["SALE", "x"],
        "rec_scores": [0.97, 0.2],
    }
    (region,) = regions_from_paddle(result, min_score=0.5)
    assert region.text == "SALE" and region.box == (10, 20, 90, 40) and region.score == pytest.approx(0.97)


# -- embedded inpainting -------------------------------------------------------------------------
@pytest.mark.parametrize("backend", [TeleaInpainter(), PatchMatchInpainter()], ids=["telea", "patchmatch"])
def test_inpainting_removes_drawn_text_and_touches_nothing_else(backend, reader, overlay):
    clean, drawn, text_pixels = overlay
    mask = dilate(text_pixels, 3)
    (filled,) = backend.inpaint([drawn], [mask])
    assert filled.shape == drawn.shape and filled.dtype == np.uint8
    assert np.array_equal(filled[mask == 0], drawn[mask == 0])  # outside the mask: exact
    error = lambda img: np.abs(img.astype(int) - clean.astype(int))[text_pixels].mean()
    assert error(filled) < 0.6 * error(drawn)  # the fill is far closer to the clean photo than the text was
    still_read = texts(reader.read([filled])[0])
    assert not any(word in still_read for word in ("SALE", "OFF", "SHOPMARK")), still_read


def test_dilate_grows_the_mask_by_the_margin():
    mask = np.zeros((40, 40), np.uint8)
    mask[20, 20] = 1
    grown = dilate(mask, 5)
    ys, xs = np.nonzero(grown)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (15, 25, 15, 25) and set(np.unique(grown)) == {0, 255}
    assert np.array_equal(dilate(mask, 0) > 0, mask > 0)


# -- LaMa: the real loader on a tiny model in big-lama.pt's format -------------------------------
class TinyLama(torch.nn.Module):
    """big-lama.pt's interface: (image [B,3,H,W] 0-1, mask [B,1,H,W]) -> [B,3,H,W], sides % 8 == 0.

    Like the exported LaMa it blanks the hole, appends the mask, runs a generator and composites.
    The generator is per-pixel (1x1 convolutions), so every hole pixel gets one known colour.
    """

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.generator = torch.nn.Sequential(torch.nn.Conv2d(4, 8, 1), torch.nn.ReLU(), torch.nn.Conv2d(8, 3, 1), torch.nn.Sigmoid())

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        assert image.shape[2] % 8 == 0 and image.shape[3] % 8 == 0, "LaMa needs sides divisible by 8"
        predicted = self.generator(torch.cat([image * (1 - mask), mask], dim=1))
        return mask * predicted + (1 - mask) * image


@pytest.fixture(scope="module")
def lama(tmp_path_factory):
    path = tmp_path_factory.mktemp("lama") / "big-lama.pt"
    torch.jit.script(TinyLama().eval()).save(str(path))
    inpainter = LamaInpainter(model_path=str(path), batch_size=2, hd_threshold=1024, crop_margin=64)
    hole = inpainter.model(torch.zeros(1, 3, 8, 8), torch.ones(1, 1, 8, 8))[0, :, 0, 0]
    hole_colour = (hole.clamp(0, 1) * 255).round().byte().numpy()
    calls: list[tuple[int, ...]] = []
    model = inpainter.model
    inpainter.model = lambda image, mask: (calls.append(tuple(image.shape)), model(image, mask))[1]
    return inpainter, hole_colour, calls


def test_lama_loader_pads_batches_and_crops_back(lama, overlay):
    inpainter, hole_colour, calls = lama
    calls.clear()
    _, drawn, text_pixels = overlay
    odd = drawn[:301, :203]  # sides not divisible by 8
    masks = [dilate(text_pixels, 2), dilate(text_pixels, 2)[:301, :203], dilate(text_pixels, 4)]
    out = inpainter.inpaint([drawn, odd, drawn], masks)
    assert sorted(calls) == [(1, 3, 304, 208), (2, 3, 512, 512)]  # same-size images share a batch
    for img, mask, filled in zip([drawn, odd, drawn], masks, out, strict=True):
        assert filled.shape == img.shape
        assert np.array_equal(filled[mask == 0], img[mask == 0])
        assert (filled[mask > 0] == hole_colour).all()  # the model's fill, aligned after pad/crop


def test_lama_large_images_go_through_crops_around_each_hole(lama, overlay):
    inpainter, hole_colour, calls = lama
    calls.clear()
    rng = np.random.default_rng(0)
    big = rng.integers(0, 255, (1100, 1400, 3), dtype=np.uint8)
    mask = np.zeros(big.shape[:2], np.uint8)
    mask[100:130, 100:220] = 255  # a small hole near the top left
    mask[900:950, 1100:1300] = 255  # and one near the bottom right
    (filled,) = inpainter.inpaint([big], [mask])
    assert len(calls) == 2 and all(max(shape[2:]) <= 512 for shape in calls)  # two crops, not the whole image
    assert np.array_equal(filled[mask == 0], big[mask == 0]) and (filled[mask > 0] == hole_colour).all()

    calls.clear()
    wide = np.zeros(big.shape[:2], np.uint8)
    wide[500:540, 20:1380] = 255  # a banner across the whole image: its crop exceeds 1024 px
    (filled,) = inpainter.inpaint([big], [wide])
    assert len(calls) == 1 and max(calls[0][2:]) <= 1024
    assert np.array_equal(filled[wide == 0], big[wide == 0])
    inner = np.zeros_like(wide)
    inner[505:535, 30:1370] = 1  # away from the hole's edge the upscaled fill is the model's colour
    assert np.abs(filled[inner > 0].astype(int) - hole_colour.astype(int)).max() <= 2


def test_lama_crops_of_unequal_size_share_a_bucket(lama):
    """Two text windows of 266x276 and 268x277 px round up to the same 272x280 bucket (issue 18)."""
    inpainter, hole_colour, calls = lama
    calls.clear()
    rng = np.random.default_rng(1)
    big = rng.integers(0, 255, (1100, 1400, 3), dtype=np.uint8)
    mask = np.zeros(big.shape[:2], np.uint8)
    # Context margin = half the hole's long side (> crop_margin 64): windows are 2*138 x (128+138)
    # and 2*139-1 x (130+138) px, i.e. 266x276 and 268x277.
    mask[300:428, 300:438] = 255
    mask[700:830, 900:1039] = 255
    assert [(y1 - y0, x1 - x0) for x0, y0, x1, y1 in inpainter._windows(mask > 0)] == [(266, 276), (268, 277)]
    (filled,) = inpainter.inpaint([big], [mask])
    assert calls == [(2, 3, 272, 280)]  # one batch, each crop padded to the bucket on its own
    assert np.array_equal(filled[mask == 0], big[mask == 0]) and (filled[mask > 0] == hole_colour).all()

    calls.clear()  # whole images of unequal sizes in one bucket: the same padding path
    a, b = big[:266, :276], big[400:668, 500:777]
    ma, mb = np.zeros(a.shape[:2], np.uint8), np.zeros(b.shape[:2], np.uint8)
    ma[-20:, -30:] = 255  # holes touching the padded edge: the padding must not leak into them
    mb[10:40, 10:50] = 255
    out = inpainter.inpaint([a, b], [ma, mb])
    assert calls == [(2, 3, 272, 280)]
    for img, m, f in zip([a, b], [ma, mb], out, strict=True):
        assert f.shape == img.shape and np.array_equal(f[m == 0], img[m == 0]) and (f[m > 0] == hole_colour).all()


class FourierUnit(torch.nn.Module):
    """LaMa's global branch (FFC): a 1x1 convolution in the 2-D Fourier domain."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = torch.nn.Conv2d(2 * channels, 2 * channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2], x.shape[-1]
        spectrum = torch.fft.rfftn(x, dim=(-2, -1), norm="ortho")
        stacked = torch.cat([spectrum.real, spectrum.imag], dim=1)
        real, imag = torch.relu(self.conv(stacked)).chunk(2, dim=1)
        return torch.fft.irfftn(torch.complex(real, imag), s=(h, w), dim=(-2, -1), norm="ortho")


class TinyFFCLama(torch.nn.Module):
    """A few-channel LaMa: downsample, Fourier unit + local conv, upsample; same interface."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.down = torch.nn.Conv2d(4, 8, 3, stride=2, padding=1)
        self.local = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.fourier = FourierUnit(8)
        self.up = torch.nn.ConvTranspose2d(8, 3, 4, stride=2, padding=1)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.down(torch.cat([image * (1 - mask), mask], dim=1)))
        x = x + self.local(x) + self.fourier(x)
        predicted = torch.sigmoid(self.up(x))
        return mask * predicted + (1 - mask) * image


def test_lama_loader_runs_a_fourier_model_batched_like_one_by_one(tmp_path, overlay):
    path = tmp_path / "big-lama.pt"
    torch.jit.script(TinyFFCLama().eval()).save(str(path))
    batched = LamaInpainter(model_path=str(path), batch_size=4)
    single = LamaInpainter(model_path=str(path), batch_size=1)
    _, drawn, text_pixels = overlay
    images = [drawn, drawn[:, ::-1].copy(), drawn[:300, :250].copy()]
    masks = [dilate(text_pixels, 3), dilate(text_pixels[:, ::-1], 3), dilate(text_pixels[:300, :250], 3)]
    together, apart = batched.inpaint(images, masks), single.inpaint(images, masks)
    for img, mask, a, b in zip(images, masks, together, apart, strict=True):
        assert np.array_equal(a[mask == 0], img[mask == 0])
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1  # batching does not leak between images
        assert (a[mask > 0] != img[mask > 0]).any()


def test_lama_needs_a_local_model_file(tmp_path):
    with pytest.raises(BackendUnavailable, match="big-lama.pt"):
        LamaInpainter.check(model_path=None)
    with pytest.raises(BackendUnavailable, match="does not exist"):
        LamaInpainter.check(model_path=str(tmp_path / "missing.pt"))
