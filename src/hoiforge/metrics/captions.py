"""The captions file of ``hoiforge eval metrics --captions``: JSON Lines, one generated image per line.

    {"file": "000123.png", "caption": "a woman holding a red cup in a kitchen"}

``file`` is the image's path relative to the ``--fake`` folder (as listed there, with ``/``);
``caption`` the prompt it was generated from. Every readable fake image needs a caption, and
every caption an image: a mismatch is an error naming the first few, not a silent subset.
"""

from __future__ import annotations

import json
from pathlib import Path

from hoiforge.errors import EvalError, InputError


def read_captions(path: str | Path) -> dict[str, str]:
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"{path}: no such captions file")
    captions: dict[str, str] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f'{path}:{lineno}: not JSON ({e.msg}); each line is {{"file": NAME, "caption": TEXT}}') from None
        if not isinstance(doc, dict) or not isinstance(doc.get("file"), str) or not isinstance(doc.get("caption"), str):
            raise InputError(f'{path}:{lineno}: each line is {{"file": NAME, "caption": TEXT}} with two strings')
        name = Path(doc["file"]).as_posix()
        if name in captions:
            raise InputError(f"{path}:{lineno}: a second caption for {name}")
        captions[name] = doc["caption"]
    if not captions:
        raise InputError(f"{path}: no captions in it")
    return captions


def match_captions(captions: dict[str, str], names: list[str], source: str) -> list[str]:
    """The caption of each image name, in order; EvalError if any image or caption has no partner."""
    missing = [n for n in names if n not in captions]
    unused = sorted(set(captions) - set(names))
    if missing or unused:
        parts = []
        if missing:
            parts.append(f"{len(missing)} image(s) in {source} have no caption (e.g. {', '.join(missing[:3])})")
        if unused:
            parts.append(f"{len(unused)} caption(s) name no readable image there (e.g. {', '.join(unused[:3])})")
        raise EvalError("; ".join(parts) + "; captions.jsonl 'file' is the path relative to --fake")
    return [captions[n] for n in names]
