"""The read step: listing rows in, source bytes and their sha256 out (failures become rows)."""

from __future__ import annotations

import hashlib

import pyarrow as pa

from hoiforge.pipeline.adapter import samples_to_batch
from hoiforge.pipeline.inputs import read_input
from hoiforge.stages.base import Sample


def read_batch(listing: pa.Table) -> pa.Table:
    samples = []
    for row in listing.to_pylist():
        s = Sample(key=row["key"], index=row["index"], uri=row["uri"], member=row["member"], image=None)
        if row["error"]:
            s.fail("read", "unsafe_member", row["error"])
        else:
            try:
                data = read_input(row["uri"], row["member"], row["offset"], row["size"])
            except Exception as e:  # noqa: BLE001 - an unreadable input is that input's failure
                s.fail("read", "unreadable", f"cannot read: {type(e).__name__}: {e}", exception=type(e).__name__)
            else:
                s.image = data
                s.ann["source"] = {"uri": s.uri, "member": s.member, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
        samples.append(s)
    return samples_to_batch(samples)
