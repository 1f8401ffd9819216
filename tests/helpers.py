"""Helpers shared by the tests (fixtures live in conftest.py)."""

from __future__ import annotations

import pytest
import torch

import zoo
from zoo.registry import ModelSpec

#: Every registered model, built-ins and installed plugins alike: a new model is tested at once.
ALL_MODELS = zoo.list_models()


def spec_params() -> list[pytest.param]:
    return [pytest.param(zoo.get_spec(n), id=n) for n in ALL_MODELS]


def as_tuple(out: object) -> tuple[torch.Tensor, ...]:
    return out if isinstance(out, tuple) else (out,)  # type: ignore[return-value]


def tiny_spec(name: str = "tiny", **overrides: object) -> ModelSpec:
    """A valid spec whose builder is cheap; tests override single fields."""
    from torch import nn

    fields: dict[str, object] = dict(
        name=name,
        builder=lambda num_classes=3: nn.Sequential(nn.Flatten(), nn.Linear(4, num_classes)),
        task="classification",
        input=zoo.InputSpec((4,)),
        outputs=(zoo.OutputSpec("logits", (3,)),),
        summary="tiny test model",
        num_classes=3,
    )
    fields.update(overrides)
    return ModelSpec(**fields)  # type: ignore[arg-type]
