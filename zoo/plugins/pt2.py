"""torch.export, zoo's built-in format plugin: an ExportedProgram with the spec's dynamic axes
saved as ``.pt2`` (format ``pt2``), and that program compiled ahead of time by AOTInductor
(format ``aoti``); with the runtimes ``zoo bench`` times them in."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import json
import logging
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.export._patches import (
    register_gru_while_loop_decomposition,
    register_lstm_while_loop_decomposition,
)
from torch.export.passes import move_to_device_pass

from zoo.formats import (
    ExportRequest,
    Format,
    Runner,
    dynamic_shapes,
    fresh_rnn_kernels,
    quiet_rnn_tracing,
    torch_runner,
)
from zoo.hookspecs import FormatRegistrar, RuntimeRegistrar, hookimpl
from zoo.registry import InputSpec
from zoo.runtimes import Runtime, Session, Source, torch_session

__all__ = [
    "AotiFormat",
    "AotiRuntime",
    "Pt2Bf16Format",
    "Pt2Format",
    "Pt2Runtime",
    "bf16_module",
    "check_no_pickle",
    "export_program",
    "load",
    "load_aoti",
    "package_aoti",
    "save",
]


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
    with (
        fresh_rnn_kernels(),
        register_lstm_while_loop_decomposition(),
        register_gru_while_loop_decomposition(),
        fresh_rnn_kernels(),  # the patches are in place now: no stale kernel may hide them
    ):
        yield


def save(program: torch.export.ExportedProgram, path: str | Path) -> Path:
    # In memory, then written: on a full disk torch's archive writer aborts the process
    # (SIGABRT); a plain write raises OSError (ENOSPC), which zoo reports.
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    Path(path).write_bytes(buffer.getbuffer())
    return Path(path)


def load(path: str | Path) -> torch.export.ExportedProgram:
    """``torch.export.load`` of an archive :func:`check_no_pickle` passed; a file that is not
    a .pt2 archive raises its error once, without the traceback torch logs as a warning."""
    check_no_pickle(path)
    with _quiet_export_load():
        return torch.export.load(str(path))


def check_no_pickle(path: str | Path) -> None:
    """Refuse a ``.pt2`` that ``torch.export.load`` would unpickle.

    torch unpickles with ``weights_only=False`` (code runs) the weights and constants an
    archive marks ``use_pickle``, its custom and opaque objects, the legacy layouts, and the
    sample inputs when they do not load with ``weights_only=True``, and it loads any
    AOTInductor library inside. What ``torch.export.save`` writes for zoo's models has none
    of these, and no entry twice (zipfile and torch's reader may read different ones): such
    an archive was not written by zoo's export, and is refused (ValueError) before torch
    opens it.
    """
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        if len(names) != len(set(names)):
            # zipfile reads the last of two entries of one name, torch's reader may read the
            # first: what is checked here must be what torch loads.
            twice = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"the archive holds {twice[0]!r:.80} twice")
        if any("aotinductor/" in n for n in names):
            # torch.export.load loads a compiled library it finds inside: native code.
            raise ValueError("it holds an AOTInductor library (native code), not a program")
        legacy = "version" in names or any("serialized_" in n for n in names)
        if legacy or not any(n.endswith("/archive_format") for n in names):
            raise ValueError("not a torch.export archive of this torch (old layouts are pickles)")
        for name in names:
            parts = name.split("/")
            if name.endswith("_weights_config.json") or name.endswith("_constants_config.json"):
                entries = json.loads(archive.read(name)).get("config", {})
                for fqn, meta in entries.items():
                    pickled = meta.get("use_pickle") or not str(
                        meta.get("path_name", "")
                    ).startswith(("weight_", "tensor_"))
                    if pickled:
                        raise ValueError(
                            f"{fqn!r:.60} is stored as a pickle, which zoo never loads"
                        )
            elif len(parts) >= 2 and parts[-2] in ("weights", "constants") and name.endswith(".pt"):
                raise ValueError(f"{name!r:.80} is a pickled legacy payload, which zoo never loads")
            elif len(parts) >= 2 and parts[-2] == "sample_inputs":
                try:  # what torch tries first; if it failed, torch would unpickle in full
                    with warnings.catch_warnings():  # "Detected pickle protocol 4...": noise
                        warnings.simplefilter("ignore")
                        torch.load(io.BytesIO(archive.read(name)), weights_only=True)
                except Exception:
                    raise ValueError(
                        f"{name!r:.80} holds objects beyond tensors (a pickle zoo never loads)"
                    ) from None


@contextlib.contextmanager
def _quiet_export_load() -> Iterator[None]:
    def keep(record: logging.LogRecord) -> bool:
        return "error when deserializing" not in str(record.msg)

    logger = logging.getLogger("torch.export")
    logger.addFilter(keep)
    try:
        yield
    finally:
        logger.removeFilter(keep)


def package_aoti(program: torch.export.ExportedProgram, path: str | Path) -> Path:
    """Compile ``program`` ahead of time with AOTInductor into a ``.pt2`` package.

    The package holds a compiled shared library for this machine's CPU (and CUDA, if the
    program is on it) with the program's dynamic axes; it needs a C++ compiler at export time
    and only torch (``torch._inductor.aoti_load_package``) to run. Minutes for large models.
    """
    from torch._inductor import aoti_compile_and_package  # here: a second to import

    with _quiet_inductor():
        return Path(aoti_compile_and_package(program, package_path=str(path)))


def load_aoti(path: str | Path) -> Any:
    """Load an AOTInductor package; the result is called like the model."""
    from torch._inductor import aoti_load_package  # here: a second to import

    with _quiet_inductor():
        return aoti_load_package(str(path))


@contextlib.contextmanager
def _quiet_inductor() -> Iterator[None]:
    """Hide two log lines Inductor prints on every CPU-only compile, and nothing else:
    "No CUDA runtime is found, using CUDA_HOME" (a CUDA build of torch on a machine without a
    GPU) and "missing a c-shim implementation, using proxy executor" (a supported fallback)."""
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


class Pt2Format(Format):
    """``model.pt2``: ``torch.export.save`` of the ExportedProgram."""

    name = "pt2"
    files = ("model.pt2",)
    description = "model.pt2: torch.export ExportedProgram; runs with torch.export.load"
    default = True
    devices = ("cpu", "cuda")

    def export(self, request: ExportRequest) -> dict[str, Any]:
        program = export_program(request.module, request.example, request.input)
        save(program, request.path(self.files[0]))
        return {}

    def load(self, directory: Path, variant: str = "") -> Runner:
        return torch_runner(load(directory / self.files[0]).module())


class _Bf16(nn.Module):
    """A model run in bf16 behind an fp32 interface: a float input is cast to bf16, the
    outputs back to float32 (integer ones, token ids or class indices, pass as they are)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model.to(torch.bfloat16)

    def forward(self, x: torch.Tensor) -> Any:
        out = self.model(x.to(torch.bfloat16) if x.is_floating_point() else x)
        if isinstance(out, (tuple, list)):
            return tuple(o.float() if o.is_floating_point() else o for o in out)
        return out.float() if out.is_floating_point() else out


