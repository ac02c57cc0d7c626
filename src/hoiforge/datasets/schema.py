"""One json schema per build: the annotation document's keys and types, declared by the stages.

Loaders infer columns from the first samples they see (Hugging Face ``datasets``' webdataset
builder reads five, Ray Data one block): a key absent from those samples, an empty list, or a null
where a later sample has a string makes them fail or silently drop the key. So every json of a
build has the same keys with the same types:

- each stage declares the annotation keys it writes as a **template** of typed empties
  (``Stage.annotations``): ``""`` a string, ``0`` an integer, ``0.0`` a float, ``False`` a bool,
  ``{key: template}`` a struct, ``[template]`` a list of that template. Stages that add fields to
  another stage's key (pose adds ``keypoints`` to each person) declare just those fields: the
  build's template is the union of every stage's (``build_template``);
- the writer conforms each json to the build's template (``conform``): a missing key gets its
  typed empty, null becomes ``""`` / ``[]`` / an empty struct, an integer where a float is
  declared becomes a float. Numbers and bools may stay null (a nullable typed column: "not
  measured", e.g. a segmenter without mask scores), never strings, lists or structs;
- ``hoiforge validate`` compares the shape (``shape_of``) of every json of every split and fails a
  build whose shapes differ; the dataset card (datasets/card.py) types its columns from the template.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

NUMBERS = ("int", "float", "bool")

# What the pipeline itself writes (decode's document, the read step's source, the writer's split
# and placeholders); provenance under "stages" is added per stage by ``build_template``.
BASE = {
    "schema": "",
    "id": "",
    "split": "",
    "source": {"uri": "", "member": "", "path": "", "sha256": "", "size": 0},
    "image": {
        "width": 0,
        "height": 0,
        "ext": "",
        "format": "",
        "source_format": "",
        "source_mode": "",
        "reencoded": "",  # why the stored bytes differ from the input's; "" when they are its bytes
        "phash": "",
    },
    "placeholders": [""],
}
BACKEND = {"backend": "", "version": "", "options": ""}


def member_template(name: str) -> dict[str, Any] | None:
    """The template of a json member other than the annotation document (``leg.json``)."""
    from hoiforge.datasets import leg

    return {"leg.json": leg.TEMPLATE}.get(name)


def kind(template: Any) -> str:
    if isinstance(template, dict):
        return "struct"
    if isinstance(template, list):
        return "list"
    if isinstance(template, bool):
        return "bool"
    if isinstance(template, int):
        return "int"
    if isinstance(template, float):
        return "float"
    if isinstance(template, str):
        return "string"
    if template is None:
        return "null"
    raise TypeError(f"not a json value: {type(template).__name__}")


def merge(a: Any, b: Any, path: str = "") -> Any:
    """The union of two templates (struct keys of both); ValueError where they declare other types."""
    if kind(a) != kind(b):
        raise ValueError(f"annotation {path or '.'} declared as {kind(a)} and as {kind(b)}")
    if isinstance(a, dict):
        out = dict(a)
        for k, v in b.items():
            out[k] = merge(out[k], v, f"{path}.{k}") if k in out else v
        return out
    if isinstance(a, list):
        return [merge(a[0], b[0], f"{path}[]")]
    return a


def build_template(stages: Iterable[Any]) -> dict[str, Any]:
    """The json template of a build: BASE, each stage's provenance and declared annotations."""
    template: dict[str, Any] = dict(BASE)
    provenance: dict[str, Any] = {}
    for stage in stages:
        slots = {name: dict(BACKEND) for name in stage.slot_configs()}
        provenance[stage.name] = {"backend": "", "version": "", **({"backends": slots} if slots else {})}
        template = merge(template, stage.annotation_schema())
    template["stages"] = provenance
    return template


def conform(value: Any, template: Any) -> Any:
    """``value`` with every key of ``template`` present and typed (see the module doc). Keys the
    template does not declare are kept as they are: validate reports them, nothing is lost."""
    if isinstance(template, dict):
        src = value if isinstance(value, dict) else {}
        out = {k: conform(src.get(k), t) for k, t in template.items()}
        out.update((k, v) for k, v in src.items() if k not in template)
        return out
    if isinstance(template, list):
        return [conform(v, template[0]) for v in value] if isinstance(value, list) else []
    if isinstance(template, str):
        return "" if value is None else value
    if isinstance(template, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def declares(template: Any, path: str) -> bool:
    """Whether ``template`` declares ``path`` (a ``shape_of`` path, ``products[].label``)."""
    t = template
    for part in path.split(".") if path else ():
        name = part.rstrip("[]")
        if not isinstance(t, dict) or name not in t:
            return False
        t = t[name]
        for _ in range(part.count("[]")):
            if not isinstance(t, list):
                return False
            t = t[0]
    return True


def shape_of(doc: Any, path: str = "") -> Iterator[tuple[str, str, frozenset[str] | None]]:
    """(path, kind, keys of a struct) of every value in ``doc``; list elements are ``path[]``."""
    k = kind(doc)
    yield path, k, frozenset(doc) if k == "struct" else None
    if k == "struct":
        for key, value in doc.items():
            yield from shape_of(value, f"{path}.{key}" if path else key)
    elif k == "list":
        for value in doc:
            yield from shape_of(value, f"{path}[]")


class ShapeCheck:
    """Shapes of many json documents, compared: ``add`` each, then ``problems()``."""

    def __init__(self) -> None:
        self.kinds: dict[str, dict[str, str]] = {}  # path -> kind -> first sample with it
        self.keys: dict[str, dict[frozenset[str], str]] = {}  # struct path -> key set -> first sample

    def add(self, doc: Any, where: str) -> None:
        for path, k, keys in shape_of(doc):
            self.kinds.setdefault(path, {}).setdefault(k, where)
            if keys is not None:
                self.keys.setdefault(path, {}).setdefault(keys, where)

    def problems(self) -> list[str]:
        lines = []
        for path, kinds in sorted(self.kinds.items()):
            typed = set(kinds) - {"null"}
            nullable_number = typed and typed <= set(NUMBERS) and len(typed) == 1
            if len(typed) > 1 or ("null" in kinds and typed and not nullable_number):
                seen = ", ".join(f"{k} in {where}" for k, where in sorted(kinds.items()))
                lines.append(f"json {path or '(document)'}: types differ: {seen}")
        for path, sets in sorted(self.keys.items()):
            if len(sets) > 1:
                union = frozenset().union(*sets)
                for keys, where in sets.items():
                    if keys != union:
                        lines.append(f"json {path or '(document)'} of {where} lacks {sorted(union - keys)}")
        return lines
