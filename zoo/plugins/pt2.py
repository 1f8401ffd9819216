"""torch.export, zoo's built-in format plugin: an ExportedProgram with the spec's dynamic axes
saved as ``.pt2`` (format ``pt2``), and that program compiled ahead of time by AOTInductor
(format ``aoti``); with the runtimes ``zoo bench`` times them in. Their reduced-precision
variants: ``pt2-bf16``, and ``aoti-int8`` (torchao's PT2E static quantization, compiled by
AOTInductor; torchao is imported only when it exports)."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import importlib.util
import io
import json
import logging
import platform
import warnings
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.export._patches import (
    register_gru_while_loop_decomposition,
    register_lstm_while_loop_decomposition,
)
from torch.export.passes import move_to_device_pass

from zoo._cpu import cpu_flags
from zoo._io import check_inflation
from zoo.formats import (
    INT8_CPU_FEATURES,
    ExportRequest,
    Format,
    Runner,
    refused_operator,
)
from zoo.hookspecs import FormatRegistrar, RuntimeRegistrar, hookimpl
from zoo.plugins._tracing import dynamic_shapes, fresh_rnn_kernels, quiet_rnn_tracing, torch_runner
from zoo.registry import InputSpec
from zoo.runtimes import (
    Runtime,
    Session,
    Source,
    copied_outputs,
    cuda_graphed,
    cuda_present,
    strict_fp32,
    torch_session,
)

__all__ = [
    "AotiCudaBf16Format",
    "AotiCudaFormat",
    "AotiCudaFp16Format",
    "AotiCudaGraphsRuntime",
    "AotiCudaRuntime",
    "AotiFormat",
    "AotiInt8Format",
    "AotiRuntime",
    "Pt2Bf16Format",
    "Pt2Format",
    "Pt2Fp16Format",
    "Pt2GraphsRuntime",
    "Pt2Runtime",
    "bf16_module",
    "check_no_pickle",
    "check_program",
    "export_program",
    "half_module",
    "load",
    "load_aoti",
    "package_aoti",
    "save",
]


def export_program(
    model: nn.Module,
    example: torch.Tensor,
    spec: InputSpec,
    *,
    dynamic: bool = True,
    strict: bool = False,
) -> torch.export.ExportedProgram:
    """Export ``model`` (put in eval mode) with the dynamic axes ``spec`` declares; non-strict
    (Python runs the model, as in eager) unless ``strict`` (traced by dynamo)."""
    model.eval()
    return _export(model, example, spec, dynamic=dynamic, strict=strict)


def _export(
    model: nn.Module,
    example: torch.Tensor,
    spec: InputSpec,
    *,
    dynamic: bool = True,
    strict: bool = False,
) -> torch.export.ExportedProgram:
    """:func:`export_program` without putting ``model`` in eval mode: for the module of an
    ExportedProgram, which refuses ``eval()`` (torchao's converted int8 model)."""
    shapes = dynamic_shapes(spec, dynamic=dynamic)
    with _rnn_loops(enabled=shapes is not None), quiet_rnn_tracing():
        return torch.export.export(model, (example,), dynamic_shapes=shapes, strict=strict)


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
    with warnings.catch_warnings():
        # A channels-last weight (half-precision conv nets) is not "complete" (contiguous)
        # to torch's writer, which then says it takes the tensor as it is: which is right.
        warnings.filterwarnings(
            "ignore", message=r"No complete tensor found in the group", category=UserWarning
        )
        torch.export.save(program, buffer)
    Path(path).write_bytes(buffer.getbuffer())
    return Path(path)


def load(path: str | Path, namespaces: Sequence[str] = ()) -> torch.export.ExportedProgram:
    """``torch.export.load`` of an archive :func:`check_no_pickle` passed, whose program
    calls only pure tensor operators (:func:`check_program`); a file that is not a .pt2
    archive raises its error once, without the traceback torch logs as a warning."""
    check_no_pickle(path)
    with _quiet_export_load():
        program = torch.export.load(str(path))
    check_program(program, namespaces)
    return program


#: The higher-order operators a program may call: control flow over its own subgraphs
#: (zoo's LSTM and GRU exports loop with ``while_loop``).
HIGHER_ORDER = frozenset({"cond", "while_loop", "map_impl", "scan"})
#: Python's own functions a deserialized graph may call: ``operator.getitem`` and friends.
_PYTHON_MODULES = frozenset({"_operator", "operator", "math", "builtins"})


def check_program(program: torch.export.ExportedProgram, namespaces: Sequence[str] = ()) -> None:
    """ValueError naming the first call of ``program`` (its graph and every subgraph) that is
    not a pure tensor operator (:func:`zoo.formats.refused_operator`: the same rule as
    TorchScript's), a higher-order operator other than control flow, or a Python function
    other than ``operator``'s, ``math``'s and ``torch.sym_*``."""
    for module in program.graph_module.modules():
        if not isinstance(module, torch.fx.GraphModule):
            continue
        for node in module.graph.nodes:
            if node.op in ("placeholder", "get_attr", "output"):
                continue
            why = _refused_call(node, namespaces)
            if why is not None:
                raise ValueError(f"its graph calls {why}, which zoo does not run")


def _refused_call(node: torch.fx.Node, namespaces: Sequence[str]) -> str | None:
    target = node.target
    if node.op != "call_function":
        return f"{node.op} {str(target)[:60]!r}: {node.op} is not in an exported program"
    if isinstance(target, (torch._ops.OpOverload, torch._ops.OpOverloadPacket)):
        name = target.name() if callable(getattr(target, "name", None)) else str(target)
        why = refused_operator(name, namespaces)
        return None if why is None else f"{name}: {why}"
    if isinstance(target, torch._ops.HigherOrderOperator):
        if target.name() in HIGHER_ORDER:
            return None
        return f"the higher-order operator {target.name()!r:.60}: only control flow is run"
    module = getattr(target, "__module__", None) or ""
    function = getattr(target, "__name__", "") or ""
    if module in _PYTHON_MODULES or (module == "torch" and function.startswith("sym_")):
        return None
    return f"the Python function {module}.{function}: not a tensor operator"


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
        check_inflation(archive)
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


def package_aoti(
    program: torch.export.ExportedProgram,
    path: str | Path,
    inductor_configs: Mapping[str, Any] | None = None,
) -> Path:
    """Compile ``program`` ahead of time with AOTInductor into a ``.pt2`` package.

    The package holds a compiled shared library for this machine's CPU (and CUDA, if the
    program is on it) with the program's dynamic axes; it needs a C++ compiler at export time
    and only torch (``torch._inductor.aoti_load_package``) to run. Minutes for large models.
    ``inductor_configs``: Inductor settings for this compile only (``freezing``...).
    """
    from torch._inductor import aoti_compile_and_package  # here: a second to import

    # Gradients off: Inductor freezes (folds the weights in as constants) only then.
    with _quiet_inductor(), torch.no_grad():
        return Path(
            aoti_compile_and_package(
                program, package_path=str(path), inductor_configs=dict(inductor_configs or {})
            )
        )


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

    def check_program(self, directory: Path) -> str | None:
        load(directory / self.files[0], self.operator_namespaces)
        return None

    def load(self, directory: Path, variant: str = "") -> Runner:
        return torch_runner(load(directory / self.files[0], self.operator_namespaces).module())


class _Half(nn.Module):
    """A model run in bf16 or fp16 behind an fp32 interface: a float input is cast to the
    model's dtype (and, for a convolutional net, to channels-last, the layout of the GPU's
    tensor-core convolutions and of oneDNN's), the outputs back to float32 (integer ones,
    token ids or class indices, pass as they are)."""

    def __init__(self, model: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.channels_last = _convolutional(model)
        model = model.to(dtype)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)  # the 4-d weights
        self.model = model
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> Any:
        if x.is_floating_point():
            if self.channels_last and x.dim() == 4:
                x = x.to(self.dtype, memory_format=torch.channels_last)
            else:
                x = x.to(self.dtype)
        out = self.model(x)
        if isinstance(out, (tuple, list)):
            return tuple(o.float() if o.is_floating_point() else o for o in out)
        return out.float() if out.is_floating_point() else out


def _convolutional(model: nn.Module) -> bool:
    """Whether ``model`` has 2-d convolutions: its half-precision artifact is channels-last."""
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


#: The reduced float precisions an ExportedProgram is written in.
HALF = {"bf16": torch.bfloat16, "fp16": torch.float16}


def half_module(module: nn.Module, precision: str) -> nn.Module:
    """A copy of ``module`` (a bundle) whose model computes in ``precision`` (bf16 or fp16,
    channels-last for a convolutional net); the preprocessing and postprocessing stay fp32,
    and so do the inputs and outputs."""
    dtype = HALF[precision]
    copy_ = copy.deepcopy(module)
    inner = getattr(copy_, "model", None)
    if isinstance(inner, nn.Module):
        copy_.model = _Half(inner, dtype)
        return copy_.eval()
    return _Half(copy_, dtype).eval()


def bf16_module(module: nn.Module) -> nn.Module:
    """:func:`half_module` in bf16."""
    return half_module(module, "bf16")


class Pt2Bf16Format(Pt2Format):
    """``model.bf16.pt2``: the ExportedProgram of the bundle with its model's weights and
    arithmetic in bf16 (inputs and outputs stay fp32; channels-last for a convolutional
    net), gated on accuracy over held-out data. Fast where the CPU has AMX-BF16 (or at least
    AVX512-BF16) or on a GPU."""

    name = "pt2-bf16"
    files = ("model.bf16.pt2",)
    description = "model.bf16.pt2: torch.export of the bundle with the model in bf16"
    default = False
    precision = "bf16"
    variant_of = "pt2"
    cpu_features = ("amx_bf16", "avx512_bf16")

    def export(self, request: ExportRequest) -> dict[str, Any]:
        half = dataclasses.replace(request, module=half_module(request.module, self.precision))
        return {**super().export(half), **_half_details(request.module, self.precision)}


class Pt2Fp16Format(Pt2Bf16Format):
    """``model.fp16.pt2``: as ``pt2-bf16`` in fp16, the half precision of GPU tensor cores
    (fp16 keeps 3 more mantissa bits than bf16 over a narrower range); gated on accuracy.
    It runs on a CPU too, fast only with AVX512-FP16 or AMX-FP16."""

    name = "pt2-fp16"
    files = ("model.fp16.pt2",)
    description = "model.fp16.pt2: torch.export of the bundle with the model in fp16 (GPUs)"
    precision = "fp16"
    cpu_features = ("amx_fp16", "avx512_fp16")


def _half_details(module: nn.Module, precision: str) -> dict[str, Any]:
    """What the manifest says of ``module`` (a bundle) written in ``precision``."""
    layout = "channels_last" if _convolutional(getattr(module, "model", module)) else "contiguous"
    weights = str(HALF[precision]).removeprefix("torch.")  # bfloat16, float16
    return {"weights": weights, "interface": "float32", "memory_format": layout}


#: What an AOTInductor package is, for the operator rule: a compiled library, whose code zoo
#: cannot list (docs/hardening.md: which artifacts remain code).
NATIVE = "an AOTInductor package is native code: its operators cannot be listed"


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

    def check_program(self, directory: Path) -> str | None:
        return NATIVE

    def load(self, directory: Path, variant: str = "") -> Runner:
        return torch_runner(load_aoti(directory / self.files[0]))


class AotiCudaFormat(Format):
    """``model.cuda.aoti.pt2``: the program compiled ahead of time by AOTInductor for this
    machine's GPU (Triton kernels, cuDNN/cuBLAS calls, a C++ wrapper): no Python when it
    runs. Compiling for CUDA needs a CUDA device at export time; the ``aoti-cuda`` runtime
    calls it, ``aoti-cuda-graphs`` replays it as a CUDA graph. Native code generated for
    this export: its gate runs in a child process."""

    name = "aoti-cuda"
    files = ("model.cuda.aoti.pt2",)
    label = "AOTI-CUDA"
    description = (
        "model.cuda.aoti.pt2: AOTInductor package compiled for this GPU (needs a CUDA device "
        "and a C++ compiler at export)"
    )
    isolated = True
    devices = ("cuda",)

    def unavailable(self) -> str | None:
        if not cuda_present():
            return "AOTInductor compiles for CUDA on a CUDA device, and there is none here"
        return None

    def module(self, request: ExportRequest) -> nn.Module:
        """The bundle to compile, in this format's precision."""
        return copy.deepcopy(request.module)

    def export(self, request: ExportRequest) -> dict[str, Any]:
        strict_fp32()  # the compile may benchmark kernels: in fp32, not TF32
        module = self.module(request).to("cuda")
        program = export_program(module, request.example.to("cuda"), request.input)
        # Frozen: the weights are constants, so Inductor folds each batch norm into its
        # convolution (fewer kernels per call: what bounds a small net at batch 1).
        package_aoti(program, request.path(self.files[0]), {"freezing": True})
        return {
            "device": torch.cuda.get_device_name(),
            "capability": _capability(),
            "inductor": {"freezing": True},
        }

    def check_program(self, directory: Path) -> str | None:
        return NATIVE

    def load(self, directory: Path, variant: str = "") -> Runner:
        strict_fp32()  # the gate compares fp32 with the CPU's fp32: no TF32 here
        package = load_aoti(directory / self.files[0])
        return torch_runner(lambda x: package(x.to("cuda")))


def _capability() -> str:
    major, minor = torch.cuda.get_device_capability()
    return f"sm_{major}{minor}"


class AotiCudaBf16Format(AotiCudaFormat):
    """``model.bf16.cuda.aoti.pt2``: ``aoti-cuda`` with the model in bf16 (channels-last for a
    convolutional net; inputs and outputs stay fp32), gated on accuracy."""

    name = "aoti-cuda-bf16"
    files = ("model.bf16.cuda.aoti.pt2",)
    label = ""
    description = "model.bf16.cuda.aoti.pt2: aoti-cuda with the model in bf16"
    precision = "bf16"
    variant_of = "aoti-cuda"

    def module(self, request: ExportRequest) -> nn.Module:
        return half_module(request.module, self.precision)

    def export(self, request: ExportRequest) -> dict[str, Any]:
        return {**super().export(request), **_half_details(request.module, self.precision)}


class AotiCudaFp16Format(AotiCudaBf16Format):
    """``model.fp16.cuda.aoti.pt2``: ``aoti-cuda`` with the model in fp16, the precision of
    the tensor cores' fastest convolutions (channels-last for a convolutional net)."""

    name = "aoti-cuda-fp16"
    files = ("model.fp16.cuda.aoti.pt2",)
    description = "model.fp16.cuda.aoti.pt2: aoti-cuda with the model in fp16"
    precision = "fp16"


def _missing_torchao() -> str | None:
    # Looked up, not imported: importing torchao takes seconds, and zoo formats asks every
    # format.
    if importlib.util.find_spec("torchao") is None:
        return "torchao is not installed: pip install torchao"
    return None


def _torchao() -> Any:
    """torchao's x86 quantizer module, imported here (seconds: only when exporting int8).

    The import logs a deprecation note from torch ("<enum 'KernelPreference'> is an Enum
    subclass and is now natively supported...", torchao registering an enum as a pytree
    constant), hidden here and nowhere else. It also sets Inductor's global
    ``pre_grad_custom_pass`` to torchao's quant lift-up pass; the global is restored, and
    :meth:`AotiInt8Format.export` passes the pass for its own compile only.
    """
    import torch._inductor.config as inductor_config

    def keep(record: logging.LogRecord) -> bool:
        return "is an Enum subclass and is now natively supported" not in str(record.msg)

    logger = logging.getLogger("torch.utils._pytree")
    logger.addFilter(keep)
    before = inductor_config.pre_grad_custom_pass
    try:
        from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer
    finally:
        inductor_config.pre_grad_custom_pass = before
        logger.removeFilter(keep)
    return x86_inductor_quantizer


def _single_channel_convolutions(program: torch.export.ExportedProgram, scope: str) -> list[str]:
    """The modules in ``scope`` whose convolutions take a single input channel.

    Inductor (torch 2.14) compiles such an int8 convolution wrongly when the batch axis is
    dynamic: it takes the output of oneDNN's quantized convolution as contiguous when it is
    channels-last (an input of one channel is both), and the next layer reads scrambled
    values (LeNet's logits were off by as much as their own size). Left in fp32 they cost
    little: one input channel is the least work of any layer.
    """
    aten = torch.ops.aten
    names = []
    for node in program.graph.nodes:
        if node.target not in (aten.conv1d.default, aten.conv2d.default):
            continue
        value = node.args[0].meta.get("val") if isinstance(node.args[0], torch.fx.Node) else None
        stack = node.meta.get("nn_module_stack") or {}
        if value is None or value.shape[1] != 1 or not stack:
            continue
        name = list(stack.values())[-1][0]
        if not scope or name.startswith(scope + "."):
            names.append(name)
    return list(dict.fromkeys(names))


class AotiInt8Format(AotiFormat):
    """``model.int8.aoti.pt2``: the bundle statically quantized to int8 with torchao's PT2E
    flow (``X86InductorQuantizer``: int8 weights per channel, uint8 activations per tensor,
    their ranges calibrated on training inputs), then compiled by AOTInductor with the weights
    frozen, so that Inductor fuses oneDNN's int8 convolutions and matrix products. Only the
    model is quantized: the preprocessing stays fp32. Loaded by the ``aoti`` runtime."""

    name = "aoti-int8"
    files = ("model.int8.aoti.pt2",)
    description = (
        "model.int8.aoti.pt2: torchao PT2E static int8 (X86InductorQuantizer), compiled by "
        "AOTInductor for this CPU"
    )
    precision = "int8"
    variant_of = "aoti"
    calibrated = True
    cpu_features = INT8_CPU_FEATURES

    def unavailable(self) -> str | None:
        if platform.machine().lower() not in ("x86_64", "amd64"):
            return f"torchao's X86InductorQuantizer targets x86 CPUs, not {platform.machine()}"
        return _missing_torchao()

    def versions(self) -> dict[str, str]:
        return {"torchao": metadata.version("torchao")}

    def export(self, request: ExportRequest) -> dict[str, Any]:
        batches = request.calibration_batches()
        xiq = _torchao()
        from torchao.quantization.pt2e import move_exported_model_to_eval
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

        program = export_program(request.module, request.example, request.input)
        flags = cpu_flags()
        # torchao: without VNNI, int8 products may saturate; a 7-bit activation range avoids it.
        reduce_range = flags is not None and not any(f in flags for f in INT8_CPU_FEATURES)
        config = xiq.get_default_x86_inductor_quantization_config(reduce_range=reduce_range)
        quantizer = xiq.X86InductorQuantizer()
        # Only the model: the bundle's preprocessing stays fp32 whatever it computes (the
        # default recipe quantizes a mul too, and an RGB-to-grey luma product is one).
        scope = "model" if isinstance(getattr(request.module, "model", None), nn.Module) else ""
        fp32 = _single_channel_convolutions(program, scope)
        for name in fp32:  # the first annotation of a node wins: these before the scope
            quantizer.set_module_name_qconfig(name, None)
        if scope:
            quantizer.set_module_name_qconfig(scope, config)
        else:
            quantizer.set_global(config)
        try:
            prepared = _prepare(program, quantizer)
        except ValueError as exc:
            if "more than one output node" not in str(exc):
                raise
            # A module called twice (torchvision's BasicBlock calls its one ReLU twice): in a
            # non-strict export both calls are one source partition, which the quantizer's
            # pattern matching refuses. Dynamo's (strict) export tells the calls apart.
            program = export_program(request.module, request.example, request.input, strict=True)
            prepared = _prepare(program, quantizer)
        with torch.no_grad():
            for batch in batches:
                prepared(batch)
        move_exported_model_to_eval(prepared)
        converted = convert_pt2e(prepared)
        quantized = _export(converted, request.example, request.input)  # eval: done above
        with _quiet_mkldnn_lowering():
            package_aoti(
                quantized,
                request.path(self.files[0]),
                {"freezing": True, "pre_grad_custom_pass": xiq.quant_lift_up},
            )
        return {
            "method": "torchao PT2E (prepare_pt2e, convert_pt2e) + AOTInductor",
            "quantizer": "X86InductorQuantizer, get_default_x86_inductor_quantization_config",
            "weights": "int8, per channel, symmetric (PerChannelMinMaxObserver)",
            "activations": "uint8, per tensor, affine (HistogramObserver)"
            + (", 7-bit range (no VNNI)" if reduce_range else ""),
            "quantized": f"{scope} (the preprocessing stays fp32)" if scope else "all",
            "fp32_layers": fp32,
            "inductor": {"freezing": True},
            "torchao": metadata.version("torchao"),
        }


def _prepare(program: torch.export.ExportedProgram, quantizer: Any) -> Any:
    """torchao's ``prepare_pt2e`` of ``program``'s module: observers where ``quantizer`` says."""
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    with warnings.catch_warnings():
        # A max-pool after a layer left in fp32 stays fp32, as it should; torchao warns.
        warnings.filterwarnings(
            "ignore", message=r"The input of maxpool2d is not quantized", category=UserWarning
        )
        return prepare_pt2e(program.module(), quantizer)


@contextlib.contextmanager
def _quiet_mkldnn_lowering() -> Iterator[None]:
    """Hide "To copy construct from a tensor, it is recommended to use
    sourceTensor.detach().clone()": Inductor's own lowering of an int8 convolution's weight
    zero points warns so, once per layer, on every compile."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"To copy construct from a tensor", category=UserWarning
        )
        yield


@hookimpl
def zoo_register_formats(registry: FormatRegistrar) -> None:
    registry.register(Pt2Format())
    registry.register(Pt2Bf16Format())
    registry.register(Pt2Fp16Format())
    registry.register(AotiFormat())
    registry.register(AotiInt8Format())
    registry.register(AotiCudaFormat())
    registry.register(AotiCudaBf16Format())
    registry.register(AotiCudaFp16Format())


class Pt2Runtime(Runtime):
    name = "pt2"
    format = "pt2"
    description = "model.pt2, torch.export.load(...).module()"
    peer = "eager"
    peer_note = (
        "the program's module runs its graph node by node through Python, one kernel per "
        "node as eager does, with no fusion and no CUDA graphs: pt2-graphs compiles the "
        "same program, aoti and aoti-cuda ship it compiled"
    )

    def load(self, source: Source, device: str, threads: int) -> Session:
        return torch_session(_program_module(source, self.format, device), device)


def _program_module(source: Source, fmt: str | None, device: str) -> nn.Module:
    """The module of ``source``'s program of format ``fmt`` (or its variant), on ``device``."""
    path = source.artifact(fmt) if fmt is not None else None
    assert path is not None
    program = load(path)
    if device != "cpu":
        # Moves parameters, buffers and constants baked into the graph (device= args).
        program = move_to_device_pass(program, device)
    return program.module()


class Pt2GraphsRuntime(Runtime):
    """The ``.pt2`` program (or its bf16/fp16 variant) compiled by ``torch.compile(mode=
    "reduce-overhead")``: Inductor's fused kernels, replayed as CUDA graphs on a GPU (one
    graph per batch size). On a CPU it compiles without graphs."""

    name = "pt2-graphs"
    format = "pt2"
    description = (
        "model.pt2 through torch.compile(mode='reduce-overhead'): Inductor, CUDA graphs on a GPU"
    )

    def load(self, source: Source, device: str, threads: int) -> Session:
        import torch._dynamo  # here: it takes a second to import, and zoo list loads plugins

        module = _program_module(source, self.format, device)
        torch._dynamo.config.allow_rnn = True  # else Dynamo skips LSTM/GRU: eager in disguise
        compiled = torch.compile(module, mode="reduce-overhead", dynamic=False)
        session = torch_session(compiled, device)
        if device == "cuda":
            # A call's outputs live in the graphs' memory until the next call, which starts
            # a new step (outputs of the last step are overwritten, not reread).
            mark = torch.compiler.cudagraph_mark_step_begin

            def run(x: torch.Tensor) -> Any:
                mark()
                return compiled(x)

            session.run = run
            session.fetch = copied_outputs
        return session


class AotiRuntime(Runtime):
    name = "aoti"
    format = "aoti"
    description = "model.aoti.pt2, AOTInductor package (compiled at export, for the CPU)"
    devices = ("cpu",)  # a package for CUDA is format aoti-cuda, run by runtime aoti-cuda

    def load(self, source: Source, device: str, threads: int) -> Session:
        path = source.artifact(self.format)
        assert path is not None
        module = load_aoti(path)
        return torch_session(module, device)


class AotiCudaRuntime(Runtime):
    """An AOTInductor package for the GPU, called as it is: its C++ wrapper launches the
    kernels, without Python in between."""

    name = "aoti-cuda"
    format = "aoti-cuda"
    description = "model.cuda.aoti.pt2, AOTInductor's package for the GPU"
    devices = ("cuda",)

    def load(self, source: Source, device: str, threads: int) -> Session:
        path = source.artifact(self.format)
        assert path is not None
        return self.session(load_aoti(path), device)

    def session(self, package: Any, device: str) -> Session:
        """How the loaded package is called."""
        return torch_session(package, device)


class AotiCudaGraphsRuntime(AotiCudaRuntime):
    """The same package captured once per batch size as a CUDA graph and replayed: one
    launch per call instead of one per kernel. A row of its own beside ``aoti-cuda``: where
    the capture fails, this row says why and the plain package's row still stands."""

    name = "aoti-cuda-graphs"
    description = "model.cuda.aoti.pt2, AOTInductor's package replayed as a CUDA graph"

    def session(self, package: Any, device: str) -> Session:
        return cuda_graphed(package)


@hookimpl
def zoo_register_runtimes(registry: RuntimeRegistrar) -> None:
    registry.register(Pt2Runtime())
    registry.register(Pt2GraphsRuntime())
    registry.register(AotiRuntime())
    registry.register(AotiCudaRuntime())
    registry.register(AotiCudaGraphsRuntime())
