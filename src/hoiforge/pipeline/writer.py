"""Shard writing: a Ray Data sink whose write tasks each commit shards plus one manifest part.

A write task receives up to ``shard_max_count`` rows, writes the kept samples into tars (rolled
over by count and bytes, one stream per split) and then a manifest part listing every row it
got, kept, dropped or failed. Tars are renamed into place first and the part last: the part is
the commit marker. A tar that no part names is an orphan of a killed run and resume deletes it.
"""

from __future__ import annotations

import hashlib
import json
import queue
import tarfile
import threading
import uuid
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import ray
from ray.data.block import BlockAccessor
from ray.data.datasource import Datasink

from hoiforge.datasets import placeholders, schema
from hoiforge.datasets.contract import shard_name, split_of
from hoiforge.datasets.layout import OutLayout, commit, tmp_path_for
from hoiforge.pipeline.adapter import batch_to_samples
from hoiforge.pipeline.recipe import OutputSpec
from hoiforge.stages.base import OK, Sample

PART_META_KEY = b"hoiforge.shards"


@ray.remote(num_cpus=0)
class ShardCounter:
    """Hands out shard sequence numbers per build and split, so parallel write tasks never collide.

    One per cluster, started with Ray (``shard_counter()`` from ``cluster.connect``) like Ray
    Data's own helper actors: an actor is a Python process of about a CPU-second to start, which
    inside a build competes with the actors loading their models. Builds are told apart by a run id.
    """

    def __init__(self) -> None:
        self.next_seq: dict[str, dict[str, int]] = {}

    def begin(self, run: str, start: dict[str, int]) -> None:
        self.next_seq[run] = dict(start)

    def take(self, run: str, split: str) -> int:
        seqs = self.next_seq[run]
        seq = seqs.get(split, 0)
        seqs[split] = seq + 1
        return seq

    def end(self, run: str) -> None:
        self.next_seq.pop(run, None)


def shard_counter():
    """The cluster's shard counter, created on first use: named, so every driver finds the same one,
    and detached (as Ray Data's stats actor is), so it lives as long as the cluster, not the handle."""
    from hoiforge import __version__

    name = f"hoiforge-shard-counter-{__version__}"
    return ShardCounter.options(name=name, namespace="hoiforge", get_if_exists=True, lifetime="detached").remote()


class ShardTar:
    """One shard tar written sample by sample as webdataset's TarWriter lays it out (``<key>.<ext>``
    members, extensions sorted, USTAR, mode 0444, mtime 0, owner "bigdata"); ``close()`` returns its
    size and sha256 for the index.

    Headers come from ``tarfile`` (``TarInfo.tobuf``); the bytes go straight to a buffered file
    rather than through tarfile's stream, which copies every member again in 10 KB records. The
    sha256 runs on a helper thread: hashlib releases the GIL, so hashing member n overlaps writing
    member n+1 (bench/writer_throughput.py: writer/raw tar 0.43 with md5 inline through tarfile's
    stream, 0.70 so).
    Not ``webdataset.TarWriter``: importing webdataset imports torch (seconds and ~300 MB in every
    writer process), and a torch import that failed half-way in a Ray worker (seen in CI) poisoned
    every later write in that worker.
    """

    def __init__(self, path: Path):
        self.size, self.nsamples = 0, 0
        self._file = open(path, "wb", buffering=1 << 20)  # noqa: SIM115 - held until close() commits the shard
        self._sha256 = hashlib.sha256()
        self._chunks: queue.SimpleQueue = queue.SimpleQueue()
        self._hasher = threading.Thread(target=self._hash_chunks, name="shard-sha256", daemon=True)
        self._hasher.start()

    def _hash_chunks(self) -> None:
        while (chunk := self._chunks.get()) is not None:
            self._sha256.update(chunk)

    def _write(self, chunk: bytes) -> None:
        self._file.write(chunk)
        self._chunks.put(chunk)  # bytes are immutable: the thread hashes exactly what was written
        self.size += len(chunk)

    def add(self, key: str, members: Iterable[tuple[str, bytes]]) -> None:
        for ext, data in sorted(members):
            info = tarfile.TarInfo(f"{key}.{ext}")
            info.size, info.mode, info.mtime = len(data), 0o444, 0
            info.uname = info.gname = "bigdata"
            self._write(info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "surrogateescape"))
            if data:
                self._write(bytes(data))
            if len(data) % tarfile.BLOCKSIZE:
                self._write(bytes(tarfile.BLOCKSIZE - len(data) % tarfile.BLOCKSIZE))
        self.nsamples += 1

    def close(self) -> dict[str, Any]:
        """End the archive as tarfile does (two zero blocks, then zeros to a whole 10 KB record)."""
        end = 2 * tarfile.BLOCKSIZE
        self._write(bytes(end + -(self.size + end) % tarfile.RECORDSIZE))
        self._finish()
        return {"filesize": self.size, "sha256": self._sha256.hexdigest()}

    def _finish(self) -> None:
        self._chunks.put(None)
        self._hasher.join()
        self._file.close()

    def __enter__(self) -> ShardTar:
        return self

    def __exit__(self, *exc) -> None:
        if not self._file.closed:  # a failed write: the thread must not outlive it
            self._finish()


