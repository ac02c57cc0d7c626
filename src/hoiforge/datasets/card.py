"""The dataset card (``OUT/README.md``): what ``datasets.load_dataset(OUT)`` and the Hub read.

A Hugging Face dataset card is a README whose YAML front matter says how to load the folder:

- ``configs``: one ``default`` config whose splits are the shard globs. Without it the builder
  takes every data file it recognises, and ``index.train.json`` / ``index.test.json`` (the wids
  indexes) became the splits, with columns ``__kind__, shardlist, ...``;
- ``dataset_info.features``: the columns, typed from the build's declarations (an ``image``
  per image member, ``string`` for ``txt``, the json struct from the stages' templates,
  datasets/schema.py) instead of inferred from the first five samples of the first shard.

The prose below it is for people: the recipe, its stages, the counts, how it was built, and a
licence line the publisher fills in. ``write_card`` rewrites it at every finalize.
"""

from __future__ import annotations

from typing import Any

import yaml

from hoiforge.datasets.contract import IMAGE_EXTENSIONS, KNOWN_MEMBERS, SPLITS
from hoiforge.datasets.schema import kind, member_template

CARD_NAME = "README.md"
DTYPES = {"string": "string", "int": "int64", "float": "float64", "bool": "bool", "null": "null"}
IMAGE_MEMBERS = (".png", ".jpg", ".webp")


def _inner(template: Any) -> Any:
    k = kind(template)
    if k == "struct":
        return [field(name, t) for name, t in template.items()]
    if k == "list":
        return {"list": _inner(template[0])}
    return DTYPES[k]


def field(name: str, template: Any) -> dict[str, Any]:
    """One column or struct field in the card's YAML feature form (``Features._to_yaml_list``)."""
    k = kind(template)
    if k == "struct":
        return {"name": name, "struct": _inner(template)}
    if k == "list":
        return {"name": name, "list": _inner(template[0])}
    return {"name": name, "dtype": DTYPES[k]}


def features(image_exts: tuple[str, ...], members: tuple[str, ...], template: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The card's columns, or None when a member has no declared type (``.npy`` arrays: their
    shapes are the models'; the builder then infers the columns from the first samples)."""
    columns = [{"name": "__key__", "dtype": "string"}, {"name": "__url__", "dtype": "string"}]
    columns += [{"name": ext, "dtype": "image"} for ext in image_exts]
    columns.append(field("json", template))
    for name in members:
        if name.endswith(IMAGE_MEMBERS):
            columns.append({"name": name, "dtype": "image"})
        elif name == "txt" or name.endswith(".txt"):
            columns.append({"name": name, "dtype": "string"})
        elif name.endswith(".json") and member_template(name) is not None:
            columns.append(field(name, member_template(name)))
        else:
            return None
    return columns


def front_matter(splits: list[str], columns: list[dict[str, Any]] | None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "configs": [
            {
                "config_name": "default",
                "default": True,
                "data_files": [{"split": split, "path": f"shards/{split}-*.tar"} for split in splits],
            }
        ],
        "license": "other",  # the publisher's to set: see "Licence" below
        "tags": ["webdataset", "hoiforge"],
    }
    if columns is not None:
        doc["dataset_info"] = {"config_name": "default", "features": columns}
    return doc


def render(
    recipe: dict[str, Any],
    stats: dict[str, Any],
    image_format: str,
    members: tuple[str, ...],
    template: dict[str, Any] | None,
) -> str:
    """The whole card: front matter, then the description."""
    counts = stats.get("splits", {})
    splits = [s for s in SPLITS if counts.get(s)]
    image_exts = IMAGE_EXTENSIONS if image_format == "source" else (image_format,)
    columns = None if template is None else features(image_exts, members, template)
    head = yaml.safe_dump(front_matter(splits, columns), sort_keys=False, allow_unicode=True)
    name = recipe.get("name", "hoiforge")
    stages = "\n".join(f"{i}. `{s.get('stage')}`" + _backends(s) for i, s in enumerate(recipe.get("stages", []), start=1))
    split_line = ", ".join(f"{counts[s]} {s}" for s in splits) or "none"
    image_note = (
        f"`{image_format}`, RGB" if image_format != "source" else "each input's own format (`jpg`, `png` or `webp`; grey stays grey)"
    )
    member_lines = "\n".join(f"| `{m}` | {KNOWN_MEMBERS.get(m, '')} |" for m in members)
    return f"""---
{head}---

# {name}

{recipe.get("description") or "An image dataset built by hoiforge."}

Built by hoiforge {stats.get("hoiforge_version", "")} with the recipe `{name}`:
{stats.get("inputs", 0)} inputs, {stats.get("kept", 0)} kept ({split_line}), {stats.get("dropped", 0)} dropped,
{stats.get("failed", 0)} failed (why: `stats.json`, per input: `manifest.parquet`).

## Licence

FILL IN: the licence of these images and annotations (the sources' terms decide it; `license: other`
in the front matter until then).

## How it was built

The recipe's stages, in order (the exact settings: `_work/recipe.json`):

{stages}

## Layout

WebDataset shards, `shards/{{train,test}}-NNNNNN.tar`; per sample `<id>.<member>`, where the id is a
prefix of the sha256 of the input's bytes. Images: {image_note}.

| member | what |
|---|---|
| {" / ".join(f"`{e}`" for e in image_exts)} | the image |
| `json` | the annotation document (one schema for every sample; absent values are typed empties) |
{member_lines}

Every sample carries every member: one a stage had nothing for is an empty placeholder, listed in
the json's `placeholders`. `shoe.png` and `shoecrop.png` keep their alpha on purpose (the shoe
cut-out); masks are single-channel PNGs.

## Loading

```python
import datasets

ds = datasets.load_dataset("path/to/this/folder")  # both splits, typed columns
```

`index.json`, `index.train.json` and `index.test.json` are wids shard indexes
(`wids.ShardListDataset("index.train.json")`).
"""


def _backends(stage: dict[str, Any]) -> str:
    chosen = []
    for key, value in stage.items():
        if isinstance(value, dict) and "backend" in value:
            chosen.append(f"{key}: {value['backend']}")
        elif key in ("detector", "segmenter", "estimator", "captioner", "scorer", "ocr", "inpaint") and isinstance(value, str):
            chosen.append(f"{key}: {value}")
    return f" ({', '.join(chosen)})" if chosen else ""
