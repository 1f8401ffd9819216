"""Residual nets (He et al. 2015, arXiv:1512.03385): a small ResNet, and torchvision's
backbones with a new head."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.capabilities import recorded
from zoo.hookspecs import ModelRegistrar, hookimpl
from zoo.plugins._common import check_positive, load_torchvision_weights, logits
from zoo.registry import InputSpec, ModelSpec, freeze_first
from zoo.transforms import IMAGENET, MNIST


class ResidualBlock(nn.Module):
    """y = conv3x3(ReLU(conv3x3(x))); return ReLU(x + y). Keeps shape."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.conv1(x))
        y = self.conv2(y)
        return F.relu(x + y)


class CourseResNet(nn.Module):
    """conv 16@5 - pool - ReLU - Residual(16) - conv 32@5 - pool - ReLU - Residual(32) - fc."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, input_size: int = 28) -> None:
        super().__init__()
        check_positive(num_classes=num_classes, in_channels=in_channels, input_size=input_size)
        side = ((input_size - 4) // 2 - 4) // 2
        if side < 1:
            raise ValueError(f"input_size={input_size} is too small for this ResNet (at least 16)")
        self.stage1 = nn.Sequential(
            nn.Conv2d(in_channels, 16, 5), nn.MaxPool2d(2), nn.ReLU(), ResidualBlock(16)
        )
        self.stage2 = nn.Sequential(
            nn.Conv2d(16, 32, 5), nn.MaxPool2d(2), nn.ReLU(), ResidualBlock(32)
        )
        self.fc = nn.Linear(32 * side * side, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(torch.flatten(self.stage2(self.stage1(x)), 1))


def _torchvision_resnet(
    arch: str,
    num_classes: int,
    weights: str | os.PathLike[str] | None,
    freeze: int,
    in_channels: int,
) -> nn.Module:
    import torchvision.models as tvm

    check_positive(num_classes=num_classes, in_channels=in_channels)
    model: Any = getattr(tvm, arch)(weights=None)
    if weights is not None:
        load_torchvision_weights(model, weights, tvm.get_model_weights(arch))
    # The new head: a fresh Linear over the backbone's features (fine-tuning).
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    if in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return freeze_first(model, freeze)


def _make_builder(arch: str) -> Callable[..., nn.Module]:
    def build(
        num_classes: int = 10,
        weights: str | os.PathLike[str] | None = None,
        freeze: int = 0,
        in_channels: int = 3,
    ) -> nn.Module:
        """torchvision {arch} with ``fc`` replaced by ``Linear(fc.in_features, num_classes)``.

        ``weights``: a local ImageNet state-dict file, or a torchvision weights name such as
        ``"DEFAULT"`` (downloaded). ``freeze``: stop gradients for the first N parameter
        tensors. ``in_channels != 3`` replaces the stem convolution (weights lost there).
        """
        return _torchvision_resnet(arch, num_classes, weights, freeze, in_channels)

    build.__name__ = arch
    build.__doc__ = (build.__doc__ or "").replace("{arch}", arch)
    return build


@hookimpl
def zoo_register_models(registry: ModelRegistrar) -> None:
    registry.register(
        ModelSpec(
            name="resnet",
            capabilities=recorded("resnet"),
            builder=CourseResNet,
            task="classification",
            input=InputSpec.image((1, 28, 28), *MNIST),
            outputs=logits(10),
            num_classes=10,
            summary="Course ResNet: two residual blocks, 28x28 digits",
            tags=("vision", "small", "mnist", "residual"),
            source="He et al. 2015, Deep Residual Learning for Image Recognition, arXiv:1512.03385",
        )
    )
    for arch in ("resnet18", "resnet34", "resnet50"):
        registry.register(
            ModelSpec(
                name=arch,
                capabilities=recorded(arch),
                builder=_make_builder(arch),
                task="classification",
                input=InputSpec.image((3, 224, 224), *IMAGENET),
                outputs=logits(10),
                num_classes=10,
                summary=f"torchvision {arch} backbone with a new classification head",
                tags=("vision", "torchvision", "residual", "finetune"),
                source="He et al. 2015, arXiv:1512.03385; torchvision.models." + arch,
            )
        )
