"""The sample contract: what a shard member is called and what the annotation document holds.

WebDataset convention: the key is everything before the first dot of a member name, the
extension everything after it. Every consumer (trainers, eval, report, viewer, validate) reads
samples through the names defined here.
"""

from __future__ import annotations

import hashlib
import re

SCHEMA = "hoiforge/sample/v1"

ID_LENGTH = 20  # hex chars of sha256(source bytes): 80 bits, collision-free at billions of images

IMAGE_EXTENSIONS = ("jpg", "png", "webp")
ANNOTATION_EXT = "json"
CAPTION_EXT = "txt"

# Optional members. A stage declares the ones it writes (Stage.writes); parse_recipe checks that
# every member or annotation a stage reads has a writer earlier in the recipe.
KNOWN_MEMBERS = {
    "txt": "caption (utf-8)",
    "pose.png": "rendered whole-body skeleton at image size",
    "mask.png": "product instance-id map (0 = background, i = products[i-1])",
    "views.jpg": "the products' close views, a fixed-size strip of square tiles (tile i = products[i], views.count of them)",
    "edge.png": "canny edges inside product masks",
    "shoe.png": "RGBA shoe-only image",
    "leg.json": "12 leg+foot keypoints (shoe-leg)",
    "leg.png": "rendering of only the 12 leg+foot keypoints (X_p, the SW condition)",
    "shoecrop.png": "RGBA 256x256 crop of shoe.png around both shoes (LpS phase 1 input)",
    "wear.png": "wearable-area labels 0/1/2 (shoe-leg)",
    "shoemask.png": "shoe instance-id map (0 = background, i = shoes[i-1])",
    "wearconf.png": "per-pixel confidence of segmenter wear labels (max softmax x 255)",
    "latent.npy": "precomputed VAE latent",
    "text.npy": "precomputed text encoding",
    "dino.npy": "precomputed DINOv2 features",
}

# Keys of the annotation document (<id>.json) that stages write and read.
KNOWN_ANNOTATIONS = {
    "image": "width, height and format of the stored image",
    "persons": "person boxes and scores",
    "keypoints": "133 COCO-WholeBody keypoints per person (persons[i].keypoints)",
    "products": "product boxes, labels, scores and mask indices",
    "text_regions": "OCR regions with the removal decision",
    "cleanup": "what text cleanup removed",
    "quality": "technical quality score (BRISQUE)",
    "aesthetic": "aesthetic score",
    "caption": "the caption document",
    "shoes": "shoe masks per foot",
    "shoe_crop": "the shoe-pair crop (shoecrop.png): its box, size, wearer and foot keypoints in crop pixels",
    "wear": "wearable-area label provenance and counts",
    "views": "size and count of the close-view tiles",
    "precompute": "models and settings of the precomputed members",
    "placeholders": "members this sample had nothing for, stored as empty placeholders (datasets/placeholders.py)",
}


def is_member(name: str) -> bool:
    """True for a shard member name (``pose.png``), False for an annotation key (``persons``)."""
    return name in KNOWN_MEMBERS


SPLITS = ("train", "test")

# Shard names: <split>-<6 digits>.tar
SHARD_NAME = re.compile(r"^(train|test)-(\d{6})\.tar$")
# A shard's checksum in index.json, by key: hashlib algorithm. The writer records sha256; outputs
# written before it record md5sum (the wids name), which validate still checks.
CHECKSUM_KEYS = {"sha256": "sha256", "md5sum": "md5"}
_MEMBER_NAME = re.compile(rf"^([0-9a-f]{{{ID_LENGTH}}})\.([a-z0-9][a-z0-9._-]*)$")


def sample_id(data: bytes) -> str:
    """Stable id of an image: a prefix of sha256 of its source bytes (exact duplicates collapse)."""
    return hashlib.sha256(data).hexdigest()[:ID_LENGTH]


def split_of(sample_id_: str, test_fraction: float) -> str:
    """Train/test split as a function of the id alone, so reruns and resumes never move a sample.

    The id is a sha256 prefix, so its leading 32 bits are uniform: comparing them to the
    fraction holds out that fraction of the set.
    """
    if test_fraction <= 0:
        return "train"
    return "test" if int(sample_id_[:8], 16) < test_fraction * 2**32 else "train"


def shard_name(split: str, seq: int) -> str:
    return f"{split}-{seq:06d}.tar"


def split_member_name(name: str) -> tuple[str, str]:
    """(key, extension) of a shard member name; ValueError if it does not follow the contract."""
    m = _MEMBER_NAME.match(name)
    if not m:
        raise ValueError(f"member name {name!r} is not '<{ID_LENGTH}-hex-id>.<ext>'")
    return m.group(1), m.group(2)
