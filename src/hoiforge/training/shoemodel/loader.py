"""Batches for the training core: shoe-leg samples streamed from shards, turned into a module's examples, shuffled, collated.

``data(start_step)`` of the core returns ``make_loader(...)``: an endless torch DataLoader over an
``IterableDataset`` whose workers each read shards at random (webdataset's resampled mode) with
their own RNG, seeded from (config seed, start step, rank, worker). A resumed run therefore
continues with a fresh draw of the data rather than replaying the stream (the weights, optimizer
and per-step noise are restored exactly by the core).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, default_collate, get_worker_info

from hoiforge.training.shoemodel.data import ShoeLegSample, stream

MakeExamples = Callable[[Iterator[ShoeLegSample], np.random.Generator], Iterator[dict[str, Any]]]


def shuffled(items: Iterator[Any], buffer: int, rng: np.random.Generator) -> Iterator[Any]:
    """A reservoir shuffle over ``buffer`` items (as webdataset's ``shuffle``)."""
    pool: list[Any] = []
    for item in items:
        if len(pool) < buffer:
            pool.append(item)
            continue
        i = int(rng.integers(0, len(pool)))
        pool[i], item = item, pool[i]
        yield item
    rng.shuffle(pool)
    yield from pool


class ExampleStream(IterableDataset):
    def __init__(self, urls: list[str], make_examples: MakeExamples, batch_size: int, seed: int, shuffle_buffer: int):
        super().__init__()
        self.urls, self.make_examples = list(urls), make_examples
        self.batch_size, self.seed, self.shuffle_buffer = batch_size, seed, shuffle_buffer

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker = info.id if info is not None else 0
        rank = int(os.environ.get("RANK", "0"))
        rng = np.random.default_rng([self.seed, rank, worker])
        samples = stream(self.urls, seed=int(rng.integers(0, 2**31 - 1)), resampled=True)
        examples = shuffled(self.make_examples(samples, rng), self.shuffle_buffer, rng)
        batch: list[dict[str, Any]] = []
        for example in examples:
            batch.append(example)
            if len(batch) == self.batch_size:
                yield default_collate(batch)
                batch = []


def make_loader(
    urls: list[str], make_examples: MakeExamples, batch_size: int, seed: int, shuffle_buffer: int, num_workers: int
) -> DataLoader:
    dataset = ExampleStream(urls, make_examples, batch_size, seed, shuffle_buffer)
    return DataLoader(dataset, batch_size=None, num_workers=num_workers, pin_memory=torch.cuda.is_available())
