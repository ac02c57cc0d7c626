"""One real small build for the report and viewer tests, made once per test session.

Inputs chosen so every manifest status appears: two photos with people (kept, with pose),
two without (dropped at person), a 200 px copy of a photo (dropped at resolution) and a
zero-byte file (failed). The recipe is the demo's plus the embedded pose stage, so kept
samples carry pose.png and edge.png members and m.kp_* metrics.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from PIL import Image

DATA = Path(__file__).parent / "data"

RECIPE = """
name: report-test
output: {shard_max_count: 1000, shard_max_bytes: 1000000000, test_size: 0.0}
stages:
  - stage: decode
  - stage: resolution
    min_short_side: 256
  - stage: person
    detector: mediapipe
    min_score: 0.5
    min_persons: 1
    max_persons: 5
  - stage: pose
    estimator: mediapipe
    min_score: 0.3
  - stage: edges
    low: 75
    high: 100
    region: image
"""

_built: dict[str, Path] = {}


def small_build(root: Path) -> Path:
    """Build (once per session) and return the output directory."""
    if "out" in _built:
        return _built["out"]
    from hoiforge.pipeline.recipe import load_recipe
    from hoiforge.pipeline.runner import build

    photos = root / "photos"
    photos.mkdir(parents=True)
    for name in ("astronaut.png", "basketball1.png", "coffee.png", "scenetext01.jpg"):
        shutil.copy(DATA / name, photos / name)
    Image.open(DATA / "astronaut.png").convert("RGB").resize((200, 200)).save(photos / "small.jpg", quality=90)
    (photos / "zero.jpg").write_bytes(b"")
    recipe_path = root / "report-test.yaml"
    recipe_path.write_text(RECIPE)
    out = root / "out"
    build([str(photos)], out, load_recipe(str(recipe_path)), progress=False)
    _built["out"] = out
    return out
