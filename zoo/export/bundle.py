"""What gets exported: preprocessing + model (+ optional softmax) in eval mode, as one module.

With preprocessing inside, an artifact takes what an application has (uint8 images,
``[B, H, W, C]``) and needs no zoo, torchvision or PIL beside it. ``raw=True`` exports the
bare model, which takes the model's own input.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from zoo.registry import InputSpec, ModelSpec, OutputSpec, Task

__all__ = [
    "POSTPROCESS",
    "Bundle",
    "SoftmaxBundle",
    "bundle_input_spec",
    "bundle_outputs",
    "make_bundle",
]

POSTPROCESS = ("none", "softmax")


class Bundle(nn.Module):
    """``model(preprocess(x))``; no preprocessing is an identity."""

    def __init__(self, model: nn.Module, preprocess: nn.Module | None) -> None:
        super().__init__()
        self.preprocess = preprocess if preprocess is not None else nn.Identity()
        self.model = model

    # No return annotation: TorchScript infers it (a tensor, or the VAE's tuple).
    def forward(self, x: Tensor):  # type: ignore[no-untyped-def]
        return self.model(self.preprocess(x))


class SoftmaxBundle(Bundle):
    """``softmax(model(preprocess(x)))`` for single-output classifiers."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.softmax(self.model(self.preprocess(x)), dim=-1)


def bundle_input_spec(spec: ModelSpec, *, raw: bool) -> InputSpec:
    """The artifact's input: raw uint8 ``[B, H, W, C]`` images, or the model's own input."""
    if raw or spec.input.mean is None:
        return spec.input
    channels, height, width = spec.input.shape
    return InputSpec(
        (height, width, channels),
        dtype="uint8",
        value_range=(0, 255),
        dynamic_axes={0: "batch", 1: "height", 2: "width"},  # the bundle resizes
        name="image",
    )


def bundle_outputs(spec: ModelSpec, *, softmax: bool) -> tuple[OutputSpec, ...]:
    if softmax:
        return (OutputSpec("probabilities", spec.outputs[0].shape),)
    return spec.outputs


def make_bundle(
    spec: ModelSpec, model: nn.Module, *, raw: bool = False, postprocess: str = "none"
) -> tuple[Bundle, InputSpec, tuple[OutputSpec, ...]]:
    """The eval-mode module to export, its input spec and its outputs.

    Stochastic models export their deterministic eval path (the VAE uses z = mu).
    """
    from zoo.errors import UsageError

    if postprocess not in POSTPROCESS:
        raise UsageError(f"postprocess {postprocess!r} is not one of {', '.join(POSTPROCESS)}")
    softmax = postprocess == "softmax"
    if softmax and (
        spec.task not in (Task.CLASSIFICATION, Task.SEQUENCE_CLASSIFICATION)
        or len(spec.outputs) != 1
    ):
        raise UsageError(f"--postprocess softmax needs a classifier; {spec.name} is a {spec.task}")
    preprocess = None
    if not raw and spec.input.mean is not None:
        from zoo.transforms import default_transform

        preprocess = default_transform(spec.input)
    bundle = (SoftmaxBundle if softmax else Bundle)(model, preprocess).eval()
    for parameter in bundle.parameters():
        parameter.requires_grad_(False)
    return bundle, bundle_input_spec(spec, raw=raw), bundle_outputs(spec, softmax=softmax)


@torch.no_grad()
def run_eager(bundle: nn.Module, x: Tensor) -> tuple[Tensor, ...]:
    out = bundle(x)
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)
