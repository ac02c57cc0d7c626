"""``hoiforge validate``: check an output directory against the sample contract and invariants."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections import Counter, defaultdict
from pathlib import Path

import pyarrow.parquet as pq
from PIL import Image

from hoiforge.datasets.bounds import SampleRejected, check_sizes, load_json
from hoiforge.datasets.contract import CHECKSUM_KEYS, IMAGE_EXTENSIONS, SCHEMA, SHARD_NAME, split_member_name
from hoiforge.datasets.layout import OutLayout
from hoiforge.datasets.masks import MaskError, decode_rle, product_rle
from hoiforge.datasets.schema import ShapeCheck, declares, member_template

SIZED_MEMBERS = ("pose.png", "mask.png", "edge.png", "wear.png", "shoe.png", "shoemask.png", "wearconf.png")


def _check_sample(url: str, key: str, members: dict[str, bytes], problems: list[str]) -> None:
    where = f"{url}:{key}"
    images = [e for e in members if e in IMAGE_EXTENSIONS]
    if len(images) != 1:
        problems.append(f"{where}: needs exactly one image member ({'/'.join(IMAGE_EXTENSIONS)}), has {images}")
        return
    if "json" not in members:
        problems.append(f"{where}: no .json annotation")
        return
    try:
        check_sizes(members)  # what the trainer's loader would skip (bounds.py)
        ann = load_json(members["json"])
    except SampleRejected as e:
        problems.append(f"{where}: {e}")
        return
    if ann.get("schema") != SCHEMA:
        problems.append(f"{where}: schema {ann.get('schema')!r} != {SCHEMA!r}")
    if ann.get("id") != key:
        problems.append(f"{where}: json id {ann.get('id')!r} != member key")
    try:
        with Image.open(io.BytesIO(members[images[0]])) as img:
            size = img.size
            img.verify()
    except Exception as e:  # noqa: BLE001
        problems.append(f"{where}: image does not decode: {e}")
        return
    declared = (ann.get("image", {}).get("width"), ann.get("image", {}).get("height"))
    if size != declared:
        problems.append(f"{where}: image is {size}, json says {declared}")
    for ext in SIZED_MEMBERS:
        if ext in members:
            with Image.open(io.BytesIO(members[ext])) as m:
                if m.size != size:
                    problems.append(f"{where}: {ext} is {m.size}, image is {size}")
    for i, product in enumerate(ann.get("products") or []):
        if (rle := product_rle(product)) is not None:
            try:
                decode_rle(rle, size[1], size[0])  # sized to the image before pycocotools allocates
            except MaskError as e:
                problems.append(f"{where}: products[{i}]: {e}")
    if "txt" in members and ann.get("caption", {}).get("text") not in (None, members["txt"].decode("utf-8", "replace")):
        problems.append(f"{where}: .txt differs from json caption")


def validate(out: str | Path, check_images: bool = True) -> list[str]:
    """Every violation found, as one line each; an empty list means the output is valid."""
    layout = OutLayout(out)
    problems: list[str] = []
    for required in (layout.index, layout.manifest, layout.stats):
        if not required.exists():
            return [f"{required}: missing (was the build finished? rerun the same build command)"]
    index = json.loads(layout.index.read_text())
    if index.get("__kind__") != "wids-shard-index-v1":
        problems.append(f"{layout.index}: __kind__ is {index.get('__kind__')!r}")
    manifest = pq.read_table(layout.manifest, columns=["key", "status", "id", "shard"]).to_pylist()
    dup_keys = [k for k, n in Counter(r["key"] for r in manifest).items() if n > 1]
    if dup_keys:
        problems.append(f"manifest: {len(dup_keys)} inputs listed more than once, e.g. {dup_keys[0]}")
    if layout.listing.exists():
        listed = set(pq.read_table(layout.listing, columns=["key"]).column("key").to_pylist())
        missing = listed - {r["key"] for r in manifest}
        if missing:
            problems.append(f"manifest: {len(missing)} listed inputs have no row, e.g. {sorted(missing)[0]}")
    bad_status = {r["status"] for r in manifest} - {"kept", "dropped", "failed"}
    if bad_status:
        problems.append(f"manifest: unknown status {sorted(bad_status)}")
    expected: dict[str, set[str]] = defaultdict(set)
    for r in manifest:
        if r["status"] == "kept":
            expected[r["shard"]].add(r["id"])

    # Under image_format: source each sample keeps its own image format; every other member, and
    # the image member under jpg/png/webp, must be the same for every kept sample.
    mixed_images = _image_format(layout) == "source"
    member_sets: dict[frozenset, str] = {}
    shapes: dict[str, ShapeCheck] = defaultdict(ShapeCheck)  # json member -> the shapes of all its documents
    indexed = {s["url"] for s in index.get("shardlist", [])}
    if indexed != set(expected):
        problems.append(f"index.json shards {sorted(indexed ^ set(expected))[:3]} disagree with the manifest")
    for entry in index.get("shardlist", []):
        url = entry["url"]
        path = layout.root / url
        if not SHARD_NAME.match(Path(url).name):
            problems.append(f"{url}: shard name does not match <split>-NNNNNN.tar")
        if not path.exists():
            problems.append(f"{url}: listed in index.json but missing")
            continue
        data = path.read_bytes()
        if len(data) != entry.get("filesize"):
            problems.append(f"{url}: size {len(data)} != index {entry.get('filesize')}")
        for key, algorithm in CHECKSUM_KEYS.items():
            if entry.get(key) and hashlib.new(algorithm, data).hexdigest() != entry[key]:
                problems.append(f"{url}: {algorithm} differs from index")
        samples: dict[str, dict[str, bytes]] = defaultdict(dict)
        order: list[str] = []
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            for info in tar:
                try:
                    key, ext = split_member_name(info.name)
                except ValueError as e:
                    problems.append(f"{url}: {e}")
                    continue
                if not info.isreg():  # extractfile would follow a link (KeyError) or return None
                    kind = (
                        f"a hard link (to {info.linkname[:200]!r})"
                        if info.islnk()
                        else f"a symlink (to {info.linkname[:200]!r})"
                        if info.issym()
                        else "not a file"
                    )
                    problems.append(f"{url}: {info.name} is {kind}, not a regular file")
                    continue
                if not order or order[-1] != key:
                    if key in samples:
                        problems.append(f"{url}: members of {key} are not contiguous")
                    order.append(key)
                samples[key][ext] = tar.extractfile(info).read()
        if len(samples) != entry.get("nsamples"):
            problems.append(f"{url}: {len(samples)} samples, index says {entry.get('nsamples')}")
        if set(samples) != expected.get(url, set()):
            problems.append(f"{url}: samples differ from the manifest's kept rows for this shard")
        for key, members in samples.items():
            names = frozenset(e for e in members if not (mixed_images and e in IMAGE_EXTENSIONS))
            member_sets.setdefault(names, f"{url}:{key}")
            _add_shapes(shapes, members, f"{url}:{key}")
            if check_images:
                _check_sample(url, key, members, problems)
    problems += _check_uniform(member_sets, mixed_images)
    problems += _check_shapes(shapes, _declared_template(layout))
    return problems


def _declared_template(layout: OutLayout) -> dict | None:
    from hoiforge.pipeline.manifest import declared_shape

    return declared_shape(layout)[1]


def _add_shapes(shapes: dict[str, ShapeCheck], members: dict[str, bytes], where: str) -> None:
    for ext, data in members.items():
        if ext == "json" or ext.endswith(".json"):
            try:
                doc = load_json(data)  # bounded, finite numbers only: a received OUT is untrusted
            except SampleRejected:
                continue  # _check_sample says so
            shapes[ext].add(doc, where)


def _check_shapes(shapes: dict[str, ShapeCheck], template: dict | None, limit: int = 12) -> list[str]:
    """Every json member of every sample of every split has one schema (datasets/schema.py): a
    loader types its columns from the first samples it reads and fails or drops keys on the others.
    With the recipe's template: no key it does not declare (the dataset card would leave it out)."""
    lines = [f"{ext}: {line}" for ext, check in sorted(shapes.items()) for line in check.problems()]
    if template is not None:
        for ext, check in sorted(shapes.items()):
            declared = template if ext == "json" else member_template(ext)
            if declared is None:
                continue
            reported: list[str] = []
            for path in sorted(check.kinds):
                if declares(declared, path) or any(path.startswith((r + ".", r + "[]")) for r in reported):
                    continue
                reported.append(path)
                where = next(iter(check.kinds[path].values()))
                lines.append(f"{ext}: json {path} (e.g. {where}): not declared by any stage of the recipe (a typed loader leaves it out)")
    if not lines:
        return []
    head = f"json schemas differ across the build ({len(lines)} differences; every sample needs the same keys and types)"
    return [head, *lines[:limit]] + ([f"... and {len(lines) - limit} more"] if len(lines) > limit else [])


def _image_format(layout: OutLayout) -> str:
    """The build's output.image_format ("source" for outputs built before it existed)."""
    if not layout.recipe.exists():
        return "source"
    return json.loads(layout.recipe.read_text()).get("output", {}).get("image_format", "source")


def _check_uniform(member_sets: dict[frozenset, str], mixed_images: bool) -> list[str]:
    """Every kept sample names the same members (Hugging Face's webdataset builder refuses others)."""
    if len(member_sets) <= 1:
        return []
    union = frozenset().union(*member_sets)
    lines = []
    for names, where in member_sets.items():
        if names != union:
            lines.append(f"{where}: members differ from other samples of the build: lacks {sorted(union - names)}")
    note = "" if mixed_images else " (image_format: source would allow mixed image formats, nothing else)"
    return [f"member sets are not uniform across the build: {len(member_sets)} different sets{note}", *lines[:5]]
