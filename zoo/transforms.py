"""Preprocessing as scriptable, exportable ``nn.Module``s, and the normalisation constants.

The notes' rule (000 section 5): ``nn.Sequential`` instead of ``Compose``, tensors instead of
PIL, no lambdas, so the pipeline scripts with TorchScript, exports with torch.export and ONNX,
and runs inside a deployed artifact. Normalisations are per-channel ``(mean, std)`` applied
to pixels scaled to [0, 1].
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

#: MNIST digits (notes 001/002): one channel.
MNIST: Normalization = ((0.1307,), (0.3081,))
#: ``Normalize(0.5, 0.5)`` of the CIFAR-10 tutorial (003): maps [0, 1] to [-1, 1].
CIFAR: Normalization = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
#: torchvision's ImageNet statistics, for the pretrained backbones.
IMAGENET: Normalization = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


class ToFloat(nn.Module):
    """uint8 ``[B, H, W, C]`` (or ``[B, C, H, W]``) images -> float32 ``[B, C, H, W]``, [0, 1]."""

    def __init__(self, channels_last: bool = True) -> None:
        super().__init__()
        self.channels_last = channels_last

    def forward(self, x: Tensor) -> Tensor:
        if self.channels_last:
            x = x.permute(0, 3, 1, 2)
        return x.to(torch.float32) / 255.0


class Resize(nn.Module):
    """Bilinear resize with antialiasing (as PIL and torchvision do) to exactly H x W."""

    def __init__(self, height: int, width: int) -> None:
        super().__init__()
        self.height = height
        self.width = width

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[2] == self.height and x.shape[3] == self.width:
            return x
        return F.interpolate(
            x,
            size=[self.height, self.width],
            mode="bilinear",
            align_corners=False,
            antialias=True,
        )


class CenterCrop(nn.Module):
    """The central H x W window (the input must be at least that large)."""

    def __init__(self, height: int, width: int) -> None:
        super().__init__()
        self.height = height
        self.width = width

    def forward(self, x: Tensor) -> Tensor:
        top = (x.shape[2] - self.height) // 2
        left = (x.shape[3] - self.width) // 2
        return x[:, :, top : top + self.height, left : left + self.width]


class ToChannels(nn.Module):
    """1 -> 3 channels by repeating; 3 -> 1 by ITU-R 601-2 luma (PIL's ``L``); else identity."""

    luma: Tensor

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.register_buffer("luma", torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[1] == self.channels:
            return x
        if self.channels == 3 and x.shape[1] == 1:
            return x.expand(-1, 3, -1, -1)
        if self.channels == 1 and x.shape[1] == 3:
            return (x * self.luma).sum(dim=1, keepdim=True)
        raise ValueError("ToChannels converts between 1 and 3 channels only")


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel."""

    mean: Tensor
    std: Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(list(mean)).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std)).view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


def default_transform(input: InputSpec, *, channels_last: bool = True) -> nn.Sequential | None:
    """uint8 images -> the model's input, from the spec; ``None`` for non-image inputs."""
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
    """JSON-ready steps of a pipeline, for manifests."""
    if transform is None:
        return []
    steps = list(transform.children()) if isinstance(transform, nn.Sequential) else [transform]
    described = []
    for step in steps:
        entry: dict[str, Any] = {"op": type(step).__name__}
        if isinstance(step, ToFloat):
            entry["channels_last"] = step.channels_last
        elif isinstance(step, (Resize, CenterCrop)):
            entry.update(height=step.height, width=step.width)
        elif isinstance(step, ToChannels):
            entry["channels"] = step.channels
        elif isinstance(step, Normalize):
            entry.update(mean=step.mean.flatten().tolist(), std=step.std.flatten().tolist())
        described.append(entry)
    return described