def sample_members(s: Sample, uniform: tuple[str, ...] = (), template: dict[str, Any] | None = None) -> dict[str, bytes]:
    """The shard members of a kept sample, per the sample contract; ``uniform``: the members every
    sample of the build carries (a placeholder for each one this sample lacks, named in the json);
    ``template``: the build's json template (datasets/schema.py), every json conformed to it."""
    filled = placeholders.fill(s.members, uniform, s.ann["image"]["width"], s.ann["image"]["height"])
    if uniform or template is not None:  # one json schema for every sample
        s.ann["placeholders"] = filled
    ann = s.ann if template is None else schema.conform(s.ann, template)
    members: dict[str, bytes] = {s.ann["image"]["ext"]: s.image}
    members["json"] = json.dumps(ann, ensure_ascii=False, separators=(",", ":")).encode()
    for ext, data in s.members.items():
        if data is None:
            continue
        member_template = schema.member_template(ext) if template is not None else None
        if member_template is not None:
            data = json.dumps(schema.conform(json.loads(data), member_template), separators=(",", ":")).encode()
        members[ext] = data
    return members


def write_tar(path: Path, samples: list[tuple[str, dict[str, bytes]]]) -> dict[str, Any]:
    """Write (key, members) samples to ``path`` (ShardTar's layout); returns its size and sha256."""
    with ShardTar(path) as tar:
        for key, members in samples:
            tar.add(key, members.items())
        return tar.close()


MANIFEST_BASE = pa.schema(
    [
        ("key", pa.string()),
        ("index", pa.int64()),
        ("uri", pa.string()),
        ("member", pa.string()),
        ("status", pa.string()),
        ("stage", pa.string()),
        ("reason", pa.string()),
        ("reason_code", pa.string()),
        ("reason_params", pa.string()),
        ("id", pa.string()),
        ("split", pa.string()),
        ("shard", pa.string()),
        ("sha256", pa.string()),
        ("bytes", pa.int64()),
        ("image_format", pa.string()),  # the stored image member's format (jpg/png/webp)
        ("source_format", pa.string()),  # the input's format as Pillow named it (JPEG, PNG, HEIF, ...)
        ("reencoded", pa.string()),  # why the stored bytes differ from the input's, null when they are its bytes
    ]
)


def manifest_table(samples: list[Sample]) -> pa.Table:
    """Manifest rows: the fixed base columns, then each metric a stage recorded as "m.<name>"."""
    rows = [manifest_row(s) for s in samples]
    base = pa.Table.from_pylist([{f.name: r[f.name] for f in MANIFEST_BASE} for r in rows], schema=MANIFEST_BASE)
    metric_names = sorted({k for r in rows for k in r if k.startswith("m.")})
    if metric_names:
        metrics = pa.Table.from_pylist([{k: r.get(k) for k in metric_names} for r in rows])
        for name in metric_names:
            base = base.append_column(name, metrics.column(name))
    return base


