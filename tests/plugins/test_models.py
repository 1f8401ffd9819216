"""Behaviour every registered model must have, parametrized over the whole registry."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import as_tuple, spec_params
from zoo.registry import ModelSpec


@pytest.mark.parametrize("spec", spec_params())
@pytest.mark.parametrize("batch", [1, 3])
def test_forward_gives_the_declared_output_shapes(spec: ModelSpec, batch: int) -> None:
    model = spec.build().eval()
    with torch.no_grad():
        outputs = as_tuple(model(spec.example_input(batch)))
    assert len(outputs) == len(spec.outputs)
    for out, declared in zip(outputs, spec.outputs, strict=True):
        assert tuple(out.shape) == (batch, *declared.shape), declared.name
        assert torch.isfinite(out).all(), declared.name
    if spec.num_classes is not None:
        assert outputs[0].shape[-1] == spec.num_classes


@pytest.mark.parametrize("spec", spec_params())
def test_backward_reaches_every_trainable_parameter(spec: ModelSpec) -> None:
    model = spec.build().train()
    loss = sum(out.float().square().mean() for out in as_tuple(model(spec.example_input(2))))
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"no gradient for {missing}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("spec", spec_params())
def test_eval_mode_is_deterministic(spec: ModelSpec) -> None:
    model = spec.build().eval()
    x = spec.example_input(2)
    with torch.no_grad():
        first, second = as_tuple(model(x)), as_tuple(model(x))
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("spec", spec_params())
def test_each_build_is_a_fresh_model(spec: ModelSpec) -> None:
    a, b = spec.build(), spec.build()
    pa, pb = next(a.parameters()), next(b.parameters())
    assert pa is not pb
    with torch.no_grad():
        pa.add_(1.0)
    assert not torch.equal(pa, pb)


@pytest.mark.parametrize("spec", [p for p in spec_params() if p.values[0].num_classes])
def test_num_classes_option_resizes_the_head(spec: ModelSpec) -> None:
    model = spec.build(num_classes=7).eval()
    with torch.no_grad():
        assert as_tuple(model(spec.example_input(2)))[0].shape == (2, 7)
