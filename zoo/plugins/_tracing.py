"""Helpers of zoo's own PyTorch-based formats (``onnx``, ``pt2``, ``torchscript``): tracing
LSTM/GRU with a dynamic time axis, the ``dynamic_shapes`` of an input, and a runner for a
module that runs in PyTorch. Not part of the format interface (:mod:`zoo.formats`)."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from zoo.formats import Runner
from zoo.registry import InputSpec

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["dynamic_shapes", "fresh_rnn_kernels", "quiet_rnn_tracing", "torch_runner"]


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


@contextlib.contextmanager
def fresh_rnn_kernels() -> Iterator[None]:
    """Clear the dispatch caches of ``aten.lstm``/``aten.gru`` on entry and exit.

    To keep the time axis dynamic, torch.export and the ONNX exporter trace LSTM/GRU as a
    ``while_loop`` by swapping the ops' Python kernels, without clearing their dispatch
    caches: after one export, a stale cached kernel unrolls the loop of the next one, which
    then fixes the sequence length of its example (measured: the second ONNX export of the
    LSTM in a process took only 16 tokens). Every export that may trace an RNN runs in this.
    """
    import torch  # here: importing this module must not import torch

    ops = (torch.ops.aten.lstm.input, torch.ops.aten.gru.input)
    _clear_dispatch_caches(ops)
    try:
        yield
    finally:
        _clear_dispatch_caches(ops)


def _clear_dispatch_caches(ops: tuple[Any, ...]) -> None:
    for op in ops:
        cache = getattr(op, "_dispatch_cache", None)
        if cache is not None:
            cache.clear()


def dynamic_shapes(spec: InputSpec, *, dynamic: bool = True) -> tuple[dict[int, Any]] | None:
    """``({axis: Dim(name)},)`` for the single input described by ``spec`` (None if static):
    the ``dynamic_shapes`` of ``torch.export.export`` and ``torch.onnx.export``."""
    if not dynamic or not spec.dynamic_axes:
        return None
    from torch.export import Dim  # here: importing this module must not import torch

    return ({axis: Dim(name, min=1, max=1 << 16) for axis, name in spec.dynamic_axes.items()},)


def torch_runner(module: Callable[..., Any]) -> Runner:
    """A :data:`Runner` for a module that runs in PyTorch (TorchScript, ``.pt2``...)."""
    import torch  # here: importing this module must not import torch

    def run(x: Tensor) -> tuple[np.ndarray, ...]:
        with torch.no_grad():
            out = module(x)
        outs = tuple(out) if isinstance(out, (tuple, list)) else (out,)
        return tuple(o.detach().cpu().numpy() for o in outs)

    return run
