"""Shoe-only product shots cut from a shoe-leg build: the input kind of ShoeModel's Table 3 ("only shoes are shown").

Per sample of a split (shard order, the first ``n``) that holds ``shoe.png`` (the shoe pair as
RGBA at the photo's size, alpha = the shoe mask), the shoe pair is cut out and centred on a
square white canvas whose side is the pair's longer side grown by ``margin`` on each side, at
the photo's scale (no resampling, so the shoe's pixels are the photo's). The PNG keeps the
shoe's alpha (RGB is white where alpha is 0): viewed flat it is a product shot on white, and
``eval shoemodel --shoes`` reads its exact mask from the alpha instead of segmenting it.
``prompts.jsonl`` beside the images holds each sample's caption (``eval shoemodel --prompts``).

The shots come from worn photos, so the shoe is seen from the photo's angle; a separate set of
real product photos is the paper's kind of test set (docs/eval.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from hoiforge.errors import EvalError
from hoiforge.eval.held_out import caption
from hoiforge.eval.runs import prepare_report

WHITE = 255


def product_shot(rgba: np.ndarray, margin: float = 0.25) -> np.ndarray | None:
    """The shoe pixels (alpha >= 128) centred on a white square canvas, RGBA; None when there are none."""
    mask = rgba[..., 3] >= 128
    ys, xs = np.nonzero(mask)
    if not len(xs):
        return None
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    side = int(round(max(x1 - x0, y1 - y0) * (1 + 2 * margin)))
    out = np.full((side, side, 4), WHITE, np.uint8)
    out[..., 3] = 0
    top, left = (side - (y1 - y0)) // 2, (side - (x1 - x0)) // 2
    piece, keep = rgba[y0:y1, x0:x1], mask[y0:y1, x0:x1]
    region = out[top : top + (y1 - y0), left : left + (x1 - x0)]
    region[keep, :3] = piece[keep, :3]
    region[keep, 3] = 255
    return out


def write_product_shots(data: str | Path, dest: str | Path, split: str = "test", n: int | None = None, margin: float = 0.25) -> int:
    """Write ``DEST/<id>.png`` per sample of ``split`` with a shoe, and ``DEST/prompts.jsonl``; returns how many."""
    from hoiforge.eval.scoring import iter_split_samples
    from hoiforge.training.shoemodel.data import ShoeLegSample

    if margin < 0:
        raise EvalError(f"--margin {margin:g}: give a margin of at least 0 (a fraction of the shoe pair's size)")
    root = Path(data).expanduser()
    if not root.is_dir():
        raise EvalError(f"--data {root} does not exist; pass the --out folder of `hoiforge build`")
    out = prepare_report(dest)
    prompts, made = [], 0
    for sid, members in iter_split_samples(root, split, n):
        if "shoe.png" not in members:
            continue
        shot = product_shot(ShoeLegSample(sid, members).shoe_rgba(), margin)
        if shot is None:
            continue
        Image.fromarray(shot, "RGBA").save(out / f"{sid}.png")
        text = caption(members)
        if text:
            prompts.append({"file": f"{sid}.png", "caption": text})
        made += 1
    if not made:
        raise EvalError(f"{root}: no {split} sample holds a shoe.png with shoe pixels (the `shoes` stage writes it)")
    if prompts:
        (out / "prompts.jsonl").write_text("".join(json.dumps(p) + "\n" for p in prompts), encoding="utf-8")
    return made
