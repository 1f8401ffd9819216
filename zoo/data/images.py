"""Shaping images for a model: scale to [0, 1], resize, repeat grey to 3 channels, normalise.

One :class:`ImageShaper` serves every image dataset, on whole tensors (embedded datasets,
shaped once) and per sample (:class:`PILImageShaper`, the transform of folder and
torchvision datasets), so all of them agree on what a model sees.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset, TensorDataset

from zoo.data.splits import stratified_split
from zoo.datasets import DatasetInfo, DataSplits, LoadRequest
from zoo.errors import DataMismatchError

if TYPE_CHECKING:
    from PIL.Image import Image

    from zoo.registry import InputSpec

__all__ = [
    "PRECOMPUTE_LIMIT_BYTES",
    "ImageShaper",
    "LazyImageDataset",
    "PILImageShaper",
    "tensor_image_splits",
]

#: Embedded datasets are shaped once, up front, while the result stays below this size;
#: beyond it (e.g. 5,000 digits at 3x224x224 would take 3 GB) samples are shaped on access.
PRECOMPUTE_LIMIT_BYTES: Final = 256 * 2**20
#: PIL modes that hold one channel (alpha is dropped).
GREY_MODES: Final = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"})


class ImageShaper:
    """Turns pixels ``[C, h, w]`` or ``[N, C, h, w]`` (uint8 0..255, or float in [0, 1]) into
    the model's ``input``: bilinear antialiased resize to its ``H x W``, 1 channel repeated to
    3 when it takes 3, then ``(x - mean) / std`` when the spec has a normalisation.

    A uint8 model input gets uint8 pixels, resized but not normalised.
    """

    def __init__(self, input: InputSpec) -> None:
        channels, height, width = input.shape
        self.channels = channels
        self.size = (height, width)
        self.dtype = getattr(torch, input.dtype)
        self.mean: Tensor | None = None
        self.std: Tensor | None = None
        if input.mean is not None and input.std is not None and self.dtype != torch.uint8:
            self.mean = torch.tensor(input.mean, dtype=torch.float32).view(-1, 1, 1)
            self.std = torch.tensor(input.std, dtype=torch.float32).view(-1, 1, 1)

    def __call__(self, pixels: Tensor) -> Tensor:
        batched = pixels.dim() == 4
        x = pixels if batched else pixels.unsqueeze(0)
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        if tuple(x.shape[-2:]) != self.size:
            x = F.interpolate(x, size=self.size, mode="bilinear", antialias=True)
            # Antialiasing filters can overshoot by a rounding error; keep pixels in [0, 1].
            x = x.clamp(0.0, 1.0)
        if x.shape[1] != self.channels:
            if x.shape[1] != 1:
                raise DataMismatchError(
                    f"cannot shape {x.shape[1]}-channel images for a {self.channels}-channel model"
                )
            x = x.expand(-1, self.channels, -1, -1)
        if self.dtype == torch.uint8:
            x = (x * 255.0).round()
        elif self.mean is not None and self.std is not None:
            x = (x - self.mean) / self.std
        x = x.to(self.dtype).contiguous()
        return x if batched else x[0]

    def nbytes(self, count: int) -> int:
        """Memory that ``count`` shaped images take."""
        element = torch.empty(0, dtype=self.dtype).element_size()
        return count * self.channels * self.size[0] * self.size[1] * element

    def shape_all(self, pixels: Tensor, chunk: int = 1024) -> Tensor:
        """Shape ``[N, C, h, w]`` in chunks, so the float copy never exceeds one chunk."""
        out = torch.empty((len(pixels), self.channels, *self.size), dtype=self.dtype)
        for start in range(0, len(pixels), chunk):
            out[start : start + chunk] = self(pixels[start : start + chunk])
        return out


class PILImageShaper:
    """Per-sample transform for PIL images: convert to L or RGB to match the model, then shape."""

    def __init__(self, shaper: ImageShaper) -> None:
        self.shaper = shaper
        self.mode = "L" if shaper.channels == 1 else "RGB"

    def __call__(self, image: Image) -> Tensor:
        array = np.array(image.convert(self.mode), dtype=np.uint8)
        pixels = torch.from_numpy(array)
        pixels = pixels.unsqueeze(0) if pixels.dim() == 2 else pixels.permute(2, 0, 1)
        return self.shaper(pixels)


class LazyImageDataset(Dataset[Any]):
    """Raw pixels shaped on access: for embedded datasets too large to shape up front."""

    #: Held in memory: the trainer fetches items itself, no DataLoader workers.
    in_memory = True

    def __init__(self, pixels: Tensor, labels: Tensor, shaper: ImageShaper) -> None:
        self.pixels = pixels
        #: int64 ``[len(self)]``: the class of each item.
        self.labels = labels
        self.shaper = shaper

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.shaper(self.pixels[index]), self.labels[index]


def _split_dataset(pixels: Tensor, labels: Tensor, shaper: ImageShaper) -> Dataset[Any]:
    if shaper.nbytes(len(pixels)) <= PRECOMPUTE_LIMIT_BYTES:
        # A TensorDataset: the trainer slices its tensors directly, no per-sample calls.
        return TensorDataset(shaper.shape_all(pixels), labels)
    return LazyImageDataset(pixels, labels, shaper)


def tensor_image_splits(
    pixels: Tensor, labels: Tensor, info: DatasetInfo, request: LoadRequest
) -> DataSplits:
    """Stratified seeded train/val/test splits of in-memory images ``[N, C, h, w]``.

    ``pixels`` are uint8 0..255 or float in [0, 1]; the caller checked compatibility.
    """
    shaper = ImageShaper(request.input)
    train, val, test = stratified_split(
        labels, (request.val_fraction, request.test_fraction), request.seed
    )
    splits = [_split_dataset(pixels[idx], labels[idx], shaper) for idx in (train, val, test)]
    return DataSplits(train=splits[0], val=splits[1], test=splits[2], info=info)
