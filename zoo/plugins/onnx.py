"""ONNX, zoo's built-in format plugin: the torch.export-based exporter
(``torch.onnx.export(..., dynamo=True)``), checked in ONNX Runtime, and the ONNX Runtime
sessions ``zoo bench`` times.

onnx and onnxruntime are imported where they are used: loading this plugin (every ``zoo
list``) must stay cheap.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from zoo.errors import UsageError
from zoo.formats import (
    INT8_CPU_FEATURES,
    ONNX_DOMAINS,
    ExportRequest,
    Format,
    Runner,
)
from zoo.hookspecs import FormatRegistrar, RuntimeRegistrar, hookimpl
from zoo.plugins._tracing import dynamic_shapes, fresh_rnn_kernels, quiet_rnn_tracing
from zoo.registry import InputSpec
from zoo.runtimes import Runtime, Session, Source

__all__ = [
    "DEFAULT_OPSET",
    "EXTERNAL_DATA_BYTES",
    "OnnxFormat",
    "OnnxInt8Format",
    "OnnxRuntime",
    "OnnxRuntimeDefault",
    "OnnxRuntimeTensorRT",
    "check_external_data",
    "check_onnx",
    "export_onnx",
    "onnx_runner",
    "opset_range",
]

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
    with fresh_rnn_kernels(), quiet_rnn_tracing():
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


#: Above this many bytes of parameters, ONNX weights go to an external ``.data`` file.
EXTERNAL_DATA_BYTES = 100 * 2**20


def opset_range() -> tuple[int, int]:
    """Opsets the torch.export-based ONNX exporter can write here."""
    import onnx

    return 18, onnx.defs.onnx_opset_version()


def check_external_data(path: Path) -> None:
    """Refuse an ONNX model whose weights live anywhere but the file zoo writes beside it:
    ``model.onnx.data`` for ``model.onnx``, which the export's manifest hash-checks, and none
    for any other ONNX file (``model.int8.onnx`` is written whole). ONNX Runtime itself only
    refuses paths out of the model's directory."""
    import onnx

    _check_external_data(path, onnx.load(str(path), load_external_data=False))


def _check_external_data(path: Path, model: Any) -> None:
    import onnx

    allowed = OnnxFormat.files[1] if path.name == OnnxFormat.files[0] else None
    for tensor in _all_tensors(model):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        if location != allowed:
            where = f"only from {allowed} beside the model" if allowed else "from the file only"
            raise ValueError(
                f"tensor {tensor.name!r:.60} is stored in {location!r:.80}: zoo loads the "
                f"weights of {path.name} {where}"
            )


def _all_tensors(model: Any) -> Any:
    """Every tensor of an ONNX model that may keep its data in another file: initializers,
    sparse initializers (their values and indices), tensors in node attributes, dense and
    sparse, in the graph, in every subgraph and in the model's functions (onnx's own
    ``_get_all_tensors`` leaves the sparse ones out)."""

    def of_graph(graph: Any) -> Any:
        yield from graph.initializer
        for sparse in graph.sparse_initializer:
            yield from (sparse.values, sparse.indices)
        for node in graph.node:
            yield from of_node(node)

    def of_node(node: Any) -> Any:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("sparse_tensor"):
                yield from (attribute.sparse_tensor.values, attribute.sparse_tensor.indices)
            for sparse in attribute.sparse_tensors:
                yield from (sparse.values, sparse.indices)
            if attribute.HasField("g"):
                yield from of_graph(attribute.g)
            for graph in attribute.graphs:
                yield from of_graph(graph)

    yield from of_graph(model.graph)
    for function in model.functions:
        for node in function.node:
            yield from of_node(node)


