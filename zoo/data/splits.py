"""Seeded, class-stratified splits and the small datasets that hold them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from zoo.errors import UsageError

__all__ = [
    "LabelledSubset",
    "check_fractions",
    "stratified_split",
    "to_label",
]


def check_fractions(**fractions: float) -> None:
    """Raise UsageError unless each fraction is in [0, 1) and together they leave a train set."""
    for name, value in fractions.items():
        if not 0.0 <= value < 1.0:
            raise UsageError(f"{name}={value!r} must be at least 0 and below 1")
    if sum(fractions.values()) >= 1.0:
        listed = " + ".join(f"{k}={v:g}" for k, v in fractions.items())
        raise UsageError(f"{listed} leaves nothing to train on; keep the sum below 1")


def _share(count: int, fraction: float) -> int:
    # Round half up: Python's round() would send 0.5 to 0 and 2.5 to 2.
    share = int(count * fraction + 0.5)
    # Every class shows up in a non-empty held-out split once it has a few samples.
    if fraction > 0 and share == 0 and count >= 3:
        share = 1
    return share


def stratified_split(labels: Tensor, fractions: Sequence[float], seed: int) -> list[Tensor]:
    """Split sample indices by class: ``[rest, part_1, ..., part_k]`` for ``k`` fractions.

    Each class is shuffled with ``seed`` and cut in the given fractions (at least one sample
    per held-out part once a class has 3 or more), so every split has the dataset's class
    balance. The same labels and seed always give the same sorted index tensors.
    """
    labels = torch.as_tensor(labels, dtype=torch.int64)
    generator = torch.Generator().manual_seed(seed)
    parts: list[list[Tensor]] = [[] for _ in range(len(fractions) + 1)]
    for cls in torch.unique(labels).tolist():
        members = torch.nonzero(labels == cls).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        shares = [_share(len(members), f) for f in fractions]
        # The train part keeps at least one sample of every class.
        while shares and sum(shares) > max(len(members) - 1, 0):
            shares[shares.index(max(shares))] -= 1
        cursor = 0
        for i, share in enumerate(shares):
            parts[i + 1].append(members[cursor : cursor + share])
            cursor += share
        parts[0].append(members[cursor:])
    empty = torch.empty(0, dtype=torch.int64)
    return [torch.sort(torch.cat(p)).values if p else empty for p in parts]


def to_label(target: int) -> Tensor:
    """A class index as the int64 scalar tensor every split yields."""
    return torch.tensor(target, dtype=torch.int64)


class LabelledSubset(Dataset[Any]):
    """``dataset[indices[i]]``, with the labels of those samples known without loading them."""

    def __init__(self, dataset: Dataset[Any], indices: Tensor, labels: Tensor) -> None:
        self.dataset = dataset
        self.indices = indices.tolist()
        #: int64 ``[len(self)]``: the class of each item, in order.
        self.labels = labels

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> Any:
        return self.dataset[self.indices[index]]