def manifest_row(s: Sample) -> dict[str, Any]:
    source = s.ann.get("source", {})
    image = s.ann.get("image", {})
    row = {
        "key": s.key,
        "index": s.index,
        "uri": s.uri,
        "member": s.member,
        "status": "kept" if s.status == OK else s.status,
        "stage": s.stage,
        "reason": s.reason,
        "reason_code": s.reason_code,
        "reason_params": json.dumps(s.reason_params, separators=(",", ":"), sort_keys=True, default=str) if s.reason_params else None,
        "id": s.ann.get("id"),
        "split": s.ann.get("split"),
        "shard": s.ann.get("shard"),
        "sha256": source.get("sha256"),
        "bytes": source.get("size"),
        "image_format": image.get("ext") if s.status == OK else None,
        "source_format": image.get("source_format"),
        "reencoded": image.get("reencoded"),
    }
    for name, value in s.metrics.items():
        row[f"m.{name}"] = value
    return row


class ShardSink(Datasink):
    def __init__(self, out: str, spec: OutputSpec, counter, run: str, uniform: tuple[str, ...] = (), template: dict | None = None):
        self.out = out
        self.spec = spec
        self.counter = counter
        self.run = run
        self.uniform = uniform
        self.template = template

    @property
    def min_rows_per_write(self) -> int:
        return self.spec.shard_max_count

    def get_name(self) -> str:
        return "WriteShards"

    def write(self, blocks, ctx) -> dict[str, Any]:
        samples = [s for block in blocks for s in batch_to_samples(BlockAccessor.for_block(block).to_arrow())]
        return write_part(
            OutLayout(self.out),
            self.spec,
            samples,
            lambda split: ray.get(self.counter.take.remote(self.run, split)),
            self.uniform,
            self.template,
        )


def drop_duplicates_within(samples: list[Sample]) -> None:
    """Exact duplicates (same id) collapse: the lowest input index stays, the others are dropped."""
    first: dict[str, Sample] = {}
    for s in sorted((s for s in samples if s.live), key=lambda s: s.index):
        sid = s.ann["id"]
        if sid in first:
            s.drop("dedup", "exact", f"exact duplicate of {first[sid].key}", of=first[sid].key)
        else:
            first[sid] = s


def write_part(
    layout: OutLayout, spec: OutputSpec, samples: list[Sample], take_seq, uniform: tuple[str, ...] = (), template: dict | None = None
) -> dict[str, Any]:
    drop_duplicates_within(samples)
    by_split: dict[str, list[Sample]] = defaultdict(list)
    for s in sorted(samples, key=lambda s: s.index):
        if s.live:
            s.ann["split"] = split_of(s.ann["id"], spec.test_size)
            by_split[s.ann["split"]].append(s)

    shards: list[dict[str, Any]] = []
    for split, kept in sorted(by_split.items()):
        for group in _roll(kept, spec):
            name = shard_name(split, take_seq(split))
            final = layout.shards / name
            tmp = tmp_path_for(final)
            # The json is written before the shard is known: compaction moves members byte for
            # byte, so where a sample sits is the manifest's and the index's to say, not the json's.
            info = write_tar(tmp, [(s.ann["id"], sample_members(s, uniform, template)) for s in group])
            for s in group:
                s.ann["shard"] = f"shards/{name}"
            commit(tmp, final)
            shards.append({"url": f"shards/{name}", "split": split, "nsamples": len(group), **info})

    table = manifest_table(samples)
    table = table.replace_schema_metadata({PART_META_KEY: json.dumps(shards).encode()})
    final = layout.parts / f"part-{uuid.uuid4().hex}.parquet"
    tmp = tmp_path_for(final)
    pq.write_table(table, tmp)
    commit(tmp, final)
    return {"rows": len(samples), "kept": sum(len(v) for v in by_split.values()), "shards": [s["url"] for s in shards]}


def _roll(samples: list[Sample], spec: OutputSpec):
    """Groups of samples, each within the shard count and byte limits."""
    group: list[Sample] = []
    size = 0
    for s in samples:
        nbytes = len(s.image or b"") + sum(len(v or b"") for v in s.members.values()) + 4096
        if group and (len(group) >= spec.shard_max_count or size + nbytes > spec.shard_max_bytes):
            yield group
            group, size = [], 0
        group.append(s)
        size += nbytes
    if group:
        yield group
