"""The two calls everything else uses: :func:`list_datasets` and :func:`load_dataset`, over
the datasets plugins registered (zoo's own through ``zoo.plugins.builtin_datasets``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from zoo._pluginmanager import get_plugins
from zoo.data.splits import check_fractions
from zoo.datasets import (
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


def default_dataset_registry() -> DatasetRegistry:
    """The process-wide registry: zoo's datasets and every plugin's (``zoo_register_datasets``)."""
    return get_plugins().datasets


def list_datasets(registry: DatasetRegistry | None = None) -> list[tuple[str, str]]:
    """``(name, one-line description)`` of every dataset, sorted by name."""
    if registry is None:
        registry = default_dataset_registry()
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
    if registry is None:
        registry = default_dataset_registry()
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
