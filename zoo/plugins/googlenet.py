"""A small GoogLeNet: two convs, each followed by an Inception module (Szegedy et al. 2014,
arXiv:1409.4842)."""

import torch
from torch import Tensor, nn

from zoo.capabilities import recorded
from zoo.hookspecs import ModelRegistrar, hookimpl
from zoo.plugins._common import check_positive, logits
from zoo.registry import InputSpec, ModelSpec
from zoo.transforms import MNIST


class InceptionA(nn.Module):
    """Four branches concatenated on channels: 16 + 24 + 24 + 24 = 88."""

    out_channels = 88

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch1x1 = nn.Conv2d(in_channels, 16, 1)
        self.branch5x5 = nn.Sequential(
            nn.Conv2d(in_channels, 16, 1), nn.Conv2d(16, 24, 5, padding=2)
        )
        self.branch3x3 = nn.Sequential(
            nn.Conv2d(in_channels, 16, 1),
            nn.Conv2d(16, 24, 3, padding=1),
            nn.Conv2d(24, 24, 3, padding=1),
        )
        self.branch_pool = nn.Sequential(
            nn.AvgPool2d(3, stride=1, padding=1), nn.Conv2d(in_channels, 24, 1)
        )

    def forward(self, x: Tensor) -> Tensor:
        branches = [self.branch1x1(x), self.branch5x5(x), self.branch3x3(x), self.branch_pool(x)]
        return torch.cat(branches, dim=1)


class GoogLeNet(nn.Module):
    """conv 10@5 - pool - ReLU - Inception - conv 20@5 - pool - ReLU - Inception - fc."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, input_size: int = 28) -> None:
        super().__init__()
        check_positive(num_classes=num_classes, in_channels=in_channels, input_size=input_size)
        side = ((input_size - 4) // 2 - 4) // 2
        if side < 1:
            raise ValueError(f"input_size={input_size} is too small for GoogLeNet (at least 16)")
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 10, 5),
            nn.MaxPool2d(2),
            nn.ReLU(),
            InceptionA(10),
            nn.Conv2d(InceptionA.out_channels, 20, 5),
            nn.MaxPool2d(2),
            nn.ReLU(),
            InceptionA(20),
        )
        self.fc = nn.Linear(InceptionA.out_channels * side * side, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(torch.flatten(self.features(x), 1))


@hookimpl
def zoo_register_models(registry: ModelRegistrar) -> None:
    registry.register(
        ModelSpec(
            name="googlenet",
            capabilities=recorded("googlenet"),
            builder=GoogLeNet,
            task="classification",
            input=InputSpec.image((1, 28, 28), *MNIST),
            outputs=logits(10),
            num_classes=10,
            summary="Course GoogLeNet: two Inception-A modules, 28x28 digits",
            tags=("vision", "small", "mnist", "inception"),
            source="Szegedy et al. 2014, Going Deeper with Convolutions, arXiv:1409.4842",
        )
    )
