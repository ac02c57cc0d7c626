"""The read step: listing rows in, source bytes and their sha256 out (failures become rows)."""

from __future__ import annotations

import hashlib
import posixpath

import pyarrow as pa

from hoiforge.pipeline.adapter import samples_to_batch
from hoiforge.pipeline.inputs import read_input
from hoiforge.pipeline.source_read import InputTooLarge, NotRegularFile, StaleMember
from hoiforge.stages.base import Sample

# Read failures by kind: the code stats and the report group by.
READ_CODES = {InputTooLarge: "too_large", NotRegularFile: "not_regular_file", StaleMember: "stale_member"}


def read_batch(listing: pa.Table, max_bytes: int | None = None) -> pa.Table:
    """``max_bytes``: the decode stage's limit; a larger input fails here, having read at most max_bytes + 1."""
    samples = []
    for row in listing.to_pylist():
        s = Sample(key=row["key"], index=row["index"], uri=row["uri"], member=row["member"], image=None)
        if row.get("skip"):
            extension = posixpath.splitext(row["member"] or row["uri"])[1].lower() or "(none)"
            s.drop("list", "not_an_image", row["skip"], extension=extension)
        elif row["error"]:
            s.fail("read", row.get("error_code") or "listing", row["error"], input=row["member"] or posixpath.basename(row["uri"]))
        else:
            try:
                data = read_input(row["uri"], row["member"], row["offset"], row["size"], max_bytes)
            except (InputTooLarge, NotRegularFile, StaleMember) as e:
                s.fail("read", READ_CODES[type(e)], str(e))
            except Exception as e:  # noqa: BLE001 - an unreadable input is that input's failure
                s.fail("read", "unreadable", f"cannot read: {type(e).__name__}: {e}", exception=type(e).__name__)
            else:
                s.image = data
                s.ann["source"] = {"uri": s.uri, "member": s.member, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
                if row.get("relpath"):
                    s.ann["source"]["path"] = row["relpath"]
        samples.append(s)
    return samples_to_batch(samples)
