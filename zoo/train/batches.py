"""Batches in a reproducible order that a resumed run can pick up mid-epoch.

The order of epoch ``e`` depends only on ``(seed, e)``, never on what ran before, so a run
resumed at epoch ``e``, batch ``k`` sees exactly the batches an uninterrupted run would.
In-memory tensor datasets are sliced directly (no per-sample ``__getitem__``, no collate):
the plain hand-written loop of PyTorch's tutorials, which a DataLoader would slow down. Other
datasets go through a DataLoader: with worker processes (by default one per CPU core, at most 8) for
datasets read from disk, where decoding and resizing dominate, none for datasets that say
they are held in memory (``in_memory = True``: zoo's token and lazily shaped image datasets,
whose items cost microseconds to fetch); pinned memory when training on CUDA. Measured on a
shared 2-core machine, 1,000 grey 320x240 JPEGs for LeNet: 70-80 samples/s read in the
training process (its 2 OpenMP threads stall on tiny per-image tensor operations), 200-280
with one or two workers (a worker runs one thread). Workers are started for each epoch
(0.1-0.2 s here), seeded from ``(seed, epoch)``, rather than kept (``persistent_workers``):
a resumed run's workers then draw what an uninterrupted run's did.

In a data-parallel run each process takes its share of the epoch's order as
``DistributedSampler`` does (:func:`zoo.train.distributed.shard`); positions count in the
epoch's whole order, so a run resumed with another number of processes starts at the same
sample.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from zoo.train.distributed import shard
from zoo.train.reproducibility import seed_worker

__all__ = ["Batches", "default_workers"]


def default_workers() -> int:
    """DataLoader workers for a dataset read from disk: one per CPU this process may run on,
    shared with the other training processes of this machine (torchrun's
    ``LOCAL_WORLD_SIZE``), at most 8 (beyond the CPU count PyTorch warns; beyond 8 few
    datasets gain)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    try:
        processes = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        processes = 1
    return max(1, min(8, cpus // processes))


def _as_tensors(dataset: Dataset[Any]) -> tuple[torch.Tensor, ...] | None:
    """The underlying tensors of a TensorDataset (or a Subset of one), else None."""
    if isinstance(dataset, TensorDataset):
        return tuple(dataset.tensors)
    if isinstance(dataset, Subset):
        inner = _as_tensors(dataset.dataset)
        if inner is not None:
            index = torch.as_tensor(dataset.indices, dtype=torch.long)
            return tuple(t[index] for t in inner)
    return None


class Batches:
    """Iterates one dataset in (optionally shuffled) batches, starting at any batch.

    ``num_workers`` None: :func:`default_workers` for a dataset read from disk, none for one
    held in memory (a TensorDataset, or a dataset whose ``in_memory`` is true)."""

    def __init__(
        self,
        dataset: Dataset[Any],
        batch_size: int,
        *,
        shuffle: bool,
        seed: int = 0,
        collate_fn: Callable[..., Any] | None = None,
        num_workers: int | None = 0,
        pin_memory: bool = False,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        self.dataset = dataset
        self.rank = rank
        self.world = world
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.collate_fn = collate_fn
        self.tensors = _as_tensors(dataset) if collate_fn is None else None
        if num_workers is None:
            held = self.tensors is not None or getattr(dataset, "in_memory", False)
            num_workers = 0 if held else default_workers()
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.size = len(dataset)  # type: ignore[arg-type]

    def __len__(self) -> int:
        """Batches per epoch for one process."""
        share = -(-self.size // self.world)  # every process gets as many (padded)
        return -(-share // self.batch_size)

    @property
    def step_size(self) -> int:
        """Positions of the epoch's order one step of every process consumes."""
        return self.batch_size * self.world

    def order(self, epoch: int) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.size)
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        return torch.randperm(self.size, generator=generator)

    def remaining(self, start: int) -> int:
        """Batches left for one process from position ``start`` of an epoch."""
        share = len(shard(torch.arange(self.size), start, self.rank, self.world))
        return -(-share // self.batch_size)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Any]:
        """This process's batches of ``epoch`` from position ``start`` of its order on (a
        multiple of :attr:`step_size` where the run stopped between steps)."""
        order = shard(self.order(epoch), start, self.rank, self.world)
        if self.tensors is not None:
            for begin in range(0, len(order), self.batch_size):
                index = order[begin : begin + self.batch_size]
                yield tuple(t[index] for t in self.tensors)
            return
        loader = DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            sampler=order.tolist(),
            collate_fn=self.collate_fn,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            worker_init_fn=seed_worker if self.num_workers else None,
            generator=torch.Generator().manual_seed(self.seed + epoch),
        )
        yield from loader
