"""Raw samples out of received shards for the trainer's loader: each shard's sha256 checked against
its index once per process, member sizes bounded before a byte is read, bad samples skipped and counted.

``webdataset.tarfile_samples`` reads every member whole (a 100 MB caption is 100 MB in a worker,
then gigabytes in the tokenizer) and silently drops hard links; here a member above its bound
(bounds.MemberLimits) or not a regular file skips its whole sample, with the reason and a running
count in the log (one line per skipped sample; a run that skips many says so). Samples come out
as webdataset makes them: ``{"__key__", "__url__", ext: bytes}``, extensions lower-cased.

Checksums: a shard listed in ``OUT/index*.json`` with a ``sha256`` is hashed in full the first time
a process opens it (then trusted for the rest of that process: shards are immutable once indexed,
and a second hash per draw would double the read). A shard that differs is never read: train mode
leaves it out of the draw, eval mode refuses (``ShardDataError``), since it must see every sample.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import tarfile
from collections import Counter
from collections.abc import Iterable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

from hoiforge.datasets.bounds import DEFAULT_LIMITS, MemberLimits, size_problem
from hoiforge.errors import HoiforgeError

log = logging.getLogger("hoiforge.datasets")
_NAME = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")  # webdataset's base_plus_ext: key up to the basename's first dot


class ShardChecksumError(HoiforgeError):
    """A shard's bytes are not the ones its index.json lists (changed, truncated or swapped)."""


@lru_cache(maxsize=64)
def _listed_checksums(root: str, stamp: tuple) -> dict[str, str]:
    """Resolved shard path -> sha256 for every shard the index files of OUT ``root`` list (``stamp``: the
    index files' names and mtimes, so an OUT rebuilt in place is read again)."""
    found: dict[str, str] = {}
    for index in sorted(Path(root).glob("index*.json")):
        try:
            shards = json.loads(index.read_text()).get("shardlist", [])
        except (OSError, ValueError, AttributeError):
            continue
        for s in shards if isinstance(shards, list) else []:
            if isinstance(s, dict) and isinstance(s.get("url"), str) and isinstance(s.get("sha256"), str):
                found[str((Path(root) / s["url"]).resolve())] = s["sha256"]
    return found


def expected_sha256(url: str) -> str | None:
    """The sha256 an OUT's index lists for shard ``url`` (OUT/shards/<name>.tar), None if none lists it."""
    path = Path(url).resolve()
    root = path.parent.parent
    stamp = tuple((p.name, p.stat().st_mtime_ns) for p in sorted(root.glob("index*.json")))
    return _listed_checksums(str(root), stamp).get(str(path))


# Samples skipped in this process since the last ``take_skipped``: loader workers are processes, so
# each batch carries its worker's count to the trainer, which writes it to metrics.jsonl.
_skipped_here = 0


def count_skipped(n: int = 1) -> None:
    """Count ``n`` samples skipped in this process (the reader's own skips are counted by ``skip``)."""
    global _skipped_here
    _skipped_here += n


def take_skipped() -> int:
    """Samples skipped in this process since the previous call."""
    global _skipped_here
    n, _skipped_here = _skipped_here, 0
    return n


class ShardReader:
    """One process's reader: which shards it verified, which failed, how many samples it skipped and why."""

    def __init__(self, limits: MemberLimits = DEFAULT_LIMITS, who: str = "this reader"):
        self.limits, self.who = limits, who
        self.verified: set[str] = set()
        self.bad: set[str] = set()
        self.skipped: Counter[str] = Counter()

    def skip(self, key: Any, url: Any, reason: str) -> None:
        """Count and log one skipped sample (the count is the user's view of how much data a run lost)."""
        self.skipped[reason.split(":", 1)[0][:60]] += 1
        count_skipped()
        total = sum(self.skipped.values())
        log.warning("skipped sample %s of %s: %s (%d skipped by %s so far)", key, url, reason, total, self.who)

    def verify(self, url: str) -> None:
        """ShardChecksumError if the shard's sha256 differs from its index's (hashed once per process)."""
        if url in self.verified:
            return
        if url in self.bad:
            raise ShardChecksumError(f"{url}: its sha256 differs from index.json; the shard is damaged or was replaced")
        expected = expected_sha256(url)
        if expected is not None:
            with open(url, "rb") as f:
                actual = hashlib.file_digest(f, "sha256").hexdigest()
            if actual != expected:
                self.bad.add(url)
                raise ShardChecksumError(
                    f"{url}: its sha256 differs from index.json; the shard is damaged or was replaced (rebuild or re-copy it)"
                )
        self.verified.add(url)

    def samples(self, url: str) -> Iterator[dict[str, Any]]:
        """The shard's samples, each within the member bounds; over-bound or non-regular members skip their sample."""
        self.verify(url)
        current: dict[str, Any] | None = None
        problem: str | None = None
        with open(url, "rb") as f, tarfile.open(fileobj=f, mode="r:") as tar:
            for info in tar:
                tar.members = []  # streaming: keep no TarInfo list (a shard holds thousands of members)
                m = _NAME.match(info.name)
                if m is None or info.isdir() or info.name.split("/")[-1].startswith("__"):
                    continue
                key, ext = m.group(1), m.group(2).lower()
                if current is None or key != current["__key__"]:
                    if current is not None:
                        yield from self._finish(current, problem)
                    current, problem = {"__key__": key, "__url__": url}, None
                if problem:
                    continue
                if not info.isreg():
                    kind = "a hard link" if info.islnk() else "a symlink" if info.issym() else "not a regular file"
                    problem = f"member .{ext} is {kind}"
                    continue
                problem = size_problem(ext, info.size, self.limits)
                if problem is None:
                    current[ext] = tar.extractfile(info).read()
        if current is not None:
            yield from self._finish(current, problem)

    def _finish(self, sample: dict[str, Any], problem: str | None) -> Iterator[dict[str, Any]]:
        if problem:
            self.skip(sample["__key__"], sample["__url__"], problem)
        elif len(sample) > 2:
            yield sample

    def stream(self, urls: Iterable[str], strict: bool) -> Iterator[dict[str, Any]]:
        """Samples of ``urls`` in order. A shard failing its checksum raises when ``strict`` (eval), else is
        logged and passed over (train: the draw leaves it out, see ``bad``); a truncated tar ends its shard."""
        for url in urls:
            try:
                yield from self.samples(url)
            except ShardChecksumError as e:
                if strict:
                    raise
                log.warning("%s; left out of training", e)
            except (tarfile.TarError, OSError) as e:
                if strict:
                    raise ShardChecksumError(f"{url}: not a readable tar ({e}); the shard is damaged, rebuild or re-copy it") from None
                log.warning("%s: shard ends early (%s); its remaining samples are skipped", url, e)
