"""ONNX through the torch.export-based exporter (``torch.onnx.export(..., dynamo=True)``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from zoo.export._shapes import dynamic_shapes, quiet_rnn_tracing
from zoo.registry import InputSpec

__all__ = ["DEFAULT_OPSET", "export_onnx"]

#: The exporter's own default; opsets below 18 go through a lossy version conversion.
DEFAULT_OPSET = 20


def export_onnx(
    model: nn.Module,
    example: torch.Tensor,
    spec: InputSpec,
    path: str | Path,
    *,
    output_names: Sequence[str],
    opset: int = DEFAULT_OPSET,
    dynamic: bool = True,
    external_data: bool = False,
) -> Path:
    """Write ``model`` (put in eval mode) to ``path`` with the spec's dynamic axes.

    Export from a batch of at least 2: with a batch of 1 the exporter may fix the batch
    axis despite the dynamic-shape spec.
    """
    model.eval()
    with quiet_rnn_tracing():
        program = torch.onnx.export(
            model,
            (example,),
            dynamo=True,
            input_names=[spec.name],
            output_names=list(output_names),
            dynamic_shapes=dynamic_shapes(spec, dynamic=dynamic),
            opset_version=opset,
            external_data=external_data,
            verbose=False,
        )
    if program is None:  # pragma: no cover - dynamo=True always returns a program
        raise RuntimeError("torch.onnx.export returned no program")
    program.save(str(path), external_data=external_data)
    return Path(path)
