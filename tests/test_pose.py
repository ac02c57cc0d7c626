"""pose stage with the embedded mediapipe holistic backend, on the real fixture photos."""

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hoiforge.datasets import keypoints as K
from hoiforge.datasets.render import render_pose
from hoiforge.errors import RecipeError
from hoiforge.pipeline.adapter import run_stage
from hoiforge.pipeline.recipe import parse_recipe
from hoiforge.stages import stage_class
from hoiforge.stages.person import Person
from hoiforge.stages.pose import Pose
from hoiforge.stages.testing import decoded

DATA = Path(__file__).parent / "data"
pytest.importorskip("mediapipe")


@pytest.fixture(scope="module")
def results():
    person = Person(Person.Params(stage="person"))
    pose = Pose(Pose.Params(stage="pose"))
    samples = [decoded(DATA / name, i) for i, name in enumerate(("basketball1.png", "astronaut.png", "coffee.png"))]
    out = run_stage(pose, run_stage(person, samples))
    return dict(zip(("basketball", "astronaut", "coffee"), out, strict=True))


def kp(sample, i=0) -> np.ndarray:
    return np.array(sample.ann["persons"][i]["keypoints"])


def test_registered():
    assert stage_class("pose") is Pose
    assert Pose.writes == ("keypoints", "pose.png", "leg.json", "leg.png")
    assert Pose(Pose.Params(stage="pose")).members == ("pose.png",)
    assert Pose(Pose.Params(stage="pose", leg_json=True, render=False)).members == ("leg.json", "leg.png")


def test_full_body_photo_gets_feet_inside_the_box_below_the_knees(results):
    s = results["basketball"]
    assert s.live
    person = s.ann["persons"][0]
    assert person["pose_backend"] == "mediapipe-holistic"
    pts = kp(s)
    assert pts.shape == (133, 3)
    x0, y0, x1, y1 = person["box"]
    knee_y = max(pts[K.INDEX["left_knee"], 1], pts[K.INDEX["right_knee"], 1])
    seen_feet = [i for i in K.FEET if pts[i, 2] > 0.3]
    # Both heels and both big toes; mediapipe has no small toe, so those stay unseen (score 0).
    assert {K.NAMES[i] for i in seen_feet} == {"left_big_toe", "left_heel", "right_big_toe", "right_heel"}
    for i in seen_feet:
        x, y, _ = pts[i]
        assert x0 <= x <= x1 and y0 <= y <= y1, K.NAMES[i]
        assert y > knee_y, K.NAMES[i]
    assert pts[K.INDEX["left_small_toe"]].tolist() == [0, 0, 0]
    assert s.metrics["kp_feet"] == 4 and s.metrics["kp_body"] >= 15


def test_hand_and_face_points_sit_where_the_body_says(results):
    pts = kp(results["basketball"])
    # A detected hand's root is the wrist the pose model found.
    hands = [(h, w) for h, w in ((K.LEFT_HAND, "left_wrist"), (K.RIGHT_HAND, "right_wrist")) if pts[h[0], 2] > 0]
    assert hands
    for hand, wrist in hands:
        assert np.hypot(*(pts[hand[0], :2] - pts[K.INDEX[wrist], :2])) < 15
    face = np.array(results["astronaut"].ann["persons"][0]["keypoints"])[list(K.FACE)]
    body = kp(results["astronaut"])
    assert (face[:, 2] > 0.3).all()
    # iBUG order through the mesh table: jaw runs from the subject's right (image left) to left,
    # the right eye (36-41) surrounds the pose's right eye, the chin (8) is below the nose (30).
    assert face[0, 0] < face[8, 0] < face[16, 0]
    assert np.hypot(*(face[36:42, :2].mean(0) - body[K.INDEX["right_eye"], :2])) < 10
    assert np.hypot(*(face[42:48, :2].mean(0) - body[K.INDEX["left_eye"], :2])) < 10
    assert face[8, 1] > face[30, 1] > face[27, 1]


def test_upper_body_photo_invents_no_legs(results):
    pts = kp(results["astronaut"])
    h, w = results["astronaut"].rgb().shape[:2]
    seen = pts[pts[:, 2] > 0]
    assert ((seen[:, 0] >= 0) & (seen[:, 0] < w) & (seen[:, 1] >= 0) & (seen[:, 1] < h)).all()
    assert all(pts[i, 2] == 0 for i in K.FEET)  # the feet are out of frame
    assert results["astronaut"].metrics["kp_feet"] == 0


def test_pose_png_is_the_rendered_skeleton(results):
    s = results["basketball"]
    img = np.asarray(Image.open(io.BytesIO(s.members["pose.png"])))
    assert img.shape == (480, 640, 3)
    assert np.array_equal(img, render_pose([kp(s)], 480, 640))
    # Drawn where the person is, black elsewhere (the second, back-facing man has no box).
    x0, y0, x1, y1 = (int(v) for v in s.ann["persons"][0]["box"])
    inside = img[y0:y1, x0:x1].any(-1).sum()
    assert inside > 1000 and img.any(-1).sum() - inside < 0.02 * inside


def test_no_person_photo_dropped_with_reason_and_skipped(results):
    s = results["coffee"]
    assert s.status == "dropped" and s.stage == "person"
    assert "0 persons" in s.reason
    assert "pose.png" not in s.members or s.members["pose.png"] is None
    assert "pose" not in s.ann.get("stages", {})


def test_pose_without_person_boxes_is_a_recipe_error_naming_the_producer():
    with pytest.raises(RecipeError, match=r"pose needs persons \(written by: person\); put a person stage before it"):
        parse_recipe({"name": "t", "stages": [{"stage": "decode"}, {"stage": "pose"}]})


def test_unknown_backend_is_a_recipe_error_listing_the_choices():
    with pytest.raises(RecipeError, match=r"estimator: unknown backend 'nope'; choose one of: mediapipe, vitpose, rtmw"):
        parse_recipe({"name": "t", "stages": [{"stage": "decode"}, {"stage": "person"}, {"stage": "pose", "estimator": "nope"}]})
