"""Dynamic-shape specs for torch.export and the ONNX exporter, derived from an InputSpec."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

from torch.export import Dim

from zoo.registry import InputSpec

__all__ = ["dynamic_shapes", "quiet_rnn_tracing"]


@contextlib.contextmanager
def quiet_rnn_tracing() -> Iterator[None]:
    """Silence one tracing warning: "The tensor attributes ..._flat_weights were assigned".

    nn.LSTM/GRU re-assign their flat weight list while torch.export traces them; the
    exported graphs are checked against eager by the parity gate, so the note is noise.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"The tensor attributes .*_flat_weights", category=UserWarning
        )
        yield


def dynamic_shapes(spec: InputSpec, *, dynamic: bool = True) -> tuple[dict[int, Any]] | None:
    """``({axis: Dim(name)},)`` for the single input described by ``spec`` (None if static)."""
    if not dynamic or not spec.dynamic_axes:
        return None
    return ({axis: Dim(name, min=1, max=1 << 16) for axis, name in spec.dynamic_axes.items()},)
