"""The building blocks: stratified_split and ImageShaper."""

from __future__ import annotations

import pytest
import torch

from zoo.data.images import ImageShaper
from zoo.data.splits import check_fractions, stratified_split
from zoo.errors import UsageError
from zoo.registry import InputSpec


def test_stratified_split_partitions_every_class() -> None:
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 7)
    train, val, test = stratified_split(labels, (0.1, 0.2), seed=0)
    every = torch.cat([train, val, test])
    assert sorted(every.tolist()) == list(range(len(labels)))
    assert torch.bincount(labels[val]).tolist() == [5, 3, 1]
    assert torch.bincount(labels[test]).tolist() == [10, 6, 1]
    assert all(torch.equal(p, p.sort().values) for p in (train, val, test))


def test_stratified_split_is_reproducible_per_seed() -> None:
    labels = torch.arange(100) % 4
    first = stratified_split(labels, (0.25,), seed=7)
    again = stratified_split(labels, (0.25,), seed=7)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[1], stratified_split(labels, (0.25,), seed=8)[1])


@pytest.mark.parametrize(
    ("count", "expected"), [(1, [1, 0, 0]), (2, [2, 0, 0]), (3, [1, 1, 1]), (4, [2, 1, 1])]
)
def test_small_classes_keep_a_train_sample(count: int, expected: list[int]) -> None:
    parts = stratified_split(torch.zeros(count, dtype=torch.long), (0.1, 0.1), seed=0)
    assert [len(p) for p in parts] == expected


def test_zero_fractions_give_empty_parts() -> None:
    train, val = stratified_split(torch.arange(10) % 2, (0.0,), seed=0)
    assert len(train) == 10 and len(val) == 0 and val.dtype == torch.int64


def test_check_fractions() -> None:
    check_fractions(val_fraction=0.0, test_fraction=0.5)
    with pytest.raises(UsageError, match="leaves nothing to train on"):
        check_fractions(val_fraction=0.6, test_fraction=0.4)


def test_shaper_resizes_repeats_and_normalises() -> None:
    spec = InputSpec.image((3, 4, 4), mean=(0.5,), std=(0.25,))
    pixels = torch.full((1, 8, 8), 255, dtype=torch.uint8)
    out = ImageShaper(spec)(pixels)
    assert out.shape == (3, 4, 4) and out.dtype == torch.float32
    assert torch.allclose(out, torch.full((3, 4, 4), 2.0))


def test_shaper_downsizing_is_antialiased_and_stays_in_range() -> None:
    # A one-pixel checkerboard averages to grey when antialiased (plain bilinear aliases).
    board = ((torch.arange(64).view(8, 8) + torch.arange(8).view(8, 1)) % 2).float()
    out = ImageShaper(InputSpec((1, 2, 2)))(board.view(1, 1, 8, 8))
    assert out.shape == (1, 1, 2, 2)
    assert torch.allclose(out, torch.full_like(out, 0.5), atol=0.05)
    assert out.min() >= 0 and out.max() <= 1


def test_shaper_batches_agree_with_single_images() -> None:
    shaper = ImageShaper(InputSpec.image((3, 10, 10), mean=(0.4, 0.5, 0.6), std=(0.2, 0.3, 0.4)))
    batch = torch.rand(5, 1, 7, 7)
    whole = shaper.shape_all(batch, chunk=2)
    assert torch.allclose(whole[3], shaper(batch[3]))
