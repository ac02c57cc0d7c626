"""Random access to a build's samples for the viewer: filter pages from the manifest, bytes by seek.

- Listing: a slim copy of the manifest (status, stage, reason, label, score, ...) stays in
  memory with strings dictionary-encoded; a filter is a pyarrow.compute mask over whole
  columns, and a page is a slice of the matching row positions (cached per filter), so paging
  through millions of rows never scans in Python.
- Bytes: a kept sample's members are read from its shard by offset. Shards are only those the
  wids index (``index.json``) lists; per shard, the member offsets come from one pass over the
  tar headers (``tarfile`` seeks past the data) and are cached (LRU).
- A sample is addressed by its manifest ``index`` (the input's position, unique per input;
  sample ids are not unique: dedup-dropped rows share the id of the kept copy).
"""

from __future__ import annotations

import json
import math
import tarfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from hoiforge.datasets.layout import OutLayout
from hoiforge.datasets.reasons import reason_class

# Manifest columns the listing keeps in memory (uri/key/hashes are read per request instead).
LIST_COLUMNS = (
    "index",
    "status",
    "stage",
    "reason",
    "id",
    "split",
    "shard",
    "m.product_label",
    "m.aesthetic",
    "m.brisque",
    "m.persons",
    "m.width",
    "m.height",
)
# Dictionary-encoded in memory: few distinct values, so filters compare once per distinct value.
DICT_COLUMNS = ("status", "stage", "reason", "split", "shard", "m.product_label")
SCORE_COLUMNS = ("aesthetic", "brisque")
PAGE_SIZE = 48
MAX_PAGE_SIZE = 500


@dataclass(frozen=True)
class Query:
    status: str = ""
    stage: str = ""
    reason: str = ""  # substring of the reason
    label: str = ""
    split: str = ""
    score: str = ""  # which score column min/max apply to: aesthetic | brisque
    min_score: float | None = None
    max_score: float | None = None

    @classmethod
    def from_params(cls, params: dict[str, str]) -> Query:
        def num(name: str) -> float | None:
            v = params.get(name, "").strip()
            return float(v) if v else None

        score = params.get("score", "")
        if score and score not in SCORE_COLUMNS:
            raise ValueError(f"score must be one of {SCORE_COLUMNS}")
        return cls(
            status=params.get("status", ""),
            stage=params.get("stage", ""),
            reason=params.get("reason", ""),
            label=params.get("label", ""),
            split=params.get("split", ""),
            score=score,
            min_score=num("min_score"),
            max_score=num("max_score"),
        )


