"""Torch/WebDataset loaders over a build's shards (the only datasets module that imports torch).

- ``train``: resampled shards (each rank and worker draws shards with replacement from its own
  seeded stream), a shuffle buffer, batches assembled in the workers; endless.
- ``eval``: every kept sample exactly once: shard ``i`` goes to slot ``i mod (ranks x workers)``,
  slot = rank x workers + worker; samples keep their shard order.
- ``inspect_dataset``: random access by index through wids, for looking at samples.

Shard urls come from ``OUT/index.<split>.json`` (relative to OUT). Shards are read by
``shard_read.ShardReader`` (sha256 checked once per process, member sizes bounded); per-sample
decoding is ``vm_sample.SampleDecoder`` (pixel counts, RLE sizes, finite json checked first);
``collate`` turns its arrays into tensors. A sample that fails any of these is skipped and counted
in the log, in both modes; each batch carries ``skipped`` (samples its worker skipped since its
previous batch), which the trainer sums into metrics.jsonl.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import json
import logging
import os
import random
import sys
import tarfile
import weakref
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from hoiforge.datasets.bounds import DEFAULT_LIMITS, MemberLimits
from hoiforge.datasets.shard_read import ShardReader, take_skipped
from hoiforge.datasets.vm_sample import WRITTEN_BY, SampleDecoder, SampleSpec, ShardDataError, missing_members

log = logging.getLogger("hoiforge.datasets")


def shard_urls(out: str | Path, split: str = "train") -> list[str]:
    """Absolute shard paths of ``split`` in a build output; ShardDataError if it holds no kept sample there."""
    root = Path(out)
    index = root / f"index.{split}.json"
    if not index.is_file():
        where = "not a finished build" if not (root / "manifest.parquet").exists() else f"no index.{split}.json"
        raise ShardDataError(f"{root}: no kept {split} samples ({where}); pass a build output whose recipe keeps samples")
    shards = json.loads(index.read_text()).get("shardlist", [])
    if sum(int(s.get("nsamples", 0)) for s in shards) == 0:
        raise ShardDataError(f"{root}: index.{split}.json lists no kept samples; pass a build output whose recipe keeps samples")
    urls = []
    for s in shards:
        path = (root / s["url"]).resolve()
        if root.resolve() not in path.parents:
            raise ShardDataError(f"{index}: shard url {s['url']!r} points outside {root}")
        if not path.is_file():
            raise ShardDataError(f"{root}: shard {s['url']} listed in index.{split}.json is missing")
        if int(s.get("nsamples", 0)) > 0:
            urls.append(str(path))
    return urls


def split_size(outs: list[str | Path], split: str = "train") -> int:
    """Kept samples of ``split`` over build outputs, from their index (what an ``epochs`` setting counts)."""
    total = 0
    for out in outs:
        shard_urls(out, split)  # the same checks and errors as the loader
        shards = json.loads((Path(out) / f"index.{split}.json").read_text()).get("shardlist", [])
        total += sum(max(0, int(s.get("nsamples", 0))) for s in shards)
    return total


def first_sample(url: str) -> dict[str, Any]:
    """Members (by extension) of a shard's first sample."""
    sample: dict[str, Any] = {}
    with tarfile.open(url, "r:") as tar:
        for info in tar:
            if not info.isreg():
                continue
            key, _, ext = info.name.partition(".")
            if sample and key != sample["__key__"]:
                break
            sample["__key__"] = key
            sample[ext] = tar.extractfile(info).read()
    return sample


def check_members(out: str | Path, urls: list[str], spec: SampleSpec, require: tuple[str, ...] = ()) -> None:
    """ShardDataError naming the first member the config needs that the build's samples lack, and who writes it."""
    sample = first_sample(urls[0])
    missing = missing_members(sample, spec) + [m for m in require if m not in sample]
    if missing:
        member = missing[0]
        stage = WRITTEN_BY.get(member)
        by = f"the `{stage}` stage writes it: rebuild with a recipe that runs it" if stage else "rebuild the output"
        raise ShardDataError(f"{out}: samples lack the member {member!r} this training needs; {by}")


