"""How batches are read: embedded datasets as tensors, others through a DataLoader with
worker processes chosen by what the dataset is."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import Dataset, TensorDataset

import zoo
from zoo.data import load_dataset
from zoo.data.images import LazyImageDataset
from zoo.train import TrainConfig, Trainer
from zoo.train import batches as batches_module
from zoo.train.batches import Batches, default_workers


class OnDisk(Dataset[Any]):
    """Stands for a folder of files: items fetched one by one, nothing said about memory."""

    def __len__(self) -> int:
        return 10

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.full((2,), float(index)), torch.tensor(index)


class Held(OnDisk):
    in_memory = True


def test_default_workers_is_one_per_usable_core_at_most_8(monkeypatch: pytest.MonkeyPatch) -> None:
    cores = len(os.sched_getaffinity(0))
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert default_workers() == min(8, cores) >= 1
    # Processes of one data-parallel job on this machine share its cores.
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(cores))
    assert default_workers() == 1
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(4 * cores))
    assert default_workers() == 1  # always one at least


def test_workers_by_default_only_for_datasets_read_from_disk() -> None:
    assert Batches(OnDisk(), 4, shuffle=False, num_workers=None).num_workers == default_workers()
    assert Batches(Held(), 4, shuffle=False, num_workers=None).num_workers == 0
    tensors = TensorDataset(torch.zeros(10, 2), torch.zeros(10))
    assert Batches(tensors, 4, shuffle=False, num_workers=None).num_workers == 0
    assert Batches(OnDisk(), 4, shuffle=False, num_workers=3).num_workers == 3  # as given


def test_a_dataset_read_in_workers_gives_the_batches_it_gives_without() -> None:
    alone = Batches(OnDisk(), 4, shuffle=True, seed=1, num_workers=0)
    workers = Batches(OnDisk(), 4, shuffle=True, seed=1, num_workers=2)
    for a, b in zip(alone.epoch(1), workers.epoch(1), strict=True):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_zoos_in_memory_datasets_say_so() -> None:
    names = load_dataset("names", zoo.get_spec("lstm").input)
    assert names.train.in_memory is True  # type: ignore[attr-defined]
    lazy = LazyImageDataset(torch.zeros(2, 1, 8, 8, dtype=torch.uint8), torch.zeros(2), None)  # type: ignore[arg-type]
    assert lazy.in_memory is True


@pytest.mark.parametrize(("model", "data"), [("lenet", "mnist5k"), ("resnet", "digits")])
def test_embedded_images_are_sliced_as_tensors_end_to_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model: str, data: str
) -> None:
    splits = load_dataset(data, zoo.get_spec(model).input)
    for split in (splits.train, splits.val, splits.test):
        assert isinstance(split, TensorDataset)
    loaders: list[Any] = []
    real = batches_module.DataLoader
    monkeypatch.setattr(
        batches_module, "DataLoader", lambda *a, **k: loaders.append(k) or real(*a, **k)
    )
    config = TrainConfig(
        model,
        data=data,
        epochs=1,
        batch_size=512,
        out=str(tmp_path),
        tensorboard=False,
        progress=False,
    )
    Trainer(config, echo=lambda _: None).fit()
    assert loaders == []  # training, evaluation and the test split: no DataLoader at all