def check_onnx(path: Path, domains: Sequence[str] = ()) -> None:
    """Refuse an ONNX model zoo does not run (ValueError naming the first problem): weights
    from anywhere but its own data file (:func:`check_external_data`), or an operator of a
    domain other than the standard ones zoo exports (:data:`zoo.formats.ONNX_DOMAINS`), the
    model's own functions' (whose bodies are checked too) and ``domains`` (those a format
    plugin declares). ONNX Runtime runs a custom domain's operators from native libraries:
    custom operators are code. Every subgraph (Loop, If, Scan bodies) is looked at."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)  # once for both checks
    _check_external_data(path, model)
    local = {f.domain for f in model.functions}
    allowed = ONNX_DOMAINS | local | set(domains)
    graphs = [("the graph", model.graph)] + [
        (f"function {f.domain}.{f.name}", f) for f in model.functions
    ]
    for where, graph in graphs:
        for node in _onnx_nodes(graph):
            if node.domain not in allowed:
                raise ValueError(
                    f"{where} runs {node.op_type!r:.60} of domain {node.domain!r:.60}: zoo runs "
                    f"only the standard ONNX domains (custom operators are native code)"
                )


def _onnx_nodes(graph: Any) -> Any:
    """Every node of an ONNX graph or function, those of its subgraphs included."""
    import onnx

    for node in graph.node:
        yield node
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                yield from _onnx_nodes(attribute.g)
            elif attribute.type == onnx.AttributeProto.GRAPHS:
                for sub in attribute.graphs:
                    yield from _onnx_nodes(sub)


def onnx_runner(path: Path, domains: Sequence[str] = ()) -> Runner:
    """The parity gate's runner of the ONNX model at ``path``: checked first
    (:func:`check_onnx`, with the extra operator ``domains`` a format declares), then run by
    ONNX Runtime's CPU provider, as zoo's ONNX formats (``onnx``, ``triton``) are gated."""
    import onnxruntime as ort

    check_onnx(path, domains)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(x: torch.Tensor) -> tuple[np.ndarray, ...]:
        return tuple(np.asarray(o) for o in session.run(None, {name: x.numpy()}))

    return run


class OnnxFormat(Format):
    """``model.onnx`` (+ ``model.onnx.data`` above 100 MB of weights), opset 18 and up,
    ``onnx.checker``'s full check, gated in ONNX Runtime's CPU provider."""

    name = "onnx"
    files: ClassVar[tuple[str, ...]] = ("model.onnx", "model.onnx.data")
    description = "model.onnx: torch.export-based exporter, opset 18+; runs with onnxruntime"
    default = True
    devices: ClassVar[tuple[str, ...]] = ("cpu", "cuda")

    def check_options(self, options: Mapping[str, Any]) -> None:
        opset = options.get("opset", DEFAULT_OPSET)
        low, high = opset_range()
        if not isinstance(opset, int) or not low <= opset <= high:
            raise UsageError(f"opset {opset} is not supported: choose {low} to {high}")

    def versions(self) -> dict[str, str]:
        import onnx
        import onnxruntime

        return {"onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}

    def export(self, request: ExportRequest) -> dict[str, Any]:
        import onnx

        opset = int(request.options.get("opset", DEFAULT_OPSET))
        path = request.path(self.files[0])
        size = sum(p.numel() * p.element_size() for p in request.module.parameters())
        external = size > EXTERNAL_DATA_BYTES
        export_onnx(
            request.module,
            request.example,
            request.input,
            path,
            output_names=request.output_names,
            opset=opset,
            external_data=external,
        )
        onnx.checker.check_model(str(path), full_check=True)
        return {"opset": opset, "external_data": external}

    def check_artifact(self, directory: Path) -> None:
        check_onnx(directory / self.files[0], self.operator_namespaces)

    def check_program(self, directory: Path) -> str | None:
        check_onnx(directory / self.files[0], self.operator_namespaces)
        return None

    def load(self, directory: Path, variant: str = "") -> Runner:
        return onnx_runner(directory / self.files[0], self.operator_namespaces)


#: The operators int8 quantization converts: the convolutions and matrix products, where the
#: time goes. The preprocessing (resize, normalise), pooling and activations stay float, so
#: the quantized model still takes what the fp32 one takes.
INT8_OPS = ("Conv", "MatMul", "Gemm")


def narrow_convs(path: Path) -> list[str]:
    """The names of the ``Conv`` nodes of the ONNX model at ``path`` that read one input
    channel (not depthwise ones: a group per channel). They stay fp32 in ``onnx-int8``: ONNX
    Runtime's int8 kernel is slower than its fp32 one there. On a Xeon with VNNI, LeNet's
    int8 model took 2.0 ms at batch 32 with its grey-image first convolution in int8, 1.4 ms
    with it in fp32 (the fp32 model: 0.56 ms; a model that small gains nothing from int8).
    resnet18's three-channel first convolution is faster in int8: the int8 model took 256 ms
    at batch 16 with it, 288 ms without (a busy machine)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    weights = {tensor.name: tensor for tensor in graph.initializer}

    def group(node: onnx.NodeProto) -> int:
        return next((a.i for a in node.attribute if a.name == "group"), 1)

    return [
        node.name
        for node in graph.node
        if node.op_type == "Conv"
        and len(node.input) > 1
        and node.input[1] in weights
        and len(weights[node.input[1]].dims) > 1
        and weights[node.input[1]].dims[1] == 1
        and group(node) == 1
    ]


