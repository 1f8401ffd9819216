"""TorchScript, zoo's built-in format plugin: scripting (with a trace fallback), saving,
loading, and the runtime that times it; every ``torch.jit`` call of zoo is in this module.

TorchScript is deprecated upstream and ``torch.jit.script/trace/load`` print a
FutureWarning/DeprecationWarning saying so. zoo still ships it because many runtimes load it;
the warning is silenced here, for these calls only, by message.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zoo.formats import ExportRequest, Format, Runner, torch_runner
from zoo.hookspecs import FormatRegistrar, RuntimeRegistrar, hookimpl
from zoo.runtimes import Runtime, Session, Source, torch_session

__all__ = [
    "TorchScriptFormat",
    "TorchScriptRuntime",
    "export_torchscript",
    "load",
    "optimize",
    "quiet_deprecation",
    "script",
    "trace",
]


@contextlib.contextmanager
def quiet_deprecation() -> Iterator[None]:
    """Silence only TorchScript's "`torch.jit.X` is deprecated" warnings in this block.

    For zoo's own torch.jit calls, and for libraries that call torch.jit for zoo (TensorBoard's
    model graph traces the model).
    """
    with warnings.catch_warnings():
        for category in (FutureWarning, DeprecationWarning):
            warnings.filterwarnings(
                "ignore", message=r"`torch\.jit\.\w+` is deprecated", category=category
            )
        yield


def script(model: nn.Module) -> torch.jit.ScriptModule:
    """``torch.jit.script(model)``; raises whatever TorchScript raises if it cannot."""
    with quiet_deprecation():
        return torch.jit.script(model)


def trace(model: nn.Module, *example: torch.Tensor) -> torch.jit.ScriptModule:
    """``torch.jit.trace`` on ``example`` (fixed control flow; used when scripting fails)."""
    with quiet_deprecation():
        return torch.jit.trace(model, example)


def load(
    path: str | Path, map_location: str | torch.device | None = "cpu"
) -> torch.jit.ScriptModule:
    """Load a saved TorchScript module."""
    with quiet_deprecation():
        return torch.jit.load(str(path), map_location=map_location)


def optimize(module: torch.jit.ScriptModule) -> torch.jit.ScriptModule:
    """``torch.jit.optimize_for_inference`` on a loaded (frozen) module: conv-bn folding,
    MKL-DNN layouts. Apply it after loading, never before saving (see ``export_torchscript``).
    """
    with quiet_deprecation():
        return torch.jit.optimize_for_inference(module)


def export_torchscript(module: nn.Module, example: torch.Tensor, path: str | Path) -> str:
    """Script ``module`` (tracing it on ``example`` if it cannot script), freeze, save.

    Returns ``"script"`` or ``"trace"``. The frozen module is saved *without*
    ``optimize_for_inference``: saved after it, conv models fail to load back (measured
    here); runtimes optimise after loading instead.
    """
    module = module.eval()
    try:
        compiled = script(module)
        method = "script"
    except Exception:
        compiled = trace(module, example)
        method = "trace"
    with quiet_deprecation():
        frozen = torch.jit.freeze(compiled)
        # In memory, then written: on a full disk torch's archive writer aborts the process
        # (SIGABRT); a plain write raises OSError (ENOSPC), which zoo reports.
        buffer = io.BytesIO()
        torch.jit.save(frozen, buffer)
        Path(path).write_bytes(buffer.getbuffer())
    return method


class TorchScriptFormat(Format):
    """``model.ts``: scripted (traced where the model cannot script), frozen; checked as
    loaded and after ``optimize_for_inference``, which is how zoo's runtime runs it."""

    name = "torchscript"
    files = ("model.ts",)
    label = "TS"
    description = "model.ts: scripted (or traced), frozen; runs with torch.jit.load"
    default = True
    devices = ("cpu", "cuda")
    variants = ("optimized",)

    def export(self, request: ExportRequest) -> dict[str, Any]:
        path = request.path(self.files[0])
        return {"method": export_torchscript(request.module, request.example, path)}

    def load(self, directory: Path, variant: str = "") -> Runner:
        module = load(directory / self.files[0])
        if variant == "optimized":
            module = optimize(module)
        return torch_runner(module)


@hookimpl
def zoo_register_formats(registry: FormatRegistrar) -> None:
    registry.register(TorchScriptFormat())


class TorchScriptRuntime(Runtime):
    """The frozen ``model.ts``, loaded and passed through ``optimize_for_inference`` (after
    loading: a module saved after it does not load back)."""

    name = "torchscript"
    format = "torchscript"
    description = "model.ts, torch.jit.load + optimize_for_inference"

    def load(self, source: Source, device: str, threads: int) -> Session:
        path = source.artifact(self.format)
        assert path is not None
        module = optimize(load(path, map_location=device))
        return torch_session(module, device)


@hookimpl
def zoo_register_runtimes(registry: RuntimeRegistrar) -> None:
    registry.register(TorchScriptRuntime())
