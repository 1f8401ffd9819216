"""What gets exported: preprocessing + model (+ softmax or top-k) in eval mode, as one module.

With preprocessing inside, an artifact takes what an application has (uint8 images,
``[B, H, W, C]``) and needs no zoo, torchvision or PIL beside it. ``raw=True`` exports the
bare model, which takes the model's own input.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from zoo.errors import UsageError
from zoo.registry import InputSpec, ModelSpec, OutputSpec
from zoo.transforms import default_transform

__all__ = [
    "POSTPROCESS",
    "Bundle",
    "SoftmaxBundle",
    "TopKBundle",
    "bundle_input_spec",
    "bundle_outputs",
    "make_bundle",
]

POSTPROCESS = ("none", "softmax", "topk")


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


class TopKBundle(Bundle):
    """The ``k`` most probable classes: ``(scores, indices)``, each ``[B, k]``, best first."""

    def __init__(self, model: nn.Module, preprocess: nn.Module | None, k: int) -> None:
        super().__init__(model, preprocess)
        self.k = k

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        probabilities = torch.softmax(self.model(self.preprocess(x)), dim=-1)
        scores, indices = torch.topk(probabilities, self.k, dim=-1)
        return scores, indices


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


def bundle_outputs(
    spec: ModelSpec,
    *,
    postprocess: str = "none",
    top_k: int = 5,
    model_outputs: tuple[OutputSpec, ...] | None = None,
) -> tuple[OutputSpec, ...]:
    """The bundle's outputs: the model's (``model_outputs`` as observed, else the spec's),
    or what the postprocessing makes of them."""
    outputs = model_outputs if model_outputs is not None else spec.outputs
    if postprocess == "softmax":
        return (OutputSpec("probabilities", outputs[0].shape),)
    if postprocess == "topk":
        return (OutputSpec("scores", (top_k,)), OutputSpec("indices", (top_k,), dtype="int64"))
    return outputs


def make_bundle(
    spec: ModelSpec,
    model: nn.Module,
    *,
    raw: bool = False,
    postprocess: str = "none",
    top_k: int = 5,
    model_outputs: tuple[OutputSpec, ...] | None = None,
) -> tuple[Bundle, InputSpec, tuple[OutputSpec, ...]]:
    """The eval-mode module to export, its input spec and its outputs.

    ``model_outputs``: the model's outputs as :func:`zoo.spec_check.check_outputs` observed
    them (a model built with other options than the spec's defaults may have other shapes);
    default: the spec's.

    ``postprocess``: ``"none"``, ``"softmax"`` (class probabilities) or ``"topk"`` (the
    ``top_k`` best probabilities and their class indices); the last two need a classifier.
    Stochastic models export their deterministic eval path (the VAE uses z = mu).
    """
    if postprocess not in POSTPROCESS:
        raise UsageError(f"postprocess {postprocess!r} is not one of {', '.join(POSTPROCESS)}")
    if postprocess != "none":
        if spec.num_classes is None or len(spec.outputs) != 1:
            raise UsageError(
                f"--postprocess {postprocess} needs a classifier (one output of class scores); "
                f"{spec.name} is a {spec.task} model"
            )
        classes = (model_outputs or spec.outputs)[0].shape[-1]
        if postprocess == "topk" and not 1 <= top_k <= classes:
            raise UsageError(
                f"--top-k {top_k}: {spec.name} has {classes} classes; choose 1 to {classes}"
            )
    preprocess = None
    if not raw and spec.input.mean is not None:
        preprocess = default_transform(spec.input)
    bundle: Bundle
    if postprocess == "topk":
        bundle = TopKBundle(model, preprocess, top_k)
    else:
        bundle = (SoftmaxBundle if postprocess == "softmax" else Bundle)(model, preprocess)
    bundle.eval()
    for parameter in bundle.parameters():
        parameter.requires_grad_(False)
    outputs = bundle_outputs(
        spec, postprocess=postprocess, top_k=top_k, model_outputs=model_outputs
    )
    return bundle, bundle_input_spec(spec, raw=raw), outputs


@torch.no_grad()
def run_eager(bundle: nn.Module, x: Tensor) -> tuple[Tensor, ...]:
    out = bundle(x)
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)