class _CalibrationReader:
    """``onnxruntime.quantization.CalibrationDataReader``: the calibration inputs, a batch at
    a time."""

    def __init__(self, name: str, batches: list[torch.Tensor]) -> None:
        self.batches = iter([{name: b.numpy()} for b in batches])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.batches, None)


class OnnxInt8Format(OnnxFormat):
    """``model.int8.onnx``: ONNX Runtime's static post-training quantization of the fp32
    model (QDQ, int8 weights per channel, uint8 activations with ranges calibrated on the
    model's training data), gated on accuracy over held-out data."""

    name = "onnx-int8"
    files: ClassVar[tuple[str, ...]] = ("model.int8.onnx",)
    description = (
        "model.int8.onnx: static int8 (QDQ, per-channel) by onnxruntime's quantize_static, "
        "calibrated on training data"
    )
    default = False
    devices: ClassVar[tuple[str, ...]] = ("cpu",)
    precision = "int8"
    variant_of = "onnx"
    calibrated = True
    cpu_features = INT8_CPU_FEATURES

    def export(self, request: ExportRequest) -> dict[str, Any]:
        import tempfile

        batches = request.calibration_batches()
        from onnxruntime.quantization import (
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )
        from onnxruntime.quantization.shape_inference import quant_pre_process

        # The fp32 model (zoo's onnx format, written as it writes it) and its prepared copy
        # go beside the export, in its staging directory, removed before return: the space
        # the export checked, not /tmp's.
        fp32_format = OnnxFormat()
        with tempfile.TemporaryDirectory(prefix=".zoo-int8-", dir=request.directory) as tmp:
            opset = fp32_format.export(dataclasses.replace(request, directory=Path(tmp)))["opset"]
            fp32 = Path(tmp) / fp32_format.files[0]
            prepared = Path(tmp) / "model.prepared.onnx"
            quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
            kept = narrow_convs(prepared)
            quantize_static(
                str(prepared),
                str(request.path(self.files[0])),
                _CalibrationReader(request.input.name, batches),
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=list(INT8_OPS),
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
                nodes_to_exclude=kept,
            )
        return {
            "opset": opset,
            "method": "onnxruntime.quantization.quantize_static",
            "quant_format": "QDQ",
            "weights": "int8, per channel",
            "activations": "uint8, per tensor, MinMax",
            "operators": list(INT8_OPS),
            "kept_fp32": kept,
        }


@hookimpl
def zoo_register_formats(registry: FormatRegistrar) -> None:
    registry.register(OnnxFormat())
    registry.register(OnnxInt8Format())


_PROVIDER = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


