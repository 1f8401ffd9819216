"""Datasets as zoo sees them: what a loaded dataset is (:class:`DatasetInfo`,
:class:`DataSplits`), what a loader is asked for (:class:`LoadRequest`), whether a dataset fits
a model (:func:`check_compatible`), and the registry of dataset names (:class:`DatasetRegistry`)
that plugins fill through ``zoo_register_datasets``. The loaders themselves live in
``zoo.data``.

Importing this module does not import torch.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from zoo.errors import DataMismatchError, InvalidSpecError, UnknownDatasetError
from zoo.registry import Registry, check_name, suggest

if TYPE_CHECKING:
    from torch import Tensor
    from torch.utils.data import Dataset

    from zoo.registry import InputSpec

__all__ = [
    "DATA_DIR_ENV",
    "IMAGE",
    "TOKENS",
    "DataSplits",
    "DatasetEntry",
    "DatasetInfo",
    "DatasetRegistry",
    "LoadRequest",
    "Loader",
    "check_compatible",
    "default_data_dir",
    "labels_of",
]

#: Environment variable that overrides :func:`default_data_dir`.
DATA_DIR_ENV: Final = "ZOO_DATA_DIR"

IMAGE: Final = "image"
TOKENS: Final = "tokens"
#: Model input dtypes read as images (uint8: raw pixels, for models that normalise themselves).
_IMAGE_DTYPES: Final = frozenset({"float32", "float16", "bfloat16", "float64", "uint8"})
_TOKEN_DTYPES: Final = frozenset({"int64", "int32"})


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset holds, known before (or without) iterating over it."""

    #: The name it was loaded under: ``mnist5k``, ``imagefolder:/data/ants``.
    name: str
    #: ``"image"`` or ``"tokens"`` (plugins may add kinds; :func:`check_compatible` skips those).
    kind: str
    num_classes: int
    class_names: tuple[str, ...]
    description: str
    #: Where the samples come from: a package file, a URL, a path.
    source: str
    #: Tokens only: size of the id space, padding (0) and unknown (1) included.
    vocab_size: int | None = None
    #: Tokens only: id -> character; ids 0 and 1 are ``"<pad>"`` and ``"<unk>"``.
    vocabulary: tuple[str, ...] | None = None
    #: Tokens only: the longest sequence in any split.
    max_length: int | None = None
    #: Images only: channels of the stored images (1 grey, 3 colour), before any shaping.
    channels: int | None = None
    #: Images only: ``(height, width)`` of the stored images (image folders: of the first one).
    image_size: tuple[int, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, for run records and ``zoo datasets --json``."""
        return {
            "name": self.name,
            "kind": self.kind,
            "num_classes": self.num_classes,
            "class_names": list(self.class_names),
            "description": self.description,
            "source": self.source,
            "vocab_size": self.vocab_size,
            "vocabulary": list(self.vocabulary) if self.vocabulary is not None else None,
            "max_length": self.max_length,
            "channels": self.channels,
            "image_size": list(self.image_size) if self.image_size is not None else None,
        }


@dataclass
class DataSplits:
    """Train/validation/test datasets whose items are ``(x, y)``: ``x`` shaped for the model,
    ``y`` an int64 scalar tensor."""

    train: Dataset[Any]
    val: Dataset[Any]
    test: Dataset[Any]
    info: DatasetInfo
    #: Tokens: pads a batch on the right with 0 to ``(LongTensor[B, T], LongTensor[B])``.
    #: ``None`` for images, whose items stack as they are.
    collate_fn: Callable[..., Any] | None = None


@dataclass(frozen=True)
class LoadRequest:
    """Everything a loader is asked for; loaders call :meth:`check` before any heavy work."""

    #: The full name asked for, argument included: ``imagefolder:/data/ants``.
    name: str
    #: What follows ``name:`` for datasets that take one (a path), else ``None``.
    argument: str | None
    input: InputSpec
    data_dir: Path
    download: bool
    seed: int
    val_fraction: float
    test_fraction: float

    def check(self, info: DatasetInfo) -> None:
        """Raise DataMismatchError if ``info`` does not fit the model input."""
        check_compatible(info, self.input)


def default_data_dir() -> Path:
    """``$ZOO_DATA_DIR``, else ``~/.cache/zoo/data`` (not created here)."""
    configured = os.environ.get(DATA_DIR_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path("~/.cache/zoo/data").expanduser()


def labels_of(dataset: Dataset[Any]) -> Tensor:
    """The int64 labels of a split from :func:`zoo.data.load_dataset`, without loading its
    samples (for class counts and weights); TypeError for datasets that do not expose them."""
    from torch import Tensor
    from torch.utils.data import TensorDataset

    labels: object = (
        dataset.tensors[-1]
        if isinstance(dataset, TensorDataset)
        else getattr(dataset, "labels", None)
    )
    if not isinstance(labels, Tensor):
        raise TypeError(f"{type(dataset).__name__} does not expose its labels")
    return labels


def check_compatible(info: DatasetInfo, input: InputSpec) -> None:
    """Raise DataMismatchError, saying what would fit, if the dataset cannot feed the model.

    Images fit float (or uint8) ``[C, H, W]`` inputs of the same channel count; grey images
    also fit 3-channel models (the channel is repeated). Sizes never mismatch: images are
    resized. Tokens fit int64/int32 ``[T]`` inputs; vocabulary size and class count are not
    checked, since the trainer builds the model from the dataset's.
    """
    if info.kind == IMAGE:
        _check_image(info, input)
    elif info.kind == TOKENS:
        _check_tokens(info, input)
    # Kinds added by plugins are theirs to check.


def _takes_images(input: InputSpec) -> bool:
    return len(input.shape) == 3 and input.dtype in _IMAGE_DTYPES


def _takes_tokens(input: InputSpec) -> bool:
    return len(input.shape) == 1 and input.dtype in _TOKEN_DTYPES


def _check_image(info: DatasetInfo, input: InputSpec) -> None:
    if _takes_tokens(input):
        raise DataMismatchError(
            f"dataset {info.name!r} holds images, but the model takes token ids "
            f"{input.describe()}; use a token dataset such as `--data names` "
            "(or `--data textfolder:PATH`)"
        )
    if not _takes_images(input):
        raise DataMismatchError(
            f"dataset {info.name!r} holds [C, H, W] images, but the model takes "
            f"{input.describe()}; no dataset loader shapes images into that"
        )
    wanted = input.shape[0]
    have = info.channels
    if have is None or have == wanted or (have == 1 and wanted == 3):
        return
    if wanted == 1 and have == 3:
        raise DataMismatchError(
            f"dataset {info.name!r} has 3-channel (colour) images, but the model takes 1 "
            "channel; build it with 3 input channels (`--arg in_channels=3`) or pick a grey "
            "dataset such as `--data mnist5k`"
        )
    raise DataMismatchError(
        f"dataset {info.name!r} has {have}-channel images, but the model takes {wanted}-channel "
        f"input {input.describe()}; pick a model with {have} (or 3) input channels"
    )


def _check_tokens(info: DatasetInfo, input: InputSpec) -> None:
    if _takes_images(input):
        example = "`--data mnist5k` (grey) or `--data cifar10` (colour)"
        raise DataMismatchError(
            f"dataset {info.name!r} holds int64 token ids, but the model takes images "
            f"{input.describe()}; use an image dataset such as {example}"
        )
    if not _takes_tokens(input):
        raise DataMismatchError(
            f"dataset {info.name!r} holds int64 token sequences [T], but the model takes "
            f"{input.describe()}; use a sequence model such as `lstm`"
        )
    # A model whose time axis is not dynamic takes exactly shape[0] tokens: longer names
    # would have to be cut, which silently changes the task.
    fixed = 1 not in input.dynamic_axes
    if fixed and info.max_length is not None and info.max_length > input.shape[0]:
        raise DataMismatchError(
            f"dataset {info.name!r} has sequences up to {info.max_length} tokens, but the model "
            f"takes exactly {input.shape[0]}; build it with a dynamic or longer time axis"
        )


#: Reads a :class:`LoadRequest` and returns the splits; calls ``request.check(info)`` as soon
#: as it knows its DatasetInfo, before reading the bulk of the data.
Loader = Callable[[LoadRequest], DataSplits]


@dataclass(frozen=True)
class DatasetEntry:
    """One registered dataset."""

    name: str
    #: The loader, or ``"module:function"`` naming it (imported on first use).
    loader: Loader | str
    #: One line for ``zoo datasets``.
    description: str
    #: What follows ``name:`` (``"PATH"``) for datasets that take an argument, else ``None``.
    argument: str | None = None
    #: ``"image"``/``"tokens"`` when known without loading: lets a mismatch fail at once.
    kind: str | None = None
    #: Images: channels when known without loading.
    channels: int | None = None
    #: The plugin that registered it (empty for built-ins).
    plugin: str = ""

    @property
    def display_name(self) -> str:
        """``mnist5k``, or ``imagefolder:PATH`` for datasets that take an argument."""
        return f"{self.name}:{self.argument}" if self.argument else self.name

    def resolve(self) -> Loader:
        """The loader function, importing it if it was registered by path."""
        if not isinstance(self.loader, str):
            return self.loader
        module, _, function = self.loader.partition(":")
        loader: Loader = getattr(importlib.import_module(module), function)
        return loader


class DatasetRegistry:
    """Maps dataset names to loaders; plugins add theirs through ``zoo_register_datasets``
    with :meth:`register`."""

    def __init__(self) -> None:
        #: dataset name (without its ``:argument``) -> entry
        self._entries: Registry[DatasetEntry] = Registry("dataset", unknown=UnknownDatasetError)

    def register(
        self,
        name: str,
        loader: Loader | str,
        description: str,
        *,
        argument: str | None = None,
        kind: str | None = None,
        channels: int | None = None,
        plugin: str = "",
    ) -> DatasetEntry:
        """Add a dataset. ``loader`` is a function or ``"module:function"`` (imported on
        first use); InvalidSpecError if ``name`` or ``loader`` is malformed, DuplicateNameError
        (naming both plugins) if ``name`` is taken."""
        return self.add(DatasetEntry(name, loader, description, argument, kind, channels, plugin))

    def check_free(self, entry: DatasetEntry, *, plugin: str = "") -> None:
        """Raise like :meth:`register` would for ``entry``, without adding it."""
        self._check(entry)
        self._entries.check_free(entry, plugin=plugin or entry.plugin)

    def add(self, entry: DatasetEntry) -> DatasetEntry:
        """Add an entry made elsewhere (the plugin manager commits staged entries so)."""
        self._check(entry)
        return self._entries.register(entry, plugin=entry.plugin)

    @staticmethod
    def _check(entry: DatasetEntry) -> None:
        check_name(entry.name, "dataset")
        loader = entry.loader
        if not (callable(loader) or (isinstance(loader, str) and ":" in loader)):
            raise InvalidSpecError(f"dataset {entry.name!r}: loader {loader!r} is not callable")

    def get(self, name: str) -> DatasetEntry:
        """The entry for ``name`` (``imagefolder:/data`` finds ``imagefolder``).

        UnknownDatasetError, suggesting close names, if there is none or if the argument is
        missing or not taken.
        """
        base, colon, argument = name.partition(":")
        entry = self._entries.get(base) if base in self._entries else None
        # "imagefolder:PATH" needs a non-empty PATH; "mnist5k" takes no ":..." at all.
        if entry is not None and (bool(argument) if entry.argument else not colon):
            return entry
        if entry is not None:
            raise UnknownDatasetError(name, [entry.display_name])
        raise UnknownDatasetError(name, suggest(base, self.names()))

    def names(self) -> list[str]:
        """Display names, sorted: ``["cifar10", ..., "imagefolder:PATH", ...]``."""
        return sorted(e.display_name for e in self._entries)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.partition(":")[0] in self._entries

    def __iter__(self) -> Iterator[DatasetEntry]:
        return iter(sorted(self._entries, key=lambda e: e.display_name))

    def __len__(self) -> int:
        return len(self._entries)
