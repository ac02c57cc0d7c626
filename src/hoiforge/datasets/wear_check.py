"""Check human wearable-area labels against their images before a build (``hoiforge wear check``).

The same checks as the ``wear_labels`` stage (size equals the image, values only 0/1/2, known
colours and categories), run over a folder of images without Ray, so annotators get every
problem in one listing instead of failed rows after a build.
"""

from __future__ import annotations

from pathlib import Path

from hoiforge.datasets import wearable as W

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}


def upright_size(path: Path) -> tuple[int, int]:
    """(width, height) as the decode stage will see the image: EXIF rotation applied."""
    from PIL import Image

    with Image.open(path) as img:
        w, h = img.size
        rotated = img.getexif().get(0x0112, 1) in (5, 6, 7, 8)  # orientations that swap the axes
    return (h, w) if rotated else (w, h)


def check_folder(images: Path, labels_dir: Path | None, coco_json: Path | None, colours: dict[str, int] | None = None) -> dict[str, list]:
    """{"ok": [key], "missing": [key], "bad": [(key, reason)], "orphans": [key]}: an image's key is its path
    relative to ``images`` without extension, matched to labels as the wear_labels stage does."""
    from hoiforge.datasets.label_match import label_key

    sources = []
    if labels_dir:
        sources.append(W.LabelFolder(labels_dir, colours))
    if coco_json:
        sources.append(W.CocoLabels(coco_json))
    result: dict[str, list] = {"ok": [], "missing": [], "bad": [], "orphans": []}
    keys = set()
    for path in sorted(
        p for p in images.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and (labels_dir is None or labels_dir not in p.parents)
    ):
        key = label_key(path.relative_to(images).as_posix())
        keys.add(key)
        w, h = upright_size(path)
        try:
            found = next((f for f in (s.labels_for(key, w, h) for s in sources) if f is not None), None)
        except W.LabelError as e:
            result["bad"].append((key, str(e)))
            continue
        result["ok" if found is not None else "missing"].append(key)
    labelled = set()
    for s in sources:
        labelled |= s.index.keys()
    result["orphans"] = sorted(labelled - keys)
    return result
