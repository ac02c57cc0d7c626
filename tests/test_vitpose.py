"""ViTPose whole-body: converter from original checkpoints and the transformers backend.

Tiny original-format checkpoints (the real ViTPose key layout, random values) are converted,
checked against an independent forward of the original architecture, then loaded through the
same path as real weights and run top-down on the fixture photos.
"""

from pathlib import Path

import numpy as np
import pytest

from hoiforge.errors import BackendUnavailable
from hoiforge.pipeline.adapter import run_stage
from hoiforge.stages.pose import Pose
from hoiforge.stages.testing import decoded

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
F = torch.nn.functional
DATA = Path(__file__).parent / "data"
WIDTH, HEADS, LAYERS, H, W = 32, 2, 2, 256, 192
HP, WP = (H + 4 - 16) // 16 + 1, (W + 4 - 16) // 16 + 1  # patch grid of ViTPose's padding-2 patch embed


def original_checkpoint(plus: bool) -> dict:
    """State dict in the original ViTPose key layout: plain whole-body (classic head) or ViTPose++ (MoE, simple heads)."""
    g = torch.Generator().manual_seed(1 if plus else 0)

    def r(*shape, scale=0.2):
        return torch.randn(*shape, generator=g) * scale

    part = 8 if plus else 0
    sd = {"backbone.cls_token": r(1, 1, WIDTH), "backbone.pos_embed": r(1, HP * WP + 1, WIDTH),
          "backbone.patch_embed.proj.weight": r(WIDTH, 3, 16, 16, scale=0.05), "backbone.patch_embed.proj.bias": r(WIDTH)}  # fmt: skip
    for i in range(LAYERS):
        b = f"backbone.blocks.{i}."
        sd |= {b + "norm1.weight": 1 + r(WIDTH), b + "norm1.bias": r(WIDTH), b + "attn.qkv.weight": r(3 * WIDTH, WIDTH),
               b + "attn.qkv.bias": r(3 * WIDTH), b + "attn.proj.weight": r(WIDTH, WIDTH), b + "attn.proj.bias": r(WIDTH),
               b + "norm2.weight": 1 + r(WIDTH), b + "norm2.bias": r(WIDTH), b + "mlp.fc1.weight": r(4 * WIDTH, WIDTH),
               b + "mlp.fc1.bias": r(4 * WIDTH), b + "mlp.fc2.weight": r(WIDTH - part, 4 * WIDTH), b + "mlp.fc2.bias": r(WIDTH - part)}  # fmt: skip
        if plus:
            for e in range(6):
                sd |= {b + f"mlp.experts.{e}.weight": r(part, 4 * WIDTH), b + f"mlp.experts.{e}.bias": r(part)}
    sd |= {"backbone.last_norm.weight": 1 + r(WIDTH), "backbone.last_norm.bias": r(WIDTH)}
    if plus:  # simple heads: COCO 17 + aic 14, mpii 16, ap10k 17, apt36k 17, wholebody 133
        sd |= {"keypoint_head.final_layer.weight": r(17, WIDTH, 3, 3), "keypoint_head.final_layer.bias": r(17)}
        for j, n in enumerate((14, 16, 17, 17, 133)):
            sd |= {
                f"associate_keypoint_heads.{j}.final_layer.weight": r(n, WIDTH, 3, 3),
                f"associate_keypoint_heads.{j}.final_layer.bias": r(n),
            }
    else:
        sd |= {"keypoint_head.deconv_layers.0.weight": r(WIDTH, 256, 4, 4, scale=0.05), "keypoint_head.deconv_layers.3.weight": r(256, 256, 4, 4, scale=0.02),
               "keypoint_head.final_layer.weight": r(133, 256, 1, 1, scale=0.05), "keypoint_head.final_layer.bias": r(133)}  # fmt: skip
        for n in (1, 4):
            sd |= {f"keypoint_head.deconv_layers.{n}.weight": 1 + r(256), f"keypoint_head.deconv_layers.{n}.bias": r(256),
                   f"keypoint_head.deconv_layers.{n}.running_mean": r(256), f"keypoint_head.deconv_layers.{n}.running_var": 1 + r(256).abs(),
                   f"keypoint_head.deconv_layers.{n}.num_batches_tracked": torch.tensor(7)}  # fmt: skip
    return sd


