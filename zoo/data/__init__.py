"""Datasets for training and evaluating zoo models.

``load_dataset("mnist5k", zoo.get_spec("lenet").input)`` gives train/val/test splits whose
samples are shaped exactly for the model; ``list_datasets()`` names what can be loaded.
Embedded datasets (``mnist5k``, ``digits``, ``names``) work offline; ``mnist``,
``fashion-mnist`` and ``cifar10`` download through torchvision; ``imagefolder:PATH`` and
``textfolder:PATH`` read your own files.

Importing this package is cheap: torch and the dataset libraries load with the first dataset.
"""

from __future__ import annotations

from zoo.data.base import (
    DatasetInfo,
    DataSplits,
    LoadRequest,
    check_compatible,
    default_data_dir,
    labels_of,
)
from zoo.data.registry import (
    DatasetEntry,
    DatasetRegistry,
    Loader,
    default_dataset_registry,
    list_datasets,
    load_dataset,
)

__all__ = [
    "DataSplits",
    "DatasetEntry",
    "DatasetInfo",
    "DatasetRegistry",
    "LoadRequest",
    "Loader",
    "check_compatible",
    "default_data_dir",
    "default_dataset_registry",
    "labels_of",
    "list_datasets",
    "load_dataset",
]
