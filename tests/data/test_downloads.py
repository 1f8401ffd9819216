"""mnist / fashion-mnist / cifar10 through torchvision, without ever touching the network."""

from __future__ import annotations

import struct
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import torch

from zoo.data import load_dataset
from zoo.datasets import labels_of
from zoo.errors import DataError
from zoo.registry import InputSpec


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every URL open fails, as on a machine without network: nothing here may download."""

    def urlopen(*args: Any, **kwargs: Any) -> Any:
        raise urllib.error.URLError("network disabled by the test")

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)


@pytest.mark.parametrize(
    ("name", "folder", "a_file"),
    [
        ("mnist", "MNIST/raw", "train-images-idx3-ubyte"),
        ("fashion-mnist", "FashionMNIST/raw", "t10k-labels-idx1-ubyte"),
        ("cifar10", "cifar-10-batches-py", "data_batch_1"),
    ],
)
def test_missing_files_without_download_say_where_to_put_them(
    tmp_path: Path, name: str, folder: str, a_file: str, vae_input: InputSpec
) -> None:
    with pytest.raises(DataError) as caught:
        load_dataset(name, vae_input, data_dir=tmp_path, download=False)
    message = str(caught.value)
    assert f"{tmp_path / folder}/" in message
    assert a_file in message
    assert "downloading was turned off" in message
    assert "\n" not in message


def test_failed_download_says_zoo_may_be_offline(tmp_path: Path, lenet_input: InputSpec) -> None:
    # The real torchvision download path runs and meets the disabled network.
    with pytest.raises(DataError) as caught:
        load_dataset("mnist", lenet_input, data_dir=tmp_path, download=True)
    message = str(caught.value)
    assert "tried to download" in message and "offline" in message
    assert f"{tmp_path / 'MNIST' / 'raw'}/" in message
    assert "train-images-idx3-ubyte" in message
    assert "network access" in message
    assert "\n" not in message


def test_download_raising_urlerror_gives_the_same_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, vae_input: InputSpec
) -> None:
    from torchvision import datasets

    def download(self: Any) -> None:
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(datasets.CIFAR10, "download", download)
    with pytest.raises(DataError) as caught:
        load_dataset("cifar10", vae_input, data_dir=tmp_path)
    message = str(caught.value)
    assert "URLError" in message and "offline" in message
    assert str(tmp_path / "cifar-10-batches-py") in message
    assert "cifar-10-python.tar.gz" in message


def write_idx(folder: Path, prefix: str, labels: list[int]) -> None:
    """MNIST's idx format: a big-endian header, then uint8 pixels or labels."""
    count = len(labels)
    images = bytearray()
    for i, label in enumerate(labels):
        images += bytes([min(255, 20 * label + i % 7)]) * (28 * 28)
    (folder / f"{prefix}-images-idx3-ubyte").write_bytes(
        b"\x00\x00\x08\x03" + struct.pack(">III", count, 28, 28) + bytes(images)
    )
    (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(
        b"\x00\x00\x08\x01" + struct.pack(">I", count) + bytes(labels)
    )


@pytest.mark.parametrize(
    ("name", "folder"), [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")]
)
def test_files_in_place_load_offline(
    tmp_path: Path, name: str, folder: str, vae_input: InputSpec
) -> None:
    raw = tmp_path / folder / "raw"
    raw.mkdir(parents=True)
    write_idx(raw, "train", [i % 10 for i in range(60)])
    write_idx(raw, "t10k", [i % 10 for i in range(20)])
    splits = load_dataset(name, vae_input, data_dir=tmp_path, download=False, seed=4)
    # The official train split gives train and val (10% per class); test is the official one.
    assert [len(s) for s in (splits.train, splits.val, splits.test)] == [50, 10, 20]
    assert torch.bincount(labels_of(splits.val)).tolist() == [1] * 10
    assert labels_of(splits.test).tolist() == [i % 10 for i in range(20)]
    x, y = splits.val[3]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    assert y.dtype == torch.int64 and y.shape == () and y == labels_of(splits.val)[3]
    assert x.min() >= -1.0 and x.max() <= 1.0
    assert splits.info.num_classes == 10 and splits.info.name == name
    other = load_dataset(name, vae_input, data_dir=tmp_path, download=False, seed=5)
    assert other.val.indices != splits.val.indices  # type: ignore[attr-defined]
