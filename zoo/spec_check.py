"""Does a built model do what its spec says? Its real outputs against the declared ones.

A :class:`~zoo.registry.ModelSpec` declares its outputs (names, per-sample shapes, dtypes) for
the builder's default options. ``zoo export`` writes them into the manifest and ``zoo train``
sizes the loss by them, so a model that returns ``[B, 7]`` while its spec says ``[B, 10]``
would export "successfully" with a manifest that lies, and train into an ``IndexError``.
:func:`check_outputs` runs the model once and refuses such a model before any work is done,
naming the mismatch; the conformance kit (``zoo check-plugin``) runs the same check.

What is compared depends on the options the model was built with:

* the builder's defaults (or only ``num_classes`` changed, for a classifier): every output's
  count, batch axis, per-sample shape and dtype; with ``num_classes`` changed, the class axis
  is expected to have the new size;
* other options (``hidden=128``, ``latent_dim=4``) may change shapes the spec cannot know: the
  count, batch axis, rank and dtype are compared, and the observed shapes are returned.

Importing this module does not import torch.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from zoo.errors import InvalidSpecError
from zoo.registry import ModelSpec, OutputSpec

if TYPE_CHECKING:
    from torch import Tensor, nn

__all__ = ["OutputMismatchError", "check_outputs", "expected_outputs", "observed_outputs"]


class OutputMismatchError(InvalidSpecError):
    """A model's real outputs differ from what its spec declares."""


def changed_options(spec: ModelSpec, args: Mapping[str, Any]) -> list[str]:
    """The options in ``args`` that differ from the builder's defaults."""
    defaults = spec.builder_parameters()
    return sorted(
        k
        for k, v in args.items()
        if k not in defaults or defaults[k] is inspect.Parameter.empty or defaults[k] != v
    )


def expected_outputs(
    spec: ModelSpec, args: Mapping[str, Any] | None = None
) -> tuple[tuple[OutputSpec, ...], bool]:
    """The outputs a model built with ``args`` should return, and whether their per-sample
    shapes are known (False: only count, rank and dtype can be compared)."""
    changed = changed_options(spec, args or {})
    outputs = spec.outputs
    if not changed:
        return outputs, True
    if changed == ["num_classes"] and spec.num_classes is not None:
        classes = int((args or {})["num_classes"])
        resized = tuple(
            OutputSpec(o.name, (*o.shape[:-1], classes), o.dtype)
            if o.shape and o.shape[-1] == spec.num_classes
            else o
            for o in outputs
        )
        return resized, True
    return outputs, False


def _as_outputs(spec: ModelSpec, raw: Any) -> Sequence[Tensor]:
    import torch  # here: importing this module must not import torch

    if isinstance(raw, torch.Tensor):
        return (raw,)
    if isinstance(raw, (tuple, list)) and all(isinstance(t, torch.Tensor) for t in raw):
        return tuple(raw)
    declared = ", ".join(o.name for o in spec.outputs)
    raise OutputMismatchError(
        f"model {spec.name!r} returns {type(raw).__name__}; zoo needs a tensor or a tuple of "
        f"tensors in the order of its spec's outputs ({declared}); fix the model's forward"
    )


def _dims(shape: Sequence[int]) -> str:
    return "[" + ", ".join(["B", *map(str, shape)]) + "]"


def observed_outputs(
    spec: ModelSpec,
    raw: Any,
    batch_size: int,
    args: Mapping[str, Any] | None = None,
    *,
    exact: bool = True,
) -> tuple[OutputSpec, ...]:
    """Check ``raw`` (what the model returned for a batch of ``batch_size``) against the spec;
    the outputs as observed (declared names, real per-sample shapes and dtypes). ``exact``:
    the input had the spec's per-sample shape (an input of another length on a dynamic axis
    may give outputs of other lengths: their rank is compared).

    Raises :class:`OutputMismatchError` naming the first mismatch.
    """
    got = _as_outputs(spec, raw)
    want, shapes_known = expected_outputs(spec, args)
    shapes_known = shapes_known and exact
    where = f"model {spec.name!r}" + (
        f" (built with {', '.join(f'{k}={v!r}' for k, v in sorted((args or {}).items()))})"
        if args
        else ""
    )
    fix = "fix the spec's outputs or the model"
    if len(got) != len(want):
        raise OutputMismatchError(
            f"{where} returns {len(got)} output(s) but its spec declares {len(want)} "
            f"({', '.join(o.name for o in want)}); {fix}"
        )
    observed = []
    for declared, tensor in zip(want, got, strict=True):
        shape = tuple(tensor.shape)
        dtype = str(tensor.dtype).removeprefix("torch.")
        real = _dims(shape[1:]) if shape else "a scalar"
        if not shape or shape[0] != batch_size:
            raise OutputMismatchError(
                f"{where}: output {declared.name!r} is {real} for a batch of {batch_size}; "
                f"outputs must keep the batch as their first axis; {fix}"
            )
        if dtype != declared.dtype:
            raise OutputMismatchError(
                f"{where}: output {declared.name!r} is {dtype}, its spec says "
                f"{declared.dtype}; {fix}"
            )
        if shapes_known and shape[1:] != declared.shape:
            raise OutputMismatchError(
                f"{where}: output {declared.name!r} is {real}, its spec says "
                f"{_dims(declared.shape)}; {fix}"
            )
        if not shapes_known and len(shape) - 1 != len(declared.shape):
            raise OutputMismatchError(
                f"{where}: output {declared.name!r} is {real}, its spec says "
                f"{_dims(declared.shape)} (a rank-{len(declared.shape) + 1} tensor); {fix}"
            )
        observed.append(OutputSpec(declared.name, shape[1:], dtype))
    return tuple(observed)


def check_outputs(
    spec: ModelSpec,
    model: nn.Module,
    args: Mapping[str, Any] | None = None,
    x: Tensor | None = None,
    *,
    exact: bool = True,
) -> tuple[OutputSpec, ...]:
    """Run ``model`` (built from ``spec`` with ``args``) in eval mode on ``x`` (default: the
    spec's example input, batch 2) and check its outputs against the spec; the observed
    outputs. The model's training mode is restored afterwards."""
    import torch  # here: importing this module must not import torch

    if x is None:
        x = spec.example_input(2)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            raw = model(x)
    finally:
        model.train(was_training)
    return observed_outputs(spec, raw, int(x.shape[0]), args, exact=exact)
