"""Your own data: ``imagefolder:PATH`` (torchvision ImageFolder) and ``textfolder:PATH`` (the
PyTorch names-tutorial layout, one ``<Class>.txt`` per class, one name per line)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import torch
from PIL import Image
from torch import Tensor

from zoo.data.images import GREY_MODES, ImageShaper, PILImageShaper
from zoo.data.splits import LabelledSubset, stratified_split, to_label
from zoo.data.tokens import text_splits
from zoo.datasets import IMAGE, DatasetInfo, DataSplits, LoadRequest
from zoo.errors import DataError

__all__ = ["IMAGE_LAYOUT", "TEXT_LAYOUT", "load_imagefolder", "load_textfolder"]

IMAGE_LAYOUT: Final = (
    "PATH/<class>/<image> (split here, seeded and stratified), or "
    "PATH/train/<class>/<image> with PATH/val/... and/or PATH/test/... beside it"
)
TEXT_LAYOUT: Final = "PATH/<Class>.txt, UTF-8, one sample (e.g. a surname) per line"
_VAL_NAMES: Final = ("val", "valid", "validation")
_TEST_NAMES: Final = ("test",)
#: Images sampled per class to tell grey folders from colour ones (opening a header is cheap,
#: but not for every file of a large folder).
_PROBE_PER_CLASS: Final = 8


def _folder(request: LoadRequest, layout: str) -> Path:
    if not request.argument:
        raise DataError(f"{request.name!r} needs a folder: {request.name.split(':')[0]}:PATH")
    root = Path(request.argument).expanduser()
    if not root.is_dir():
        what = "does not exist" if not root.exists() else "is not a folder"
        raise DataError(f"dataset {request.name!r}: {root} {what}; expected {layout}")
    return root


def _first_dir(root: Path, names: tuple[str, ...]) -> Path | None:
    return next((root / n for n in names if (root / n).is_dir()), None)


class _Remap:
    """target_transform of a val/test folder: its class index -> the train folder's, as int64."""

    def __init__(self, mapping: list[int]) -> None:
        self.mapping = mapping

    def __call__(self, target: int) -> Tensor:
        return torch.tensor(self.mapping[target], dtype=torch.int64)


def _image_folder(path: Path, request: LoadRequest, transform: Any, **kwargs: Any) -> Any:
    from torchvision.datasets import ImageFolder  # here: textfolder needs no torchvision

    try:
        return ImageFolder(str(path), transform=transform, **kwargs)
    except (FileNotFoundError, OSError) as exc:
        raise DataError(
            f"dataset {request.name!r}: no images in {path} ({exc}); expected {IMAGE_LAYOUT}"
        ) from exc


def _channels(samples: list[tuple[str, int]]) -> int:
    """1 if every probed image is grey, else 3."""
    probed: dict[int, int] = {}
    for path, target in samples:
        if probed.get(target, 0) >= _PROBE_PER_CLASS:
            continue
        probed[target] = probed.get(target, 0) + 1
        try:
            with Image.open(path) as image:
                if image.mode not in GREY_MODES:
                    return 3
        except OSError:
            continue  # unreadable files fail when loaded, naming themselves
    return 1


def _sizes(samples: list[tuple[str, int]]) -> tuple[int, int] | None:
    """``(height, width)`` of the first image: informative only, every image is resized."""
    try:
        with Image.open(samples[0][0]) as image:
            width, height = image.size
    except OSError:
        return None
    return (height, width)


def load_imagefolder(request: LoadRequest) -> DataSplits:
    """Images in class folders, shaped for the model (converted to L or RGB to match it)."""
    root = _folder(request, IMAGE_LAYOUT)
    train_dir = root / "train" if (root / "train").is_dir() else root
    val_dir = _first_dir(root, _VAL_NAMES) if train_dir != root else None
    test_dir = _first_dir(root, _TEST_NAMES) if train_dir != root else None
    transform = PILImageShaper(ImageShaper(request.input))
    train_set = _image_folder(train_dir, request, transform, target_transform=to_label)
    classes: list[str] = list(train_set.classes)
    info = DatasetInfo(
        name=request.name,
        kind=IMAGE,
        num_classes=len(classes),
        class_names=tuple(classes),
        description=f"images in {len(classes)} class folders under {root}",
        source=str(root),
        channels=_channels(train_set.samples),
        image_size=_sizes(train_set.samples),
    )
    request.check(info)
    labels = torch.tensor(train_set.targets, dtype=torch.int64)
    # Held-out parts with no folder of their own are cut from train, seeded and stratified.
    fractions = (
        request.val_fraction if val_dir is None else 0.0,
        request.test_fraction if test_dir is None else 0.0,
    )
    train, val, test = stratified_split(labels, fractions, request.seed)
    parts = {
        "val": LabelledSubset(train_set, val, labels[val]),
        "test": LabelledSubset(train_set, test, labels[test]),
    }
    for part, folder in (("val", val_dir), ("test", test_dir)):
        if folder is not None:
            parts[part] = _held_out(folder, classes, request, transform)
    return DataSplits(
        train=LabelledSubset(train_set, train, labels[train]),
        val=parts["val"],
        test=parts["test"],
        info=info,
    )


def _held_out(
    folder: Path, classes: list[str], request: LoadRequest, transform: Any
) -> LabelledSubset:
    """A val/test folder, its class indices mapped onto the train folder's."""
    dataset = _image_folder(folder, request, transform, allow_empty=True)
    unknown = sorted(set(dataset.classes) - set(classes))
    if unknown:
        raise DataError(
            f"dataset {request.name!r}: {folder} has classes {', '.join(unknown)} that the "
            f"train folder lacks; the train classes are {', '.join(classes)}"
        )
    mapping = [classes.index(c) for c in dataset.classes]
    dataset.target_transform = _Remap(mapping)
    labels = torch.tensor([mapping[t] for t in dataset.targets], dtype=torch.int64)
    return LabelledSubset(dataset, torch.arange(len(labels)), labels)


def load_textfolder(request: LoadRequest) -> DataSplits:
    """One UTF-8 text file per class, one sample per line, tokenised by character."""
    root = _folder(request, TEXT_LAYOUT)
    files = sorted(p for p in root.glob("*.txt") if p.is_file())
    if not files:
        raise DataError(
            f"dataset {request.name!r}: no .txt files in {root}; expected {TEXT_LAYOUT}"
        )
    by_class: dict[str, list[str]] = {}
    for path in files:
        try:
            by_class[path.stem] = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(
                f"dataset {request.name!r}: cannot read {path} as UTF-8: {exc}"
            ) from exc
    if not any(line.strip() for lines in by_class.values() for line in lines):
        raise DataError(
            f"dataset {request.name!r}: the .txt files in {root} are empty; expected {TEXT_LAYOUT}"
        )
    description = f"{len(files)} text classes under {root} (lines found in two classes dropped)"
    return text_splits(by_class, request, description=description, source=str(root))