class SampleIndex:
    def __init__(self, out: str | Path, shard_cache: int = 64):
        self.layout = OutLayout(out)
        if not self.layout.manifest.exists():
            raise FileNotFoundError(f"{out}: no manifest.parquet (not a finished build)")
        names = pq.read_schema(self.layout.manifest).names
        columns = [c for c in LIST_COLUMNS if c in names]
        self.table = pq.read_table(self.layout.manifest, columns=columns, read_dictionary=[c for c in DICT_COLUMNS if c in columns])
        # Row position of each input index (indices are unique but need not be contiguous).
        self.index_values = self.table.column("index").to_numpy()
        self.order = np.argsort(self.index_values, kind="stable")
        self.shardlist = self._read_wids_index()
        self._shard_start = dict(
            zip([s["url"] for s in self.shardlist], np.cumsum([0] + [s["nsamples"] for s in self.shardlist[:-1]]).tolist())
        )
        self._offsets: OrderedDict[str, dict[str, tuple[int, int]]] = OrderedDict()
        self._offsets_lock = threading.Lock()
        self._shard_cache = shard_cache
        self._queries: OrderedDict[Query, np.ndarray] = OrderedDict()
        self._queries_lock = threading.Lock()
        self.facets = self._facets()

    # ------------------------------------------------------------------ listing

    def _read_wids_index(self) -> list[dict[str, Any]]:
        if not self.layout.index.exists():
            return []
        return json.loads(self.layout.index.read_text())["shardlist"]

    def _facets(self) -> dict[str, Any]:
        """Distinct values (with counts) of the filterable columns, for the UI's selects."""
        out: dict[str, Any] = {"total": self.table.num_rows}
        for name, col in (("status", "status"), ("stage", "stage"), ("split", "split"), ("label", "m.product_label")):
            out[name] = _value_counts(self.table.column(col)) if col in self.table.column_names else {}
        # Reason classes (per-input details cut off), counted over distinct reasons only.
        reasons: dict[str, int] = {}
        if "reason" in self.table.column_names:
            for reason, n in _value_counts(self.table.column("reason"), with_null=False).items():
                cls = reason_class(reason)
                reasons[cls] = reasons.get(cls, 0) + n
        out["reason"] = dict(sorted(reasons.items(), key=lambda p: -p[1]))
        out["scores"] = [s for s in SCORE_COLUMNS if f"m.{s}" in self.table.column_names]
        return out

    def _mask(self, q: Query) -> pa.ChunkedArray | None:
        t = self.table
        conds = []
        for value, col in ((q.status, "status"), (q.stage, "stage"), (q.split, "split"), (q.label, "m.product_label")):
            if value:
                if col not in t.column_names:
                    conds.append(pa.chunked_array([pa.array(np.zeros(t.num_rows, bool))]))
                else:
                    conds.append(
                        pc.equal(pc.cast(t.column(col), pa.string()), value)
                        if not pa.types.is_dictionary(t.column(col).type)
                        else _dict_equal(t.column(col), value)
                    )
        if q.reason:
            # Substring match on the distinct reasons, then a set lookup: cheap on millions of rows.
            conds.append(_dict_match(t.column("reason"), q.reason))
        if q.score and (q.min_score is not None or q.max_score is not None):
            col = f"m.{q.score}"
            if col not in t.column_names:
                conds.append(pa.chunked_array([pa.array(np.zeros(t.num_rows, bool))]))
            else:
                if q.min_score is not None:
                    conds.append(pc.greater_equal(t.column(col), q.min_score))
                if q.max_score is not None:
                    conds.append(pc.less_equal(t.column(col), q.max_score))
        if not conds:
            return None
        mask = conds[0]
        for c in conds[1:]:
            mask = pc.and_(mask, c)
        return pc.fill_null(mask, False)

    def matching(self, q: Query) -> np.ndarray:
        """Row positions matching ``q``, in input order (cached: paging reuses the mask)."""
        with self._queries_lock:
            if q in self._queries:
                self._queries.move_to_end(q)
                return self._queries[q]
        mask = self._mask(q)
        if mask is None:
            rows = self.order
        else:
            selected = np.asarray(mask.to_numpy(zero_copy_only=False), dtype=bool)
            rows = self.order[selected[self.order]]
        with self._queries_lock:  # the server answers requests on several threads
            self._queries[q] = rows
            while len(self._queries) > 32:
                self._queries.popitem(last=False)
        return rows

    def page(self, q: Query, page: int = 0, page_size: int = PAGE_SIZE) -> dict[str, Any]:
        page_size = max(1, min(page_size, MAX_PAGE_SIZE))
        rows = self.matching(q)
        total = int(rows.size)
        pages = max(1, -(-total // page_size))
        page = max(0, min(page, pages - 1))
        chunk = rows[page * page_size : (page + 1) * page_size]
        items = self.table.take(pa.array(chunk, pa.int64())).to_pylist() if chunk.size else []
        return {"total": total, "page": page, "pages": pages, "page_size": page_size, "rows": [_public(r) for r in items]}

    # ------------------------------------------------------------------ one sample

    def row_position(self, index: int) -> int | None:
        pos = int(np.searchsorted(self.index_values[self.order], index))
        if pos < self.order.size and self.index_values[self.order[pos]] == index:
            return int(self.order[pos])
        return None

    def row(self, index: int, columns: tuple[str, ...] | None = None) -> dict[str, Any] | None:
        """The manifest row of input ``index`` (all columns, or only ``columns``: thumbnails need
        just where the bytes are, and one column of a million-row group reads ~20x faster)."""
        pos = self.row_position(index)
        if pos is None:
            return None
        return _full_row(self.layout.manifest, pos, columns)

    def where(self, index: int, source: bool = False) -> dict[str, Any] | None:
        """What serving bytes needs: status, id, shard from memory; uri/key/member (where the
        source is) read from disk only when asked for or for rows that are not in the shards."""
        pos = self.row_position(index)
        if pos is None:
            return None
        row = (
            self.table.select([c for c in ("index", "status", "id", "shard") if c in self.table.column_names]).slice(pos, 1).to_pylist()[0]
        )
        if source or row["status"] != "kept":
            row.update(_full_row(self.layout.manifest, pos, ("key", "uri", "member")))
        return row

    def members(self, row: dict[str, Any]) -> dict[str, tuple[int, int]]:
        """Extension → (offset, size) of a kept sample's members in its shard."""
        if row.get("status") != "kept" or not row.get("shard") or not row.get("id"):
            return {}
        offsets = self._shard_offsets(row["shard"])
        prefix = row["id"] + "."
        return {name[len(prefix) :]: where for name, where in offsets.items() if name.startswith(prefix)}

    def read_member(self, row: dict[str, Any], ext: str) -> bytes | None:
        where = self.members(row).get(ext)
        if where is None:
            return None
        offset, size = where
        with open(self._shard_path(row["shard"]), "rb") as f:
            f.seek(offset)
            return f.read(size)

    def wids_position(self, row: dict[str, Any]) -> int | None:
        """The sample's position in ``index.json`` order: ``wids.ShardListDataset(index.json)[n]``."""
        if row.get("status") != "kept" or row.get("shard") not in self._shard_start:
            return None
        offsets = self._shard_offsets(row["shard"])
        keys = list(dict.fromkeys(name.partition(".")[0] for name in offsets))
        return self._shard_start[row["shard"]] + keys.index(row["id"])

    def _shard_path(self, url: str) -> Path:
        """The file of a shard the wids index lists; anything else is refused."""
        if url not in self._shard_start:
            raise KeyError(f"{url}: not a shard of index.json")
        path = (self.layout.root / url).resolve()
        if self.layout.shards.resolve() not in path.parents:
            raise KeyError(f"{url}: outside the shards folder")
        return path

    def _shard_offsets(self, url: str) -> dict[str, tuple[int, int]]:
        with self._offsets_lock:
            if url in self._offsets:
                self._offsets.move_to_end(url)
                return self._offsets[url]
        offsets = {}
        path = self._shard_path(url)
        if not path.is_file():  # deleted, not copied along with the manifest, or a FIFO (whose open would block)
            return {}
        with tarfile.open(path, "r:") as tar:
            for info in tar:  # reads headers only: tarfile seeks past each member's data
                if info.isfile():
                    offsets[info.name] = (info.offset_data, info.size)
        with self._offsets_lock:
            self._offsets[url] = offsets
            while len(self._offsets) > self._shard_cache:
                self._offsets.popitem(last=False)
        return offsets


# ---------------------------------------------------------------------- helpers


def _value_counts(col: pa.ChunkedArray, with_null: bool = True) -> dict[str, int]:
    if pa.types.is_dictionary(col.type):
        col = pc.cast(col, col.type.value_type)
    vc = pc.value_counts(col)
    pairs = [(v, n) for v, n in zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist()) if with_null or v is not None]
    return {("(none)" if v is None else str(v)): n for v, n in sorted(pairs, key=lambda p: -p[1]) if v is not None or with_null}


def _dict_equal(col: pa.ChunkedArray, value: str) -> pa.ChunkedArray:
    return _dict_select(col, lambda d: pc.equal(d, value))


def _dict_match(col: pa.ChunkedArray, needle: str) -> pa.ChunkedArray:
    return _dict_select(col, lambda d: pc.match_substring(d, needle, ignore_case=True))


def _dict_select(col: pa.ChunkedArray, on_dictionary) -> pa.ChunkedArray:
    """A row mask from a predicate evaluated once per distinct value of a dictionary column."""
    if not pa.types.is_dictionary(col.type):
        return on_dictionary(col)
    chunks = []
    for chunk in col.chunks:
        hit = pc.fill_null(on_dictionary(chunk.dictionary), False)
        chunks.append(pc.fill_null(pc.take(hit, chunk.indices), False))
    return pa.chunked_array(chunks, pa.bool_())


def _public(row: dict[str, Any]) -> dict[str, Any]:
    """A listing row with JSON-friendly names (m.product_label → label)."""
    return {k.removeprefix("m."): _finite(v) for k, v in row.items()}


def _full_row(path: Path, pos: int, columns: tuple[str, ...] | None = None) -> dict[str, Any]:
    """One manifest row by position: only its row group is read (a fresh reader per call: thread-safe)."""
    f = pq.ParquetFile(path)
    starts = np.cumsum([0] + [f.metadata.row_group(i).num_rows for i in range(f.num_row_groups)])
    group = int(np.searchsorted(starts, pos, side="right") - 1)
    table = f.read_row_group(group, columns=list(columns) if columns else None)
    row = table.slice(pos - int(starts[group]), 1).to_pylist()[0]
    return {k: _finite(v) for k, v in row.items()}


def _finite(value: Any) -> Any:
    """NaN/inf → None: JSON has no NaN."""
    return None if isinstance(value, float) and not math.isfinite(value) else value
