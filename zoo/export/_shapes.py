"""Dynamic-shape specs for torch.export and the ONNX exporter, derived from an InputSpec."""

from __future__ import annotations

from typing import Any

from torch.export import Dim

from zoo.registry import InputSpec

__all__ = ["dynamic_shapes"]


def dynamic_shapes(spec: InputSpec, *, dynamic: bool = True) -> tuple[dict[int, Any]] | None:
    """``({axis: Dim(name)},)`` for the single input described by ``spec`` (None if static)."""
    if not dynamic or not spec.dynamic_axes:
        return None
    return ({axis: Dim(name, min=1, max=1 << 16) for axis, name in spec.dynamic_axes.items()},)
