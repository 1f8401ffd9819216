"""Datasets torchvision downloads: MNIST, Fashion-MNIST, CIFAR-10.

Their official train split is cut into train/val (seeded, stratified); the official test split
is the test set, so ``test_fraction`` does not apply. When the files are missing and cannot be
downloaded (zoo may be offline), the DataError says exactly which files to put where.
"""

from __future__ import annotations

import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import torch
from torchvision import datasets

from zoo.data.images import ImageShaper, PILImageShaper
from zoo.data.splits import LabelledSubset, stratified_split, to_label
from zoo.datasets import IMAGE, DatasetInfo, DataSplits, LoadRequest
from zoo.errors import DataError, one_line

__all__ = [
    "DOWNLOADS",
    "Download",
    "load_cifar10",
    "load_download",
    "load_fashion_mnist",
    "load_mnist",
]

#: What a failed download or a missing/corrupt file raises inside torchvision
#: (URLError, socket errors and BadGzipFile are OSErrors; "Dataset not found" is a RuntimeError).
_FETCH_ERRORS: Final = (OSError, RuntimeError, EOFError, tarfile.TarError, pickle.UnpicklingError)

_MNIST_FILES: Final = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


@dataclass(frozen=True)
class Download:
    """One torchvision dataset: its class, what it holds, and where its files must lie."""

    info: DatasetInfo
    #: The class in ``torchvision.datasets``.
    torchvision_class: str
    #: Under the data folder: where torchvision looks for the files.
    folder: str
    #: The files expected in ``folder``.
    files: tuple[str, ...]
    #: How else the files can be supplied (archives torchvision unpacks without downloading).
    alternative: str


def _info(
    name: str, classes: tuple[str, ...], channels: int, size: int, what: str, url: str
) -> DatasetInfo:
    return DatasetInfo(
        name=name,
        kind=IMAGE,
        num_classes=len(classes),
        class_names=classes,
        description=what,
        source=url,
        channels=channels,
        image_size=(size, size),
    )


DOWNLOADS: Final[dict[str, Download]] = {
    "mnist": Download(
        info=_info(
            "mnist",
            tuple(str(d) for d in range(10)),
            1,
            28,
            "MNIST handwritten digits, 60,000 train + 10,000 test, 28x28 grey (torchvision)",
            "https://ossci-datasets.s3.amazonaws.com/mnist/ (mirror of yann.lecun.com/exdb/mnist)",
        ),
        torchvision_class="MNIST",
        folder="MNIST/raw",
        files=_MNIST_FILES,
        alternative="or the same names with .gz, which are unpacked when downloading is allowed",
    ),
    "fashion-mnist": Download(
        info=_info(
            "fashion-mnist",
            (
                "T-shirt/top",
                "Trouser",
                "Pullover",
                "Dress",
                "Coat",
                "Sandal",
                "Shirt",
                "Sneaker",
                "Bag",
                "Ankle boot",
            ),
            1,
            28,
            "Fashion-MNIST clothing, 60,000 train + 10,000 test, 28x28 grey (torchvision)",
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        ),
        torchvision_class="FashionMNIST",
        folder="FashionMNIST/raw",
        files=_MNIST_FILES,
        alternative="or the same names with .gz, which are unpacked when downloading is allowed",
    ),
    "cifar10": Download(
        info=_info(
            "cifar10",
            (
                "airplane",
                "automobile",
                "bird",
                "cat",
                "deer",
                "dog",
                "frog",
                "horse",
                "ship",
                "truck",
            ),
            3,
            32,
            "CIFAR-10, 50,000 train + 10,000 test, 32x32 colour, 10 classes (torchvision)",
            "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        ),
        torchvision_class="CIFAR10",
        folder="cifar-10-batches-py",
        files=(
            "batches.meta",
            "data_batch_1",
            "data_batch_2",
            "data_batch_3",
            "data_batch_4",
            "data_batch_5",
            "test_batch",
        ),
        alternative=(
            "or cifar-10-python.tar.gz itself in the data folder, which is unpacked when "
            "downloading is allowed"
        ),
    ),
}


def _failure(download: Download, root: Path, allowed: bool, error: BaseException) -> DataError:
    name = download.info.name
    reason = one_line(error)
    folder = root / download.folder
    if allowed:
        tried = f"zoo tried to download it from {download.info.source} and failed ({reason})"
        tried += "; zoo may be offline"
    else:
        tried = f"its files are not in {root} and downloading was turned off ({reason})"
    return DataError(
        f"cannot load dataset {name!r}: {tried}. To use it offline, put "
        f"{', '.join(download.files)} in {folder}/ ({download.alternative}), then rerun; "
        "or rerun with network access and downloading allowed"
    )


def load_download(request: LoadRequest, download: Download) -> DataSplits:
    """Load ``download`` from ``request.data_dir``, fetching it first when allowed."""
    request.check(download.info)
    root = Path(request.data_dir).expanduser()
    cls: Any = getattr(datasets, download.torchvision_class)
    transform = PILImageShaper(ImageShaper(request.input))
    try:
        official: list[Any] = [
            cls(
                str(root),
                train=train,
                download=request.download,
                transform=transform,
                target_transform=to_label,
            )
            for train in (True, False)
        ]
    except _FETCH_ERRORS as exc:
        raise _failure(download, root, request.download, exc) from exc
    train_set, test_set = official
    train_labels = torch.as_tensor(train_set.targets, dtype=torch.int64)
    test_labels = torch.as_tensor(test_set.targets, dtype=torch.int64)
    train, val = stratified_split(train_labels, (request.val_fraction,), request.seed)
    return DataSplits(
        train=LabelledSubset(train_set, train, train_labels[train]),
        val=LabelledSubset(train_set, val, train_labels[val]),
        test=LabelledSubset(test_set, torch.arange(len(test_labels)), test_labels),
        info=download.info,
    )


def load_mnist(request: LoadRequest) -> DataSplits:
    return load_download(request, DOWNLOADS["mnist"])


def load_fashion_mnist(request: LoadRequest) -> DataSplits:
    return load_download(request, DOWNLOADS["fashion-mnist"])


def load_cifar10(request: LoadRequest) -> DataSplits:
    return load_download(request, DOWNLOADS["cifar10"])
