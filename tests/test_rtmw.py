"""RTMW/DWPose ONNX backend: tiny models with RTMW's SimCC interface, exported with torch.onnx,
loaded and run through onnxruntime exactly like real RTMW weights."""

from pathlib import Path

import numpy as np
import pytest

from hoiforge.errors import BackendUnavailable
from hoiforge.models.rtmw_onnx import MEAN, STD, RTMWOnnxPose, box_center_scale, crop
from hoiforge.pipeline.adapter import run_stage
from hoiforge.stages.pose import Pose
from hoiforge.stages.testing import decoded

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")  # torch.onnx.export needs it (tests only)
pytest.importorskip("onnxruntime")
DATA = Path(__file__).parent / "data"
IN_W, IN_H, KP = 48, 64, 133  # a small input; real RTMW-x is 288 x 384


class TinySimCC(torch.nn.Module):
    """RTMW's interface (N x 3 x H x W -> simcc_x N x 133 x 2W, simcc_y N x 133 x 2H), tiny and random."""

    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=4, padding=1), torch.nn.GELU(), torch.nn.AdaptiveAvgPool2d((4, 3)))
        self.x = torch.nn.Linear(8 * 12, KP * IN_W * 2)
        self.y = torch.nn.Linear(8 * 12, KP * IN_H * 2)

    def forward(self, img):
        f = self.stem(img).flatten(1)
        return self.x(f).view(-1, KP, IN_W * 2), self.y(f).view(-1, KP, IN_H * 2)


def export(model: torch.nn.Module, path: Path, dynamic_batch: bool = True) -> Path:
    model.eval()
    torch.onnx.export(model, (torch.zeros(1, 3, IN_H, IN_W),), str(path), input_names=["input"], output_names=["simcc_x", "simcc_y"],
                      dynamic_axes={"input": {0: "batch"}, "simcc_x": {0: "batch"}, "simcc_y": {0: "batch"}} if dynamic_batch else None,
                      dynamo=False)  # fmt: skip
    return path


@pytest.fixture(scope="module")
def random_model(tmp_path_factory):
    torch.manual_seed(0)
    return export(TinySimCC(), tmp_path_factory.mktemp("rtmw") / "tiny_rtmw.onnx")


@pytest.fixture(scope="module")
def known_peaks_model(tmp_path_factory):
    """Weights zero, biases peaked: keypoint k at input pixel (k % 48, k % 64), with SimCC maxima 0.9 / 0.7."""
    torch.manual_seed(0)
    m = TinySimCC()
    with torch.no_grad():
        for head, n in ((m.x, IN_W), (m.y, IN_H)):
            head.weight.zero_()
            bias = torch.full((KP, n * 2), -1.0)
            for k in range(KP):
                bias[k, 2 * (k % n)] = 0.9 if head is m.x else 0.7
            head.bias.copy_(bias.flatten())
    return export(m, tmp_path_factory.mktemp("rtmw_peaks") / "peaks.onnx", dynamic_batch=False)


def test_crop_puts_the_box_centre_at_the_input_centre():
    img = np.zeros((300, 400, 3), np.uint8)
    img[148:153, 248:253] = 255  # a white dot at (250, 150)
    center, scale = box_center_scale((200, 50, 300, 250), (IN_W, IN_H))
    assert tuple(center) == (250, 150)
    assert scale[1] == 250 and scale[0] == pytest.approx(250 * IN_W / IN_H)  # padded 1.25x, widened to 3:4
    x = crop(img, center, scale, (IN_W, IN_H))
    assert x.shape == (3, IN_H, IN_W)
    rgb = x.transpose(1, 2, 0) * STD + MEAN
    y_, x_ = np.unravel_index(rgb.sum(-1).argmax(), (IN_H, IN_W))
    assert abs(x_ - IN_W / 2) <= 1 and abs(y_ - IN_H / 2) <= 1
    assert np.allclose(rgb[0, 0], 0, atol=1e-3)  # black stays black: normalisation inverts exactly
    red = np.zeros((300, 400, 3), np.uint8)
    red[..., 0] = 255
    as_rgb, as_bgr = (crop(red, center, scale, (IN_W, IN_H), bgr=b)[:, IN_H // 2, IN_W // 2] * STD + MEAN for b in (False, True))
    assert np.allclose(as_rgb, [255, 0, 0], atol=1e-3) and np.allclose(as_bgr, [0, 0, 255], atol=1e-3)


def test_simcc_decoding_maps_back_through_the_box(known_peaks_model):
    est = RTMWOnnxPose(model=str(known_peaks_model))
    assert est.fixed_batch == 1 and est.input_wh == (IN_W, IN_H)
    img = decoded(DATA / "basketball1.png").rgb()
    boxes = [(43.8, 79.1, 166.9, 480.0), (430.0, 20.0, 640.0, 480.0)]
    people = est.estimate([img], [boxes])[0]  # fixed batch axis: run one crop at a time
    assert len(people) == 2
    for box, kp in zip(boxes, people, strict=True):
        center, scale = box_center_scale(box, (IN_W, IN_H))
        k = np.arange(KP)
        expected_x = (k % IN_W) / IN_W * scale[0] + center[0] - scale[0] / 2
        expected_y = (k % IN_H) / IN_H * scale[1] + center[1] - scale[1] / 2
        assert np.allclose(kp[:, 0], expected_x, atol=1e-3) and np.allclose(kp[:, 1], expected_y, atol=1e-3)
        assert np.allclose(kp[:, 2], 0.7)  # the smaller of the x and y maxima


def test_batched_equals_one_by_one_and_images_without_persons(random_model):
    est = RTMWOnnxPose(model=str(random_model))
    assert est.fixed_batch is None
    imgs = [decoded(DATA / "astronaut.png").rgb(), decoded(DATA / "coffee.png").rgb(), decoded(DATA / "basketball1.png").rgb()]
    boxes = [[(45.3, 76.6, 325.6, 438.6)], [], [(43.8, 79.1, 166.9, 480.0), (430.0, 20.0, 640.0, 480.0)]]
    together = est.estimate(imgs, boxes)
    assert [len(p) for p in together] == [1, 0, 2]
    alone = est.estimate([imgs[2]], [boxes[2][1:]])[0][0]
    assert np.allclose(alone, together[2][1], atol=1e-4)
    for kp in (p for people in together for p in people):
        assert kp.shape == (133, 3) and ((kp[:, 2] >= 0) & (kp[:, 2] <= 1)).all()


def test_pose_stage_with_rtmw(random_model, tmp_path):
    stage = Pose(Pose.Params(stage="pose", estimator={"backend": "rtmw", "options": {"model": str(random_model)}}))
    stage.preflight()
    s = decoded(DATA / "astronaut.png")
    s.ann["persons"] = [{"box": [45.3, 76.6, 325.6, 438.6], "score": 0.9}]
    s = run_stage(stage, [s])[0]
    assert s.live and s.ann["persons"][0]["pose_backend"] == "rtmw"
    assert len(s.ann["persons"][0]["keypoints"]) == 133 and "kp_feet" in s.metrics
    with pytest.raises(BackendUnavailable, match="not found"):
        Pose(Pose.Params(stage="pose", estimator={"backend": "rtmw", "options": {"model": str(tmp_path / "missing.onnx")}})).preflight()
