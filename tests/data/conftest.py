"""Model input specs taken from the real registry, and tiny on-disk datasets."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest

import zoo
from zoo.registry import InputSpec

MakeImages = Callable[..., Path]


@pytest.fixture(scope="session")
def lenet_input() -> InputSpec:
    return zoo.get_spec("lenet").input


@pytest.fixture(scope="session")
def vae_input() -> InputSpec:
    return zoo.get_spec("vae").input


@pytest.fixture(scope="session")
def lstm_input() -> InputSpec:
    return zoo.get_spec("lstm").input


@pytest.fixture(scope="session")
def resnet18_small_input() -> InputSpec:
    """resnet18's ImageNet normalisation at 40x40, so shaping stays fast."""
    return dataclasses.replace(zoo.get_spec("resnet18").input, shape=(3, 40, 40))


@pytest.fixture
def make_images() -> MakeImages:
    """Write ``count`` PNGs per class under ``root/<class>/`` (grey "L" or colour "RGB").

    Each class gets its own brightness, so labels can be checked from pixels.
    """
    from PIL import Image

    def make(
        root: Path, classes: tuple[str, ...], count: int = 5, mode: str = "RGB", size: int = 12
    ) -> Path:
        for label, name in enumerate(classes):
            folder = root / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                value = 40 * label + i
                color = value if mode == "L" else (value, 255 - value, 0)
                Image.new(mode, (size, size + 2), color).save(folder / f"{i:03d}.png")
        return root

    return make
