"""LeNet-5 (LeCun et al. 1998): the ``Net`` of PyTorch's Neural Networks tutorial, and a small
MNIST CNN."""

from torch import Tensor, nn

from zoo.capabilities import recorded
from zoo.hookspecs import ModelRegistrar, hookimpl
from zoo.plugins._common import check_positive, logits
from zoo.registry import InputSpec, ModelSpec
from zoo.transforms import MNIST


class LeNet(nn.Module):
    """conv 6@5 - pool - conv 16@5 - pool - fc 120 - 84 - classes; logits, no softmax.

    28x28 inputs pad the first conv by 2 (classic LeNet-5) so the flatten stays 16*5*5;
    ``in_channels=3, input_size=32`` is the CIFAR-10 ``Net`` of the PyTorch tutorial.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, input_size: int = 28) -> None:
        super().__init__()
        check_positive(num_classes=num_classes, in_channels=in_channels, input_size=input_size)
        pad = 2 if input_size < 32 else 0
        side = ((input_size + 2 * pad - 4) // 2 - 4) // 2
        if side < 1:
            raise ValueError(f"input_size={input_size} is too small for LeNet (at least 16)")
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, padding=pad),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * side * side, 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


@hookimpl
def zoo_register_models(registry: ModelRegistrar) -> None:
    registry.register(
        ModelSpec(
            name="lenet",
            capabilities=recorded("lenet"),
            builder=LeNet,
            task="classification",
            input=InputSpec.image((1, 28, 28), *MNIST),
            outputs=logits(10),
            num_classes=10,
            summary="LeNet-5 for 28x28 digits (3x32x32 CIFAR 'Net' via options)",
            tags=("vision", "small", "mnist"),
            source="LeCun et al. 1998; the Net of PyTorch's Neural Networks tutorial",
        )
    )
