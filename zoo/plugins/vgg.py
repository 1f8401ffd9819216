"""VGG (Simonyan & Zisserman 2014, arXiv:1409.1556) with a new head to fine-tune."""

from __future__ import annotations

import os
from typing import Any

from torch import nn

from zoo.capabilities import recorded
from zoo.errors import InvalidArgumentsError
from zoo.hookspecs import ModelRegistrar, hookimpl
from zoo.plugins._common import check_positive, load_torchvision_weights, logits
from zoo.registry import InputSpec, ModelSpec, freeze_first
from zoo.transforms import IMAGENET

ARCHS = ("vgg11", "vgg13", "vgg16", "vgg19")
HEADS = ("replace", "append")


def vgg_head(
    num_classes: int = 10,
    arch: str = "vgg16",
    head: str = "replace",
    weights: str | os.PathLike[str] | None = None,
    freeze: int = 0,
) -> nn.Module:
    """torchvision VGG with a new classification head.

    ``head="replace"`` sets ``classifier[6] = Linear(4096, num_classes)``; ``head="append"``
    keeps the 1000-way layer and adds ``classifier.add_module("add_linear",
    Linear(1000, num_classes))``. Inputs of 32x32 and up work (the adaptive pool).
    """
    import torchvision.models as tvm

    check_positive(num_classes=num_classes)
    if arch not in ARCHS:
        raise InvalidArgumentsError(f"arch={arch!r} is not one of {', '.join(ARCHS)}")
    if head not in HEADS:
        raise InvalidArgumentsError(f"head={head!r} is not one of {', '.join(HEADS)}")
    model: Any = getattr(tvm, arch)(weights=None)
    if weights is not None:
        load_torchvision_weights(model, weights, tvm.get_model_weights(arch))
    if head == "replace":
        model.classifier[6] = nn.Linear(4096, num_classes)
    else:
        model.classifier.add_module("add_linear", nn.Linear(1000, num_classes))
    return freeze_first(model, freeze)


@hookimpl
def zoo_register_models(registry: ModelRegistrar) -> None:
    registry.register(
        ModelSpec(
            name="vgg_head",
            capabilities=recorded("vgg_head"),
            builder=vgg_head,
            task="classification",
            input=InputSpec.image((3, 224, 224), *IMAGENET),
            outputs=logits(10),
            num_classes=10,
            summary="torchvision VGG16 (or 11/13/19) with classifier[6] replaced or a layer added",
            tags=("vision", "torchvision", "finetune", "large"),
            source="Simonyan & Zisserman 2014, arXiv:1409.1556, with a new head to fine-tune",
        )
    )
