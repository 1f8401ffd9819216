"""Preprocessing as scriptable, exportable ``nn.Module``s, and the normalisation constants.

``nn.Sequential`` instead of ``Compose``, tensors instead of PIL, no lambdas, so the pipeline
scripts with TorchScript, exports with torch.export and ONNX, and runs inside a deployed
artifact. Normalisations are per-channel ``(mean, std)`` applied to pixels scaled to [0, 1].
"""

# No `from __future__ import annotations`: TorchScript must see real annotations.
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.registry import InputSpec

__all__ = [
    "CIFAR",
    "IMAGENET",
    "MNIST",
    "CenterCrop",
    "Normalization",
    "Normalize",
    "Resize",
    "ToChannels",
    "ToFloat",
    "default_transform",
    "describe_transform",
]

#: ``(mean per channel, std per channel)``
Normalization = tuple[tuple[float, ...], tuple[float, ...]]

#: MNIST digits: one channel (the mean and std of MNIST's training set).
MNIST: Normalization = ((0.1307,), (0.3081,))
#: ``Normalize(0.5, 0.5)`` of PyTorch's CIFAR-10 tutorial: maps [0, 1] to [-1, 1].
CIFAR: Normalization = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
#: torchvision's ImageNet statistics, for the pretrained backbones.
IMAGENET: Normalization = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


class ToFloat(nn.Module):
    """uint8 images -> float32 ``[B, C, H, W]`` in [0, 1], as ``ToTensor`` scales them.

    ``channels_last=True`` takes ``[B, H, W, C]`` (how images are decoded and stored);
    ``False`` takes ``[B, C, H, W]``.
    """

    def __init__(self, channels_last: bool = True) -> None:
        super().__init__()
        self.channels_last = channels_last

    def forward(self, x: Tensor) -> Tensor:
        if self.channels_last:
            x = x.permute(0, 3, 1, 2)
        return x.to(torch.float32) / 255.0


class Resize(nn.Module):
    """Bilinear resize with antialiasing (as PIL and torchvision do) to exactly H x W.

    Takes float ``[B, C, H, W]`` of any size. An input already H x W comes back unchanged
    (the interpolation is then exact), with no size test, so exports keep H and W dynamic.
    """

    def __init__(self, height: int, width: int) -> None:
        super().__init__()
        self.height = height
        self.width = width

    def forward(self, x: Tensor) -> Tensor:
        return F.interpolate(
            x,
            size=[self.height, self.width],
            mode="bilinear",
            align_corners=False,
            antialias=True,
        )


class CenterCrop(nn.Module):
    """The central H x W window of ``[B, C, H, W]``, placed as torchvision places it.

    The input must be at least H x W: a smaller one raises (``IndexError`` in eager and
    TorchScript, a runtime error in exported graphs) where torchvision would pad with zeros.
    The window is gathered with ``index_select`` rather than sliced: slicing at an offset
    computed from a dynamic size makes ``torch.export`` refuse dynamic H and W.
    """

    def __init__(self, height: int, width: int) -> None:
        super().__init__()
        self.height = height
        self.width = width

    def forward(self, x: Tensor) -> Tensor:
        rows = torch.arange(self.height, device=x.device) + _offset(x.shape[2] - self.height)
        cols = torch.arange(self.width, device=x.device) + _offset(x.shape[3] - self.width)
        return x.index_select(2, rows).index_select(3, cols)


def _offset(excess: int) -> int:
    """``round(excess / 2)`` rounding halves to even, as torchvision's ``int(round(...))``.

    Integer arithmetic only, so it stays symbolic under torch.export.
    """
    return (excess + (excess // 2) % 2) // 2


class ToChannels(nn.Module):
    """Converts ``[B, C, H, W]`` to ``channels`` channels, as PIL's ``convert`` does.

    1 -> 3 repeats the grey channel; 3 -> 1 is ITU-R 601-2 luma (PIL's ``L``:
    ``0.299 R + 0.587 G + 0.114 B``); the same count is the identity; any other pair raises
    ``ValueError`` when called.
    """

    luma: Tensor

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.register_buffer("luma", torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[1] == self.channels:
            return x
        if self.channels == 3 and x.shape[1] == 1:
            return x.repeat(1, 3, 1, 1)
        if self.channels == 1 and x.shape[1] == 3:
            luma = self.luma.to(device=x.device, dtype=x.dtype)
            return (x * luma).sum(dim=1, keepdim=True)
        raise ValueError("ToChannels converts between 1 and 3 channels only")


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel of ``[B, C, H, W]``; one value applies to all channels.

    ``mean`` and ``std`` are buffers (they follow ``.to(device)`` and are saved with the
    module); the values as given stay in ``mean_values``/``std_values`` for manifests.
    """

    mean: Tensor
    std: Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std) or not mean:
            raise ValueError(f"Normalize needs as many means as stds, got {mean!r}, {std!r}")
        if any(s <= 0 for s in std):
            raise ValueError(f"Normalize needs positive stds, got {std!r}")
        self.mean_values: list[float] = [float(m) for m in mean]
        self.std_values: list[float] = [float(s) for s in std]
        self.register_buffer("mean", torch.tensor(self.mean_values).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(self.std_values).view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        mean = self.mean.to(device=x.device, dtype=x.dtype)
        std = self.std.to(device=x.device, dtype=x.dtype)
        return (x - mean) / std


def default_transform(input: InputSpec, *, channels_last: bool = True) -> nn.Sequential | None:
    """uint8 images of any size -> the model's input, built from the spec's ``[C, H, W]``.

    ``ToFloat -> Resize(H, W) -> ToChannels(C) -> Normalize(mean, std)``; ``None`` for inputs
    without normalisation statistics (token ids, feature maps).
    """
    if input.mean is None or input.std is None:
        return None
    channels, height, width = input.shape
    return nn.Sequential(
        ToFloat(channels_last),
        Resize(height, width),
        ToChannels(channels),
        Normalize(input.mean, input.std),
    )


def describe_transform(transform: nn.Module | None) -> list[dict[str, Any]]:
    """JSON-ready steps of a pipeline, in order, for manifests; ``[]`` for ``None``.

    One dict per step: ``{"op": class name, **its settings}``, e.g.
    ``{"op": "Resize", "height": 28, "width": 28}``. Nested ``nn.Sequential``s are flattened;
    modules not defined here are listed by ``op`` alone.
    """
    if transform is None:
        return []
    if isinstance(transform, nn.Sequential):
        return [entry for step in transform for entry in describe_transform(step)]
    entry: dict[str, Any] = {"op": type(transform).__name__}
    if isinstance(transform, ToFloat):
        entry["channels_last"] = transform.channels_last
    elif isinstance(transform, (Resize, CenterCrop)):
        entry.update(height=transform.height, width=transform.width)
    elif isinstance(transform, ToChannels):
        entry["channels"] = transform.channels
    elif isinstance(transform, Normalize):
        entry.update(mean=list(transform.mean_values), std=list(transform.std_values))
    return [entry]
