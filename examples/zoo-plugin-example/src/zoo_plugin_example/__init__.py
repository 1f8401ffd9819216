"""An example zoo plugin: one small MLP classifier for 28x28 grey digits."""

from torch import Tensor, nn

import zoo


class TinyMLP(nn.Module):
    def __init__(self, num_classes: int = 10, hidden: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(28 * 28, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def tiny_mlp(num_classes: int = 10, hidden: int = 64) -> TinyMLP:
    return TinyMLP(num_classes=num_classes, hidden=hidden)


@zoo.hookimpl
def zoo_register_models(registry: zoo.hookspecs.ModelRegistrar) -> None:
    registry.register(
        zoo.ModelSpec(
            name="tiny_mlp",
            builder=tiny_mlp,
            task="classification",
            # An image: zoo exports it as a bundle that takes uint8 [B, H, W, 1] images of any
            # size and resizes and normalises them inside, and trains it on image datasets.
            input=zoo.InputSpec.image((1, 28, 28), mean=(0.1307,), std=(0.3081,)),
            outputs=(zoo.OutputSpec("logits", (10,)),),
            num_classes=10,
            summary="A two-layer MLP from the zoo-plugin-example package",
            tags=("vision", "example"),
            source="examples/zoo-plugin-example",
        )
    )