def original_forward(sd: dict, x: torch.Tensor, plus: bool) -> torch.Tensor:
    """ViTPose's forward as the original repository writes it (ViT + MoE MLP + heads)."""
    B = x.shape[0]
    x = F.conv2d(x, sd["backbone.patch_embed.proj.weight"], sd["backbone.patch_embed.proj.bias"], stride=16, padding=2)
    x = x.flatten(2).transpose(1, 2)
    pos = sd["backbone.pos_embed"]
    x = x + pos[:, 1:] + pos[:, :1]
    for i in range(LAYERS):
        b = f"backbone.blocks.{i}."
        h = F.layer_norm(x, (WIDTH,), sd[b + "norm1.weight"], sd[b + "norm1.bias"], eps=1e-6)
        q, k, v = (
            F.linear(h, sd[b + "attn.qkv.weight"], sd[b + "attn.qkv.bias"]).reshape(B, -1, 3, HEADS, WIDTH // HEADS).permute(2, 0, 3, 1, 4)
        )
        attn = ((q @ k.transpose(-2, -1)) * (WIDTH // HEADS) ** -0.5).softmax(-1)
        h = (attn @ v).transpose(1, 2).reshape(B, -1, WIDTH)
        x = x + F.linear(h, sd[b + "attn.proj.weight"], sd[b + "attn.proj.bias"])
        h = F.layer_norm(x, (WIDTH,), sd[b + "norm2.weight"], sd[b + "norm2.bias"], eps=1e-6)
        h = F.gelu(F.linear(h, sd[b + "mlp.fc1.weight"], sd[b + "mlp.fc1.bias"]))
        out = F.linear(h, sd[b + "mlp.fc2.weight"], sd[b + "mlp.fc2.bias"])
        if plus:  # whole-body = dataset 5
            out = torch.cat([out, F.linear(h, sd[b + "mlp.experts.5.weight"], sd[b + "mlp.experts.5.bias"])], -1)
        x = x + out
    x = F.layer_norm(x, (WIDTH,), sd["backbone.last_norm.weight"], sd["backbone.last_norm.bias"], eps=1e-6)
    x = x.transpose(1, 2).reshape(B, WIDTH, HP, WP)
    if plus:
        x = F.interpolate(F.relu(x), scale_factor=4, mode="bilinear", align_corners=False)
        return F.conv2d(
            x, sd["associate_keypoint_heads.4.final_layer.weight"], sd["associate_keypoint_heads.4.final_layer.bias"], padding=1
        )
    for d, n in ((0, 1), (3, 4)):
        x = F.conv_transpose2d(x, sd[f"keypoint_head.deconv_layers.{d}.weight"], stride=2, padding=1)
        p = f"keypoint_head.deconv_layers.{n}."
        x = F.relu(F.batch_norm(x, sd[p + "running_mean"], sd[p + "running_var"], sd[p + "weight"], sd[p + "bias"], eps=1e-5))
    return F.conv2d(x, sd["keypoint_head.final_layer.weight"], sd["keypoint_head.final_layer.bias"])


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    from hoiforge.models.weights.convert_vitpose import convert

    out = {}
    for plus in (False, True):
        root = tmp_path_factory.mktemp("vitpose_plus" if plus else "vitpose_wb")
        sd = original_checkpoint(plus)
        torch.save({"state_dict": sd, "meta": {"epoch": 210}}, root / "orig.pth")
        out[plus] = (sd, convert(root / "orig.pth", root / "hf", num_heads=HEADS))
    return out


@pytest.mark.parametrize("plus", [False, True], ids=["wholebody-classic", "vitpose++-moe"])
def test_converted_model_computes_the_original_forward(converted, plus):
    from transformers import VitPoseForPoseEstimation

    sd, path = converted[plus]
    model = VitPoseForPoseEstimation.from_pretrained(path).eval()
    assert model.config.num_labels == 133 and model.config.use_simple_decoder == plus
    assert model.config.backbone_config.num_experts == 1  # ViTPose++'s whole-body expert folded into fc2
    x = torch.randn(2, 3, H, W, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ours = model(pixel_values=x).heatmaps
        ref = original_forward(sd, x, plus)
    assert ours.shape == (2, 133, H // 4, W // 4)
    assert torch.allclose(ours, ref, atol=1e-4), (ours - ref).abs().max()


def test_converter_refuses_checkpoints_without_a_wholebody_head(tmp_path):
    from hoiforge.models.weights.convert_vitpose import ConversionError, convert_state_dict

    sd = original_checkpoint(plus=False)
    sd["keypoint_head.final_layer.weight"] = sd["keypoint_head.final_layer.weight"][:17]
    with pytest.raises(ConversionError, match="133"):
        convert_state_dict(sd, num_heads=HEADS)


def test_vitpose_backend_batches_persons_across_images(converted):
    from hoiforge.models.vitpose import VitPoseWholeBody

    est = VitPoseWholeBody(model=str(converted[False][1]))
    assert est.flip_test
    imgs = [decoded(DATA / "basketball1.png").rgb(), decoded(DATA / "coffee.png").rgb(), decoded(DATA / "astronaut.png").rgb()]
    boxes = [[(43.8, 79.1, 166.9, 480.0), (430.0, 20.0, 640.0, 480.0)], [], [(45.3, 76.6, 325.6, 438.6)]]
    together = est.estimate(imgs, boxes)
    assert [len(p) for p in together] == [2, 0, 1]
    for image_boxes, people in zip(boxes, together, strict=True):
        for (x0, y0, x1, y1), kp in zip(image_boxes, people, strict=True):
            assert kp.shape == (133, 3) and np.isfinite(kp).all()
            assert ((kp[:, 2] >= 0) & (kp[:, 2] <= 1)).all()
            # Decoded into image pixels inside the crop (the box fit to 3:4 and padded 1.25x), give
            # or take DARK's sub-pixel step (up to ~1 heatmap cell; 2 allowed) on random heatmaps.
            half = 1.25 * max(x1 - x0, (y1 - y0) * 0.75) / 2
            cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, half * (1 + 2 * 2 / (W // 4))
            assert (np.abs(kp[:, 0] - cx) <= half).all() and (np.abs(kp[:, 1] - cy) <= half * 4 / 3).all()
    # Batching does not mix persons up: one image alone gives the same keypoints.
    alone = est.estimate([imgs[2]], [boxes[2]])
    assert np.allclose(alone[0][0], together[2][0], atol=1e-3)


def test_pose_stage_with_vitpose_and_refusal_of_17_keypoint_models(converted, tmp_path):
    opts = {"model": str(converted[True][1]), "flip_test": False}
    stage = Pose(Pose.Params(stage="pose", estimator={"backend": "vitpose", "options": opts}))
    stage.preflight()
    s = decoded(DATA / "astronaut.png")
    s.ann["persons"] = [{"box": [45.3, 76.6, 325.6, 438.6], "score": 0.9}]
    s = run_stage(stage, [s])[0]
    assert s.live and len(s.ann["persons"][0]["keypoints"]) == 133
    assert s.ann["persons"][0]["pose_backend"] == "vitpose" and s.members["pose.png"]

    from transformers import VitPoseBackboneConfig, VitPoseConfig, VitPoseForPoseEstimation

    backbone = VitPoseBackboneConfig(hidden_size=WIDTH, num_hidden_layers=1, num_attention_heads=HEADS, out_indices=[1])
    VitPoseForPoseEstimation(VitPoseConfig(backbone_config=backbone, num_labels=17)).save_pretrained(tmp_path / "coco17")
    with pytest.raises(BackendUnavailable, match="17-keypoint head"):
        Pose(Pose.Params(stage="pose", estimator={"backend": "vitpose", "options": {"model": str(tmp_path / "coco17")}})).preflight()
