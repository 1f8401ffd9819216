"""OpenVINO as a zoo deploy target: an export format and the runtime that times it.

``zoo export NAME --format openvino`` writes ``model.xml`` + ``model.bin`` (OpenVINO IR, fp32
weights), converted from zoo's own ONNX export of the same bundle, so the preprocessing is
inside; zoo's parity gate then checks it on OpenVINO's CPU plugin. ``zoo bench --runtime
openvino`` times it with the run's thread count, one inference request, fp32.

Two things learnt the hard way, both handled here:

- OpenVINO's CPU plugin ignores ``antialias`` on ONNX ``Resize`` when it shrinks an image
  (openvinotoolkit/openvino#35893 reports the same for cubic), so a bundle fed a larger image
  than the model's differs from PyTorch by about 0.02. OpenVINO has the interpolation PyTorch
  and PIL use, ``bilinear_pillow``: the converted graph's antialiased linear resizes are
  switched to it.
- On CPUs with bf16 instructions (AMX, and AVX512-BF16 too: seen on a Xeon without AMX),
  OpenVINO's CPU plugin runs in bf16 unless told otherwise: the precision is set to fp32
  explicitly, or parity fails for reasons that look random.

``--format openvino-bf16`` (or ``--format openvino --precision bf16``) is the same IR run in
bf16 on purpose: a reduced-precision variant of ``openvino`` (``precision``/``variant_of``), so
zoo gates it on accuracy over held-out data rather than tensor parity, and ``zoo bench
--precision bf16`` times it with the ``openvino`` runtime. The precision travels inside the IR,
as the ``runtime_options`` entry of its ``rt_info`` that OpenVINO itself reads: any program
that loads the file runs it in bf16, and zoo's runtime passes it on instead of its fp32 hint.

``--format openvino-int8`` (``--precision int8``) is the IR quantized to int8 by NNCF's
post-training quantization, ``nncf.quantize`` with its defaults (the ``performance`` preset:
symmetric int8 weights per channel, 8-bit activations per tensor, fast bias correction),
calibrated on the training inputs zoo hands a calibrated format (``--calibration-samples``),
fed in batches of 32, every batch used. The IR holds FakeQuantize nodes and int8 weights, so
OpenVINO alone runs it: the gate and ``zoo bench --precision int8`` use the ``openvino``
runtime, and only the export needs nncf. Batches, because NNCF's default activation range is
the mean over its dataset's items of each item's min and max: with one image per item the
ranges were narrow enough to cost LeNet 1.1 points of accuracy (failing the gate); with 32
both LeNet and GoogLeNet kept eager's accuracy. Two more things NNCF does unless told:

- It reports every ``nncf.quantize`` call to Google Analytics (openvino-telemetry) unless the
  user opted out (``opt_in_out --opt_out``, a user-wide choice zoo leaves to the user); the
  plugin imports nncf with NNCF's own switch, ``NNCF_CI``, set for that import only.
- It logs INFO lines and draws progress bars on stdout, where zoo prints its tables: its log
  is set to WARNING and rich's console (where the bars go) is quiet while it quantizes.

openvino and nncf are imported inside the methods that need them: zoo loads every plugin for
every ``zoo list``, and this one must stay cheap to load.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

import zoo
from zoo.formats import CALIBRATION_BATCH, INT8_CPU_FEATURES
from zoo.hookspecs import FormatRegistrar, RuntimeRegistrar

__all__ = ["OpenVINOBf16Format", "OpenVINOFormat", "OpenVINOInt8Format", "OpenVINORuntime"]

#: Every compiled model: fp32 (see above), the lowest latency for one request at a time.
_CONFIG = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
#: Where an IR says which precision to run in (OpenVINO reads it when it compiles).
_HINT = ["runtime_options", "INFERENCE_PRECISION_HINT"]


def _compile(path: Path, threads: int | None = None) -> Any:
    """The IR compiled for the CPU: fp32, unless the IR asks for another precision."""
    import openvino as ov

    core = ov.Core()
    model = core.read_model(path)
    config: dict[str, Any] = dict(_CONFIG)
    if model.has_rt_info(_HINT):
        config["INFERENCE_PRECISION_HINT"] = model.get_rt_info(_HINT).astype(str)
    if threads is not None:
        config["INFERENCE_NUM_THREADS"] = threads
    return core.compile_model(model, "CPU", config)


def _missing() -> str | None:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return "openvino is not installed: pip install openvino"
    return None


def _missing_nncf() -> str | None:
    # Looked up, not imported: importing nncf takes seconds, and zoo formats asks every format.
    if importlib.util.find_spec("nncf") is None:
        return "nncf is not installed: pip install nncf"
    return None


def _nncf() -> Any:
    """nncf, imported with its telemetry off.

    NNCF reports every ``nncf.quantize`` call to Google Analytics (openvino-telemetry) unless
    the user opted out with ``opt_in_out --opt_out``, a user-wide choice that is not zoo's to
    make. NNCF's own switch is the ``NNCF_CI`` variable, read once, when nncf is imported (no
    telemetry event is collected where it is set): it is set for that import only, so that
    nothing zoo starts afterwards inherits it. A process that imported nncf before zoo keeps
    whatever that import chose.
    """
    if "nncf" not in sys.modules:
        before = os.environ.get("NNCF_CI")
        os.environ["NNCF_CI"] = "1"
        try:
            import nncf
        finally:
            if before is None:
                del os.environ["NNCF_CI"]
            else:
                os.environ["NNCF_CI"] = before
    import nncf

    return nncf


@contextlib.contextmanager
def _quiet_nncf(nncf: Any) -> Iterator[None]:
    """NNCF's console output kept out of zoo's while it quantizes: its log at WARNING (its
    INFO lines go to stdout, where zoo prints its tables), the progress bars it draws on rich's
    global console (no switch of its own: the console's ``quiet``; zoo prints on consoles of
    its own), and one line torch logs as NNCF imports its torch backend to look at the model:
    "No CUDA runtime is found, using CUDA_HOME" (a CUDA build of torch on a machine without a
    GPU)."""
    import rich

    def keep(record: logging.LogRecord) -> bool:
        return "No CUDA runtime is found" not in str(record.msg)

    level = logging.getLogger("nncf").level
    console = rich.get_console()
    quiet = console.quiet
    torch_log = logging.getLogger("torch.utils.cpp_extension")
    nncf.set_log_level(logging.WARNING)
    console.quiet = True
    torch_log.addFilter(keep)
    try:
        yield
    finally:
        torch_log.removeFilter(keep)
        console.quiet = quiet
        nncf.set_log_level(level)


def _pillow_resizes(model: Any) -> int:
    """Switch the antialiased linear ``Interpolate`` nodes of ``model`` to ``bilinear_pillow``
    (PyTorch's ``antialias=True``); returns how many there were."""
    from openvino import opset11

    switched = 0
    for node in model.get_ordered_ops():
        if node.get_type_name() != "Interpolate":
            continue
        attributes = node.get_attributes()
        if attributes.get("mode") != "linear_onnx" or not attributes.get("antialias"):
            continue
        inputs = [node.input_value(i) for i in range(node.get_input_size())]
        coordinates = attributes["coordinate_transformation_mode"]
        replacement = opset11.interpolate(
            inputs[0],
            inputs[1],
            mode="bilinear_pillow",
            shape_calculation_mode=attributes["shape_calculation_mode"],
            pads_begin=attributes["pads_begin"],
            pads_end=attributes["pads_end"],
            coordinate_transformation_mode=(
                "pytorch_half_pixel" if coordinates == "half_pixel" else coordinates
            ),
            axes=inputs[2] if len(inputs) > 2 else None,
        )
        replacement.set_friendly_name(node.get_friendly_name())
        node.output(0).replace(replacement.output(0))
        switched += 1
    model.validate_nodes_and_infer_types()
    return switched


class OpenVINOFormat(zoo.Format):
    """OpenVINO IR, converted from zoo's ONNX export of the same bundle."""

    name = "openvino"
    files = ("model.xml", "model.bin")
    label = "OV"
    description = "model.xml + model.bin: OpenVINO IR (fp32) from the ONNX export; CPU plugin"
    devices = ("cpu",)

    def unavailable(self) -> str | None:
        return _missing()

    def check_options(self, options: Any) -> None:
        zoo.get_format("onnx").check_options(options)

    def versions(self) -> dict[str, str]:
        import openvino as ov

        return {"openvino": ov.get_version()}

    #: The precision the IR asks OpenVINO to run in (None: zoo's fp32).
    hint: str | None = None

    def export(self, request: zoo.ExportRequest) -> dict[str, Any]:
        import openvino as ov

        model, details = self.convert(request)
        ov.save_model(model, request.path(self.files[0]), compress_to_fp16=False)
        return details

    def convert(self, request: zoo.ExportRequest) -> tuple[Any, dict[str, Any]]:
        """The bundle as an ``ov.Model`` (from zoo's ONNX export, resizes switched, the
        precision hint set), and the details the manifest records of it."""
        import openvino as ov

        onnx = zoo.get_format("onnx")
        with tempfile.TemporaryDirectory(prefix="zoo-openvino-") as tmp:
            details = onnx.export(dataclasses.replace(request, directory=Path(tmp)))
            model = ov.convert_model(Path(tmp) / onnx.files[0])
        switched = _pillow_resizes(model)
        if self.hint is not None:
            model.set_rt_info(self.hint, _HINT)
        details = {"from": f"onnx opset {details['opset']}", "pillow_resizes": switched}
        return model, {**details, "inference_precision": self.hint or "f32"}

    def load(self, directory: Path, variant: str = "") -> zoo.Runner:
        compiled = _compile(directory / self.files[0])

        def run(x: Any) -> tuple[np.ndarray, ...]:
            result = compiled(x.numpy())
            return tuple(np.asarray(result[output]) for output in compiled.outputs)

        return run


class OpenVINOBf16Format(OpenVINOFormat):
    """The same IR, run in bf16 by OpenVINO (the precision hint stored in the IR): a
    reduced-precision variant of ``openvino``, gated on accuracy over held-out data."""

    name = "openvino-bf16"
    files = ("model.bf16.xml", "model.bf16.bin")
    label = "OV-BF16"
    description = (
        "model.bf16.xml + .bin: the OpenVINO IR with a bf16 inference-precision hint "
        "(fast with AMX)"
    )
    precision = "bf16"
    variant_of = "openvino"
    cpu_features = ("amx_bf16", "avx512_bf16")
    hint = "bf16"


class OpenVINOInt8Format(OpenVINOFormat):
    """The IR quantized to int8 by NNCF's post-training quantization (``nncf.quantize``,
    its defaults), calibrated on the model's training data: a reduced-precision variant of
    ``openvino``, gated on accuracy over held-out data."""

    name = "openvino-int8"
    files = ("model.int8.xml", "model.int8.bin")
    label = "OV-INT8"
    description = (
        "model.int8.xml + .bin: the OpenVINO IR quantized to int8 by NNCF (nncf.quantize), "
        "calibrated on training data"
    )
    precision = "int8"
    variant_of = "openvino"
    calibrated = True
    cpu_features = INT8_CPU_FEATURES

    def unavailable(self) -> str | None:
        return _missing() or _missing_nncf()

    def versions(self) -> dict[str, str]:
        return {**super().versions(), "nncf": metadata.version("nncf")}

    def export(self, request: zoo.ExportRequest) -> dict[str, Any]:
        import openvino as ov

        # zoo's calibration inputs in batches: an item of NNCF's dataset is a batch, and
        # subset_size counts items: all of them.
        batches = [b.numpy() for b in request.calibration_batches()]
        model, details = self.convert(request)
        nncf = _nncf()
        preset = nncf.QuantizationPreset.PERFORMANCE  # NNCF's default, but for transformers
        with _quiet_nncf(nncf):
            quantized = nncf.quantize(
                model, nncf.Dataset(batches), preset=preset, subset_size=len(batches)
            )
        ov.save_model(quantized, request.path(self.files[0]), compress_to_fp16=False)
        return {
            **details,
            "method": "nncf.quantize",
            "nncf": nncf.__version__,
            "samples": sum(len(b) for b in batches),
            "batch": CALIBRATION_BATCH,
            "subset_size": len(batches),
            "preset": preset.value,
            "weights": "int8, per channel, symmetric",
            "activations": "8-bit, per tensor; range: the mean of each batch's min and max",
            "fast_bias_correction": True,
        }


class OpenVINORuntime(zoo.Runtime):
    """``model.xml`` on OpenVINO's CPU plugin: one infer request, its input bound once."""

    name = "openvino"
    format = "openvino"
    description = "model.xml on OpenVINO's CPU plugin, fp32, the run's threads, one request"
    devices = ("cpu",)

    def unavailable(self, source: zoo.Source, device: str) -> str | None:
        return super().unavailable(source, device) or _missing()

    def load(self, source: zoo.Source, device: str, threads: int) -> zoo.Session:
        import openvino as ov

        path = source.artifact(self.format)
        assert path is not None
        request = _compile(path, threads).create_infer_request()

        def prepare(x: Any) -> Any:
            tensor = ov.Tensor(np.ascontiguousarray(x.numpy()), shared_memory=True)
            request.set_input_tensor(tensor)
            return tensor  # keeps the input alive while it is bound

        def run(tensor: Any) -> None:
            request.infer()

        def fetch(_: Any) -> list[np.ndarray]:  # the outputs, copied out of the request
            return [np.array(t.data) for t in request.output_tensors]

        return zoo.Session(prepare=prepare, run=run, fetch=fetch)


@zoo.hookimpl
def zoo_register_formats(registry: FormatRegistrar) -> None:
    registry.register(OpenVINOFormat())
    registry.register(OpenVINOBf16Format())
    registry.register(OpenVINOInt8Format())


@zoo.hookimpl
def zoo_register_runtimes(registry: RuntimeRegistrar) -> None:
    registry.register(OpenVINORuntime())