def dist_info() -> tuple[int, int]:
    """(rank, world size) from torch.distributed, else the launcher's environment, else (0, 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def eval_slice(urls: list[str], rank: int, world: int, worker: int, workers: int) -> list[str]:
    slots = world * workers
    return urls[rank * workers + worker :: slots]


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """uint8 tensors as the decoder made them, channels last: image, pose (B,S,S,3), view (B,V,V,3), edges,
    mask (B,S,S) with mask 0/1. Bytes, not floats, cross from the workers (4x less), and ``normalise`` makes
    the model's layout where the model is. Precomputed latent/dino are kept only when every sample has them;
    text stays a list (lengths differ)."""
    out: dict[str, Any] = {"key": [s["__key__"] for s in samples], "caption": [s["caption"] for s in samples]}
    in_worker = get_worker_info() is not None
    for name in ("image", "pose", "view", "edges", "mask"):
        if name in samples[0]:
            first = samples[0][name]
            t = torch.empty((len(samples), *first.shape), dtype=torch.uint8)
            if in_worker:
                t.share_memory_()  # stacked straight into shared memory: the DataLoader then sends it without a copy
            np.stack([s[name] for s in samples], out=t.numpy())
            out[name] = t
    if "product" in samples[0]:
        out["product"] = torch.tensor([s["product"] for s in samples])
    for name in ("latent", "dino"):
        if all(name in s for s in samples):
            out[name] = torch.from_numpy(np.stack([s[name] for s in samples]))
    if all("text" in s for s in samples):
        out["text"] = [torch.from_numpy(s["text"]) for s in samples]
    return out


def normalise(batch: dict[str, Any]) -> dict[str, Any]:
    """A collated batch as the model takes it, on whatever device it is: channels first, image in [-1, 1];
    pose, edges, view in [0, 1]; mask 0/1 (B,1,S,S); object o = image x m."""
    out = dict(batch)
    out["image"] = batch["image"].permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
    for name in ("pose", "view"):
        if name in batch:
            out[name] = batch[name].permute(0, 3, 1, 2).float().div(255.0)
    if "edges" in batch:
        out["edges"] = batch["edges"].unsqueeze(1).float().div(255.0)
    if "mask" in batch:
        out["mask"] = batch["mask"].unsqueeze(1).float()
        out["object"] = out["image"] * out["mask"]
    for name in ("latent", "dino"):
        if name in batch:
            out[name] = batch[name].float()
    return out


def _exit_now() -> None:
    """A worker's last atexit step: flush what it wrote, then leave without interpreter finalization.

    When the trainer stops iterating (max steps, end of a bench), torch tells the workers to stop and
    closes their result queue without draining it, so a worker can exit while its queue's daemon feeder
    thread is still inside torch's C++ (pickling a shared-memory batch). Finalization then ends that
    thread with pthread_exit, whose unwinding through a noexcept C++ frame calls std::terminate:
    "terminate called without an active exception", the worker dies of SIGABRT and the parent's
    ``__del__`` prints "DataLoader worker ... is killed by signal: Aborted". Nothing is left to do at
    this point (torch already closed the queues and the batch is unwanted), so skip finalization.
    """
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(0)


def _worker_init(_: int) -> None:
    import cv2

    cv2.setNumThreads(1)  # the workers are the parallelism; OpenCV's own pool only contends with them
    # Registered last, so it runs first at exit (atexit is LIFO); multiprocessing's own exit hook
    # (_exit_function) has already run by then, from Process._bootstrap.
    atexit.register(_exit_now)


class ShardStream(IterableDataset):
    """Batches of decoded samples from shards; see the module docstring for the two modes."""

    def __init__(
        self,
        urls: list[str],
        decode: Callable[[dict[str, Any], np.random.Generator | None], dict[str, Any]],
        *,
        batch_size: int,
        mode: str = "train",
        seed: int = 0,
        start_step: int = 0,
        shuffle_buffer: int = 1000,
        rank: int | None = None,
        world: int | None = None,
        drop_last: bool | None = None,
        limits: MemberLimits = DEFAULT_LIMITS,
    ):
        super().__init__()
        if mode not in ("train", "eval"):
            raise ValueError(f"mode must be train or eval, not {mode!r}")
        self.urls, self.decode, self.batch_size, self.mode = list(urls), decode, batch_size, mode
        self.seed, self.start_step, self.shuffle_buffer = seed, start_step, shuffle_buffer
        r, w = dist_info()
        self.rank, self.world = (r if rank is None else rank), (w if world is None else world)
        self.drop_last = mode == "train" if drop_last is None else drop_last
        self.limits = limits

    def _worker(self) -> tuple[int, int]:
        info = get_worker_info()
        return (info.id, info.num_workers) if info else (0, 1)

    def samples(self, worker: int | None = None, workers: int | None = None) -> Iterator[dict[str, Any]]:
        """Decoded samples of this rank and worker (``worker``/``workers`` override the DataLoader's, for tests)."""
        import webdataset as wds

        if worker is None:
            worker, workers = self._worker()
        reader = ShardReader(self.limits, who=f"loader worker {worker} of rank {self.rank}")
        if self.mode == "train":
            # One stream per (seed, rank, worker, start step): a resumed run draws a fresh, reproducible stream.
            rng = random.Random(int(np.random.SeedSequence([self.seed, self.rank, worker, self.start_step]).generate_state(1)[0]))
            nprng = np.random.default_rng(rng.getrandbits(64))
            raw = reader.stream(self._draw(rng, reader), strict=False)
            raw = wds.shuffle(self.shuffle_buffer, initial=min(self.shuffle_buffer, 100), rng=rng)(raw)
            for sample in raw:
                try:
                    yield self.decode(sample, nprng)
                except Exception as e:  # noqa: BLE001 - one bad sample must not stop a long run
                    reader.skip(sample.get("__key__"), sample.get("__url__"), f"{type(e).__name__}: {e}")
        else:
            mine = eval_slice(self.urls, self.rank, self.world, worker, workers)
            for sample in reader.stream(mine, strict=True):
                try:
                    # Eval randomness is per sample id, so it does not depend on how samples are split.
                    yield self.decode(sample, np.random.default_rng([self.seed, zlib.crc32(str(sample["__key__"]).encode())]))
                except Exception as e:  # noqa: BLE001 - a bad sample is skipped and counted here too (the trainer's validation batch)
                    reader.skip(sample.get("__key__"), sample.get("__url__"), f"{type(e).__name__}: {e}")

    def _draw(self, rng: random.Random, reader: ShardReader) -> Iterator[str]:
        """Shards drawn with replacement, leaving out those that failed their checksum in this worker."""
        good = self.urls
        while True:
            if reader.bad & set(good):
                good = [u for u in self.urls if u not in reader.bad]
                if not good:
                    raise ShardDataError(f"every shard of this run fails its sha256 check against index.json (e.g. {self.urls[0]})")
            yield rng.choice(good)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        batch: list[dict[str, Any]] = []
        for sample in self.samples():
            batch.append(sample)
            if len(batch) == self.batch_size:
                yield {**collate(batch), "skipped": take_skipped()}
                batch = []
        if batch and not self.drop_last:
            yield {**collate(batch), "skipped": take_skipped()}


_LIVE_ITERATORS: weakref.WeakSet = weakref.WeakSet()


def _stop_live_workers() -> None:
    """Main process, at exit: stop the workers of iterators still alive, before multiprocessing's own
    exit hook does. That hook SIGTERMs daemonic children and joins them, and torch's SIGCHLD handler
    then raises "DataLoader worker ... is killed by signal: Terminated" inside it: a traceback at the
    end of a script that simply stopped iterating (atexit is LIFO: registered after torch imported
    multiprocessing, this runs first)."""
    for iterator in list(_LIVE_ITERATORS):
        with contextlib.suppress(Exception):
            iterator._shutdown_workers()


atexit.register(_stop_live_workers)


class _Loader(DataLoader):
    """A DataLoader whose worker iterators are stopped cleanly at interpreter exit."""

    def _get_iterator(self):
        iterator = super()._get_iterator()
        if self.num_workers:
            _LIVE_ITERATORS.add(iterator)
        return iterator


def make_loader(stream: ShardStream, workers: int) -> DataLoader:
    """A DataLoader over a ShardStream (batches are built in the workers).

    Workers are spawned, not forked: a process that has used OpenCV's thread pool (any resize)
    deadlocks the forked workers' first OpenCV call (seen here: the workers hang forever).
    """
    return _Loader(
        stream,
        batch_size=None,
        num_workers=workers,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=False,
        worker_init_fn=_worker_init if workers else None,
        multiprocessing_context="spawn" if workers else None,
        prefetch_factor=4 if workers else None,
    )


def vm_loader(
    outs: list[str | Path],
    spec: SampleSpec,
    *,
    batch_size: int,
    mode: str = "train",
    split: str = "train",
    workers: int = 4,
    seed: int = 0,
    start_step: int = 0,
    shuffle_buffer: int = 1000,
    require: tuple[str, ...] = (),
    rank: int | None = None,
    world: int | None = None,
) -> DataLoader:
    """The VirtualModel loader over one or more build outputs, checked first (see ``check_members``)."""
    urls: list[str] = []
    for out in outs:
        found = shard_urls(out, split)
        check_members(out, found, spec, require)
        urls += found
    stream = ShardStream(
        urls,
        SampleDecoder(spec),
        batch_size=batch_size,
        mode=mode,
        seed=seed,
        start_step=start_step,
        shuffle_buffer=shuffle_buffer,
        rank=rank,
        world=world,
    )
    return make_loader(stream, workers)


def inspect_dataset(out: str | Path, split: str = "train", spec: SampleSpec | None = None):
    """Random access to a split's samples through wids: ``ds[i]`` is the raw sample (bytes by extension,
    keys without the leading dot), or decoded by ``spec`` (first product, centre crop) when given."""
    import wids

    shard_urls(out, split)  # the same clear error when there is nothing to look at
    index = Path(out) / f"index.{split}.json"
    decoder = SampleDecoder(spec) if spec is not None else None

    def transform(sample: dict[str, Any]) -> dict[str, Any]:
        # wids hands members over as streams, keyed ".ext".
        raw = {(k[1:] if k.startswith(".") else k): (v.getvalue() if hasattr(v, "getvalue") else v) for k, v in sample.items()}
        return decoder(raw, None) if decoder is not None else raw

    with contextlib.redirect_stdout(io.StringIO()):  # wids prints a summary line on construction
        return wids.ShardListDataset(str(index.resolve()), transformations=[transform], localname=lambda url: url)
