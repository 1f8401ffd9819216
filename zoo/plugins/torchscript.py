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
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zoo._io import check_inflation
from zoo.formats import ExportRequest, Format, Runner, refused_operator
from zoo.hookspecs import FormatRegistrar, RuntimeRegistrar, hookimpl
from zoo.plugins._tracing import torch_runner
from zoo.runtimes import Runtime, Session, Source, torch_session

__all__ = [
    "TorchScriptFormat",
    "TorchScriptRuntime",
    "check_archive",
    "check_operators",
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
    path: str | Path,
    map_location: str | torch.device | None = "cpu",
    namespaces: Sequence[str] = (),
) -> torch.jit.ScriptModule:
    """Load a saved TorchScript module that is a program zoo runs (ValueError naming the
    first thing it refuses): a TorchScript program is code, and an export may come from
    anyone. Nothing in the archive runs while it loads (:func:`check_archive`), and every
    operator of every method of every submodule is a pure tensor operator
    (:func:`check_operators`)."""
    check_archive(path)
    with quiet_deprecation():
        module = torch.jit.load(str(path), map_location=map_location)
    check_operators(module, namespaces)
    return module


#: The largest code file a TorchScript archive may hold (zoo's are a few kilobytes).
MAX_CODE_BYTES = 16 * 2**20


def check_archive(path: str | Path) -> None:
    """Refuse a TorchScript archive whose code defines ``__setstate__``: ``torch.jit.load``
    runs it while it loads, before any graph can be looked at (a frozen module has none);
    and a zip bomb (a member that inflates over 100 times its size past a mebibyte)."""
    with zipfile.ZipFile(path) as archive:
        check_inflation(archive)
        for info in archive.infolist():
            if "/code/" not in info.filename or not info.filename.endswith(".py"):
                continue
            if info.file_size > MAX_CODE_BYTES:
                raise ValueError(
                    f"{info.filename!r:.80} holds {info.file_size:,} bytes of code: more than "
                    f"the {MAX_CODE_BYTES:,} zoo reads"
                )
            if b"__setstate__" in archive.read(info):
                raise ValueError(
                    f"{info.filename!r:.80} defines __setstate__, code torch.jit.load runs as "
                    "it loads: zoo does not load such a program"
                )


def check_operators(module: torch.jit.ScriptModule, namespaces: Sequence[str] = ()) -> None:
    """ValueError naming the first operator of ``module`` that is not a pure tensor operator
    (:func:`zoo.formats.refused_operator`: no ``aten::from_file``, ``aten::save``, custom
    namespaces or unknown ``prim::`` calls), in any method of any submodule, with the
    functions they call inlined."""
    for name, sub in module.named_modules():
        for method in sub._c._method_names():
            graph = sub._c._get_method(method).inlined_graph
            for node in _nodes(graph.block()):
                why = refused_operator(node.kind(), namespaces)
                if why is not None:
                    where = f"{name}.{method}" if name else method
                    raise ValueError(
                        f"its {where} calls {node.kind()}, which zoo does not run: {why}"
                    )


def _nodes(block: Any) -> Iterator[Any]:
    """Every node of a TorchScript block, those of the blocks inside (if, loop) included."""
    for node in block.nodes():
        yield node
        for inner in node.blocks():
            yield from _nodes(inner)


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

    def check_program(self, directory: Path) -> str | None:
        load(directory / self.files[0], namespaces=self.operator_namespaces)
        return None

    def load(self, directory: Path, variant: str = "") -> Runner:
        module = load(directory / self.files[0], namespaces=self.operator_namespaces)
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
