"""Batches for the training core from the shared shard stream (hoiforge.datasets.loader.ShardStream, train mode).

The shared stream does the reading: each rank and worker draws shards with replacement from its
own stream seeded by (seed, rank, worker, start step), shuffles samples in a buffer and skips a
sample that fails to decode. Here each raw sample becomes a ``ShoeLegSample`` (members decoded
lazily), a module's ``make_examples`` turns the stream into training examples (WD pools four
crops for a mosaic, so this is a stream-to-stream function, not a per-sample map) and the
examples are collated with torch's ``default_collate``. The core restarts the data at every
checkpoint, so a run resumed from one draws exactly the stream the uninterrupted run drew.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from torch.utils.data import DataLoader, default_collate

from hoiforge.datasets.loader import ShardStream
from hoiforge.datasets.loader import make_loader as shared_loader
from hoiforge.datasets.shard_read import count_skipped, take_skipped
from hoiforge.training.shoemodel.data import ShoeLegSample

log = logging.getLogger("hoiforge.training")

MakeExamples = Callable[[Iterator[ShoeLegSample], np.random.Generator], Iterator[dict[str, Any]]]


def _as_sample(raw: dict[str, Any], rng: np.random.Generator | None) -> ShoeLegSample:
    return ShoeLegSample.from_wds(raw)


def each(samples: Iterator[ShoeLegSample], derive: Callable[[ShoeLegSample], Any]) -> Iterator[Any]:
    """``derive(sample)`` for every sample, skipping (with a warning) samples whose members fail to decode; None is skipped too."""
    for sample in samples:
        try:
            out = derive(sample)
        except Exception as e:  # noqa: BLE001 - one bad sample must not stop a long run
            log.warning("skipped sample %s: %s: %s", sample.key, type(e).__name__, e)
            count_skipped()
            continue
        if out is not None:
            yield out


class ExampleStream(ShardStream):
    def __init__(self, urls: list[str], make_examples: MakeExamples, *, batch_size: int, seed: int, start_step: int, shuffle_buffer: int):
        super().__init__(
            urls, _as_sample, batch_size=batch_size, mode="train", seed=seed, start_step=start_step, shuffle_buffer=shuffle_buffer
        )
        self.make_examples = make_examples

    def __iter__(self) -> Iterator[dict[str, Any]]:
        worker, _ = self._worker()
        rng = np.random.default_rng([self.seed, self.rank, worker, self.start_step, 1])
        batch: list[dict[str, Any]] = []
        for example in self.make_examples(self.samples(), rng):
            batch.append(example)
            if len(batch) == self.batch_size:
                yield {**default_collate(batch), "skipped": take_skipped()}
                batch = []


def make_loader(
    urls: list[str], make: MakeExamples, batch_size: int, seed: int, start_step: int, shuffle_buffer: int, workers: int
) -> DataLoader:
    stream = ExampleStream(urls, make, batch_size=batch_size, seed=seed, start_step=start_step, shuffle_buffer=shuffle_buffer)
    return shared_loader(stream, workers)
