"""LAION aesthetic MLP .pth -> safetensors: same keys, same tensors, same scores; wrong inputs refused."""

from __future__ import annotations

import pickle

import pytest

torch = pytest.importorskip("torch")
from safetensors.torch import load_file

from hoiforge.models.weights.convert_aesthetic import LAYOUT, ConversionError, build_mlp, convert, main


@pytest.fixture
def published(tmp_path):
    """A randomly initialised MLP of the published layout, saved the way the publisher saved it."""
    torch.manual_seed(0)
    mlp = build_mlp().eval()
    path = tmp_path / "sac+logos+ava1-l14-linearMSE.pth"
    torch.save(mlp.state_dict(), path)
    return mlp, path


def test_round_trip_keeps_keys_tensors_and_outputs(published, tmp_path):
    mlp, src = published
    dst = convert(src, tmp_path / "out" / "mlp.safetensors")
    state = load_file(str(dst))
    assert set(state) == set(LAYOUT) == set(mlp.state_dict())
    for k, v in mlp.state_dict().items():
        assert state[k].dtype == v.dtype and torch.equal(state[k], v)
    reloaded = build_mlp().eval()
    reloaded.load_state_dict(state, strict=True)
    embeddings = torch.nn.functional.normalize(torch.randn(4, 768), dim=-1)  # CLIP embeddings are L2-normalised
    with torch.no_grad():
        assert torch.equal(reloaded(embeddings), mlp(embeddings))
    assert not list(dst.parent.glob("*.tmp"))


def test_wrong_layout_is_refused(tmp_path):
    state = build_mlp().state_dict()
    state["layers.0.weight"] = torch.zeros(1024, 512)  # e.g. a ViT-B/32 (512-d) predictor
    src = tmp_path / "b32.pth"
    torch.save(state, src)
    with pytest.raises(ConversionError, match=r"layers\.0\.weight: expected \(1024, 768\), got \(1024, 512\)"):
        convert(src, tmp_path / "x.safetensors")
    assert not (tmp_path / "x.safetensors").exists()


class NotWeights:  # any pickled object: weights_only=True must refuse to run its reconstruction
    def __reduce__(self):
        return (print, ("code ran",))


def test_pickle_with_code_is_refused(tmp_path, capsys):
    src = tmp_path / "evil.pth"
    src.write_bytes(pickle.dumps({"layers.0.weight": NotWeights()}, protocol=2))
    with pytest.raises(ConversionError, match="cannot load as a weights-only checkpoint"):
        convert(src, tmp_path / "x.safetensors")
    assert "code ran" not in capsys.readouterr().out


def test_command_line(published, tmp_path, capsys):
    _, src = published
    assert main([str(src), str(tmp_path / "m.safetensors")]) == 0
    assert (tmp_path / "m.safetensors").is_file()
    assert main([str(tmp_path / "absent.pth"), str(tmp_path / "y.safetensors")]) == 2
    assert capsys.readouterr().err.startswith("error: ")
