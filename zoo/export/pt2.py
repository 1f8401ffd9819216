"""torch.export: an ExportedProgram with the spec's dynamic axes, saved as ``.pt2``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zoo.export._shapes import dynamic_shapes, quiet_rnn_tracing
from zoo.registry import InputSpec

__all__ = ["export_program", "load", "load_aoti", "package_aoti", "save"]


def export_program(
    model: nn.Module, example: torch.Tensor, spec: InputSpec, *, dynamic: bool = True
) -> torch.export.ExportedProgram:
    """Export ``model`` (put in eval mode) with the dynamic axes ``spec`` declares."""
    model.eval()
    shapes = dynamic_shapes(spec, dynamic=dynamic)
    with _rnn_loops(enabled=shapes is not None), quiet_rnn_tracing():
        return torch.export.export(model, (example,), dynamic_shapes=shapes, strict=False)


@contextlib.contextmanager
def _rnn_loops(*, enabled: bool) -> Iterator[None]:
    """Trace LSTM/GRU as a ``while_loop`` so the time axis stays dynamic.

    By default ``aten.lstm``/``aten.gru`` decompose into one step per time step, which fixes
    the sequence length of the example; the ONNX exporter applies the same patches.
    """
    if not enabled:
        yield
        return
    from torch.export._patches import (
        register_gru_while_loop_decomposition,
        register_lstm_while_loop_decomposition,
    )

    ops = (torch.ops.aten.lstm.input, torch.ops.aten.gru.input)
    # The patches swap py_kernels without clearing the ops' dispatch caches, so after one
    # export (the ONNX exporter applies them too) a stale cached kernel unrolls the loop
    # again. Clearing the caches on entry and exit makes each export see the patch.
    _clear_dispatch_caches(ops)
    try:
        with register_lstm_while_loop_decomposition(), register_gru_while_loop_decomposition():
            _clear_dispatch_caches(ops)
            yield
    finally:
        _clear_dispatch_caches(ops)


def _clear_dispatch_caches(ops: tuple[Any, ...]) -> None:
    for op in ops:
        cache = getattr(op, "_dispatch_cache", None)
        if cache is not None:
            cache.clear()


def save(program: torch.export.ExportedProgram, path: str | Path) -> Path:
    torch.export.save(program, str(path))
    return Path(path)


def load(path: str | Path) -> torch.export.ExportedProgram:
    return torch.export.load(str(path))


def package_aoti(program: torch.export.ExportedProgram, path: str | Path) -> Path:
    """Compile ``program`` ahead of time with AOTInductor into a ``.pt2`` package.

    The package holds a compiled shared library for this machine's CPU (and CUDA, if the
    program is on it) with the program's dynamic axes; it needs a C++ compiler at export time
    and only torch (``torch._inductor.aoti_load_package``) to run. Minutes for large models.
    """
    from torch._inductor import aoti_compile_and_package

    with _quiet_inductor():
        return Path(aoti_compile_and_package(program, package_path=str(path)))


def load_aoti(path: str | Path) -> Any:
    """Load an AOTInductor package; the result is called like the model."""
    from torch._inductor import aoti_load_package

    with _quiet_inductor():
        return aoti_load_package(str(path))


@contextlib.contextmanager
def _quiet_inductor() -> Iterator[None]:
    """Hide two log lines Inductor prints on every CPU-only compile, and nothing else:
    "No CUDA runtime is found, using CUDA_HOME" (a CUDA build of torch on a machine without a
    GPU) and "missing a c-shim implementation, using proxy executor" (a supported fallback)."""
    import logging

    noise = ("No CUDA runtime is found", "is missing a c-shim implementation")

    def keep(record: logging.LogRecord) -> bool:
        return not any(n in str(record.msg) for n in noise)

    loggers = [logging.getLogger(n) for n in ("torch.utils.cpp_extension", "torch._inductor.ir")]
    for logger in loggers:
        logger.addFilter(keep)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(keep)