class OnnxRuntime(Runtime):
    """zoo's ONNX Runtime session: the run's thread count, input and outputs bound once."""

    name = "onnxruntime"
    format = "onnx"
    description = "model.onnx, InferenceSession with the run's thread count (CPU or CUDA EP)"
    peer: ClassVar[str | None] = "onnxruntime-default"
    #: Whether the session's intra-op threads spin while they wait for work (ONNX Runtime's
    #: default). Spinning saves the wake-up of each call in a benchmark's tight loop; in a
    #: server it burns the CPU its event loop needs between requests (:meth:`serving`).
    spinning: bool = True

    def options(self, threads: int) -> Any:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if not self.spinning:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return options

    def serving(self) -> OnnxRuntime:
        """A copy whose threads sleep between calls. Measured (resnet18, 2 threads, zoo serve
        on 2 cores, closed loop with 4 clients): 84 requests/s instead of 65 with spinning
        threads, whose spin took the replica's event loop's CPU."""
        quiet = copy.copy(self)
        quiet.spinning = False
        return quiet

    def providers(self, device: str) -> list[str]:
        return (
            [_PROVIDER[device], "CPUExecutionProvider"] if device != "cpu" else [_PROVIDER[device]]
        )

    def unavailable(self, source: Source, device: str) -> str | None:
        why = super().unavailable(source, device)
        if why is None:
            try:
                import onnxruntime as ort
            except ImportError:
                return "onnxruntime is not installed"
            wanted = self.providers(device)[0]
            if wanted not in ort.get_available_providers():
                return f"this onnxruntime build has no {wanted}"
        return why

    def load(self, source: Source, device: str, threads: int) -> Session:
        import onnxruntime as ort

        path = source.artifact(self.format)
        assert path is not None
        session = ort.InferenceSession(
            str(path), sess_options=self.options(threads), providers=self.providers(device)
        )
        wanted = self.providers(device)[0]
        if session.get_providers()[0] != wanted:
            raise RuntimeError(
                f"onnxruntime fell back to {session.get_providers()[0]}: {wanted} did not load "
                "(CUDA, cuDNN or TensorRT libraries missing?)"
            )
        name = session.get_inputs()[0].name
        outputs = [o.name for o in session.get_outputs()]
        # Input and outputs are bound once per batch size (IOBinding): each timed call is
        # the inference itself, without converting a feed dict (measured: a few us less per
        # call for LeNet at batch 1, the same for large batches).
        binding = session.io_binding()
        where = "cpu" if device == "cpu" else "cuda"

        def prepare(x: Any) -> Any:
            array = np.ascontiguousarray(x.numpy())
            value = ort.OrtValue.ortvalue_from_numpy(array, where, 0)
            binding.clear_binding_inputs()
            binding.clear_binding_outputs()
            binding.bind_ortvalue_input(name, value)
            for output in outputs:
                binding.bind_output(output, where)
            return value  # keeps the input alive while it is bound

        def run(value: Any) -> Any:
            session.run_with_iobinding(binding)

        # On the CPU the outputs are ready when run_with_iobinding returns: no sync call.
        sync = binding.synchronize_outputs if device != "cpu" else (lambda: None)
        return Session(
            prepare=prepare,
            run=run,
            sync=sync,
            fetch=lambda _: binding.copy_outputs_to_cpu(),
        )


class OnnxRuntimeDefault(OnnxRuntime):
    name = "onnxruntime-default"
    description = "model.onnx, a plain InferenceSession(path) and session.run: the peer to beat"
    peer = None

    def load(self, source: Source, device: str, threads: int) -> Session:
        import onnxruntime as ort

        path = source.artifact(self.format)
        assert path is not None
        # ORT's defaults: one thread per physical core, all graph optimisations.
        session = ort.InferenceSession(str(path), providers=self.providers(device))
        name = session.get_inputs()[0].name

        def prepare(x: Any) -> dict[str, np.ndarray]:
            return {name: x.numpy()}

        def run(feed: dict[str, np.ndarray]) -> Any:
            return session.run(None, feed)

        return Session(prepare=prepare, run=run)


class OnnxRuntimeTensorRT(OnnxRuntime):
    name = "onnxruntime-trt"
    description = "model.onnx on ONNX Runtime's TensorRT EP (CUDA only)"
    devices = ("cuda",)
    peer = None

    def providers(self, device: str) -> list[str]:
        return ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


@hookimpl
def zoo_register_runtimes(registry: RuntimeRegistrar) -> None:
    registry.register(OnnxRuntime())
    registry.register(OnnxRuntimeDefault())
    registry.register(OnnxRuntimeTensorRT())
