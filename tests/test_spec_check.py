"""A model's real outputs against its spec (zoo.spec_check): what is compared, and that an
export records the outputs a model really has."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import zoo
from tests.helpers import tiny_spec
from zoo.export.exporter import export_model
from zoo.spec_check import OutputMismatchError, check_outputs, expected_outputs


class Returns(nn.Module):
    def __init__(self, make: object) -> None:
        super().__init__()
        self.make = make
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> object:
        return self.make(self.fc(x))  # type: ignore[operator]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda y: y[:, :2], "output 'logits' is [B, 2], its spec says [B, 3]"),
        (lambda y: (y, y), "returns 2 output(s) but its spec declares 1 (logits)"),
        (lambda y: {"logits": y}, "returns dict; zoo needs a tensor or a tuple of tensors"),
        (lambda y: y.double(), "output 'logits' is float64, its spec says float32"),
        (lambda y: y.sum(0), "output 'logits' is [B] for a batch of 2; outputs must keep"),
        (lambda y: y.sum(), "output 'logits' is a scalar for a batch of 2"),
    ],
)
def test_each_kind_of_mismatch_is_named(make: object, message: str) -> None:
    with pytest.raises(OutputMismatchError, match="model 'tiny'") as info:
        check_outputs(tiny_spec(), Returns(make), {})
    assert message in str(info.value)
    assert "; fix the " in str(info.value)


def test_a_changed_class_count_is_expected_and_other_options_compare_the_rank_only() -> None:
    spec = zoo.get_spec("lenet")
    five = check_outputs(spec, spec.build(num_classes=5), {"num_classes": 5})
    assert five[0].shape == (5,)
    with pytest.raises(OutputMismatchError, match=r"is \[B, 5\], its spec says \[B, 10\]"):
        check_outputs(spec, spec.build(num_classes=5), {})
    vae = zoo.get_spec("vae")
    assert expected_outputs(vae, {"width": 8})[1] is False
    model = vae.build()
    assert [o.shape for o in check_outputs(vae, model, {})] == [o.shape for o in vae.outputs]
    # The training mode is left as it was.
    model.train()
    check_outputs(vae, model, {})
    assert model.training


def test_an_export_records_the_outputs_the_model_really_has(tmp_path: Path) -> None:
    report = export_model(
        "lenet", tmp_path / "five", formats=["torchscript"], model_args={"num_classes": 5}
    )
    assert report.ok
    assert report.manifest.outputs[0].shape == (5,)
