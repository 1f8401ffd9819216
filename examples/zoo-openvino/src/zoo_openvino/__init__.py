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

openvino is imported inside the methods that need it: zoo loads every plugin for every
``zoo list``, and this one must stay cheap to load.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

import zoo
from zoo.hookspecs import FormatRegistrar, RuntimeRegistrar

__all__ = ["OpenVINOBf16Format", "OpenVINOFormat", "OpenVINORuntime"]

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

        onnx = zoo.get_format("onnx")
        with tempfile.TemporaryDirectory(prefix="zoo-openvino-") as tmp:
            details = onnx.export(dataclasses.replace(request, directory=Path(tmp)))
            model = ov.convert_model(Path(tmp) / onnx.files[0])
        switched = _pillow_resizes(model)
        if self.hint is not None:
            model.set_rt_info(self.hint, _HINT)
        ov.save_model(model, request.path(self.files[0]), compress_to_fp16=False)
        details = {"from": f"onnx opset {details['opset']}", "pillow_resizes": switched}
        return {**details, "inference_precision": self.hint or "f32"}

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


@zoo.hookimpl
def zoo_register_runtimes(registry: RuntimeRegistrar) -> None:
    registry.register(OpenVINORuntime())