def bf16_module(module: nn.Module) -> nn.Module:
    """A copy of ``module`` (a bundle) whose model computes in bf16; the preprocessing and
    postprocessing stay fp32, and so do the inputs and outputs."""
    copy_ = copy.deepcopy(module)
    inner = getattr(copy_, "model", None)
    if isinstance(inner, nn.Module):
        copy_.model = _Bf16(inner)
        return copy_.eval()
    return _Bf16(copy_).eval()


class Pt2Bf16Format(Pt2Format):
    """``model.bf16.pt2``: the ExportedProgram of the bundle with its model's weights and
    arithmetic in bf16 (inputs and outputs stay fp32), gated on accuracy over held-out data.
    Fast where the CPU has AMX-BF16 (or at least AVX512-BF16) or on a GPU."""

    name = "pt2-bf16"
    files = ("model.bf16.pt2",)
    description = "model.bf16.pt2: torch.export of the bundle with the model in bf16"
    default = False
    precision = "bf16"
    variant_of = "pt2"
    cpu_features = ("amx_bf16", "avx512_bf16")

    def export(self, request: ExportRequest) -> dict[str, Any]:
        bf16 = dataclasses.replace(request, module=bf16_module(request.module))
        return {**super().export(bf16), "weights": "bfloat16", "interface": "float32"}


class AotiFormat(Format):
    """``model.aoti.pt2``: the program compiled ahead of time by AOTInductor for this
    machine's CPU. Native code generated for this export: its gate runs in a child process,
    so a crash fails this format instead of killing zoo."""

    name = "aoti"
    files = ("model.aoti.pt2",)
    description = (
        "model.aoti.pt2: AOTInductor package compiled for this CPU (needs a C++ compiler; "
        "minutes for large models)"
    )
    isolated = True

    def export(self, request: ExportRequest) -> dict[str, Any]:
        program = export_program(request.module, request.example, request.input)
        package_aoti(program, request.path(self.files[0]))
        return {}

    def load(self, directory: Path, variant: str = "") -> Runner:
        return torch_runner(load_aoti(directory / self.files[0]))


@hookimpl
def zoo_register_formats(registry: FormatRegistrar) -> None:
    registry.register(Pt2Format())
    registry.register(Pt2Bf16Format())
    registry.register(AotiFormat())


class Pt2Runtime(Runtime):
    name = "pt2"
    format = "pt2"
    description = "model.pt2, torch.export.load(...).module()"

    def load(self, source: Source, device: str, threads: int) -> Session:
        path = source.artifact(self.format)
        assert path is not None
        program = load(path)
        if device != "cpu":
            # Moves parameters, buffers and constants baked into the graph (device= args).
            program = move_to_device_pass(program, device)
        module = program.module()
        return torch_session(module, device)


class AotiRuntime(Runtime):
    name = "aoti"
    format = "aoti"
    description = "model.aoti.pt2, AOTInductor package (compiled at export, for the CPU)"
    devices = ("cpu",)  # zoo export compiles on the CPU; a CUDA package needs a GPU at export

    def load(self, source: Source, device: str, threads: int) -> Session:
        path = source.artifact(self.format)
        assert path is not None
        module = load_aoti(path)
        return torch_session(module, device)


@hookimpl
def zoo_register_runtimes(registry: RuntimeRegistrar) -> None:
    registry.register(Pt2Runtime())
    registry.register(AotiRuntime())
