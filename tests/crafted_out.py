"""An OUT as a hostile sender would craft it, for the viewer tests: markup in every text field,
a manifest row pointing at /etc/passwd (with its true sha256), shard members of types a browser
would run, and a source image far above the build's pixel limit."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from tests.conftest import DATA

SCRIPT_REASON = "<img src=x onerror=\"window.__pwned='reason'\">"
SCRIPT_STATUS = 'dropped"><img src=x onerror="window.__pwned=\'status\'">'
SCRIPT_STAGE = "<script>window.__pwned='stage'</script>"
HTML_MEMBER = b"<html><body><script>window.__pwned='member'</script></body></html>"
SECRET = Path("/etc/passwd")
KEPT_ID = "0123456789abcdef0123"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _tar(path: Path, members: dict[str, bytes]) -> dict:
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    data = path.read_bytes()
    return {"url": f"shards/{path.name}", "nsamples": 1, "filesize": len(data), "md5sum": hashlib.md5(data).hexdigest()}


def crafted_out(root: Path) -> tuple[Path, dict[str, int]]:
    """Write the OUT; returns it and {what: manifest index} of its rows."""
    out = root / "crafted"
    (out / "shards").mkdir(parents=True)
    (out / "_work").mkdir()
    sources = root / "sources"
    sources.mkdir()
    image = (DATA / "coffee.png").read_bytes()
    with Image.open(io.BytesIO(image)) as img:
        width, height = img.size
    annotation = {"schema": "hoiforge/sample/v1", "id": KEPT_ID, "image": {"width": width, "height": height, "ext": "png"},
                  "persons": [{"box": [10, 10, 100, 100], "score": 0.9}],
                  "products": [{"box": [20, 20, 200, 200], "score": 0.8, "label": SCRIPT_REASON}],
                  "caption": {"text": SCRIPT_STAGE}}  # fmt: skip
    shard = _tar(
        out / "shards" / "train-000000.tar",
        {f"{KEPT_ID}.html": HTML_MEMBER, f"{KEPT_ID}.json": json.dumps(annotation).encode(), f"{KEPT_ID}.png": image,
         f"{KEPT_ID}.svg": b"<svg xmlns='http://www.w3.org/2000/svg' onload=\"window.__pwned='svg'\"/>",
         f"{KEPT_ID}.txt": SCRIPT_STAGE.encode()},
    )  # fmt: skip
    (out / "index.json").write_text(json.dumps({"__kind__": "wids-shard-index-v1", "wids_version": 1, "name": "x", "shardlist": [shard]}))

    # A real PNG of 2000x1500 (a few kB: one colour): cheap to write, 12 MB to decode.
    big = sources / "big.png"
    Image.new("RGB", (2000, 1500), (200, 30, 30)).save(big)
    listed_elsewhere = sources / "listed.png"
    listed_elsewhere.write_bytes((DATA / "astronaut.png").read_bytes())
    secret = SECRET.read_bytes()
    base = {
        "member": None,
        "split": None,
        "shard": None,
        "id": None,
        "bytes": None,
        "m.product_label": None,
        "m.width": None,
        "m.height": None,
    }
    rows = [
        {**base, "key": "kept.png", "index": 0, "uri": str(DATA / "coffee.png"), "status": "kept", "stage": None, "reason": None,
         "id": KEPT_ID, "split": "train", "shard": shard["url"], "sha256": _sha(image), "m.product_label": SCRIPT_REASON,
         "m.width": width, "m.height": height},
        {**base, "key": "passwd", "index": 1, "uri": str(SECRET), "status": "failed", "stage": SCRIPT_STAGE, "reason": SCRIPT_REASON,
         "sha256": _sha(secret)},
        {**base, "key": "status.png", "index": 2, "uri": str(SECRET), "status": SCRIPT_STATUS, "stage": "decode", "reason": "x",
         "sha256": _sha(b"not the file")},
        {**base, "key": "big.png", "index": 3, "uri": str(big), "status": "failed", "stage": "decode", "reason": "image too large",
         "sha256": _sha(big.read_bytes())},
        {**base, "key": "swapped.png", "index": 4, "uri": str(listed_elsewhere), "status": "dropped", "stage": "person",
         "reason": "no person", "sha256": _sha(image)},  # the file at uri is not the bytes the build read
    ]  # fmt: skip
    schema = pa.schema(
        [(c, pa.int64() if c in ("index", "bytes", "m.width", "m.height") else pa.string()) for c in rows[0]]  # one type per column
    )
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), out / "manifest.parquet")
    (out / "stats.json").write_text(json.dumps({"inputs": len(rows)}))
    recipe = {"name": "crafted", "stages": [{"stage": "decode", "max_pixels": 1_000_000, "max_bytes": 10_000_000}]}
    (out / "_work" / "recipe.json").write_text(json.dumps(recipe))
    return out, {"kept": 0, "passwd": 1, "status": 2, "big": 3, "swapped": 4}
