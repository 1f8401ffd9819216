"""Batches in a reproducible order that a resumed run can pick up mid-epoch.

The order of epoch ``e`` depends only on ``(seed, e)``, never on what ran before, so a run
resumed at epoch ``e``, batch ``k`` sees exactly the batches an uninterrupted run would.
In-memory tensor datasets are sliced directly (no per-sample ``__getitem__``, no collate):
the plain hand-written loop of the notes, which a DataLoader would slow down.

In a data-parallel run each process takes its share of the epoch's order as
``DistributedSampler`` does (:func:`zoo.train.distributed.shard`); positions count in the
epoch's whole order, so a run resumed with another number of processes starts at the same
sample.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from zoo.train.distributed import shard
from zoo.train.reproducibility import seed_worker

__all__ = ["Batches"]


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
    """Iterates one dataset in (optionally shuffled) batches, starting at any batch."""

    def __init__(
        self,
        dataset: Dataset[Any],
        batch_size: int,
        *,
        shuffle: bool,
        seed: int = 0,
        collate_fn: Callable[..., Any] | None = None,
        num_workers: int = 0,
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
        self.num_workers = num_workers
        self.tensors = _as_tensors(dataset) if collate_fn is None else None
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
            worker_init_fn=seed_worker if self.num_workers else None,
            generator=torch.Generator().manual_seed(self.seed + epoch),
        )
        yield from loader
