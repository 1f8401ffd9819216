"""Triton, zoo's built-in serving format: ``zoo export MODEL --format triton`` writes a
`Triton Inference Server <https://github.com/triton-inference-server/server>`_ model
repository inside the export, for Triton's onnxruntime backend::

    triton/NAME/config.pbtxt     name, backend, max_batch_size, inputs, outputs, batching
    triton/NAME/1/model.onnx     zoo's ONNX export of the bundle (version 1)
    triton/NAME/labels.txt       the class names, one a line (a classifier's checkpoint only)

``NAME`` is the model's registered name (zoo's names are Triton's: lowercase letters, digits,
``_.-``), so ``docker run ... -v $PWD/EXPORT/triton:/models tritonserver
--model-repository=/models`` serves it at ``/v2/models/NAME``.

How it fits zoo's export, which was made of plain files:

- **Files.** The format declares one entry, the folder ``triton`` (:attr:`TritonFormat.files`),
  and says where its artifact lies in it (:meth:`TritonFormat.artifact`); the exporter records
  every file of the folder in the manifest with its sha256, the model first, so ``zoo export
  --check``, ``zoo bench --artifacts`` and ``zoo predict`` verify them all as they verify any
  other format's, and refuse a folder holding anything the manifest does not list (Triton
  serves a repository whole: a second version or a Python model dropped in would run).
- **The model** is written by zoo's ONNX format itself (:class:`~zoo.plugins.onnx.OnnxFormat`,
  so :func:`~zoo.plugins.onnx.export_onnx`, the checker, and external weights above 100 MB as
  ``model.onnx.data`` beside it, which Triton's backend reads from the version folder): the
  same inputs (uint8 NHWC images with the preprocessing inside; int64 ids), names and dynamic
  axes as the export's manifest.
- **The parity gate** runs that model in ONNX Runtime's CPU provider against eager PyTorch,
  exactly as the ``onnx`` format is gated (:func:`~zoo.plugins.onnx.onnx_runner`): what Triton
  runs is what was checked. No ``zoo bench`` runtime loads it: in-process it would time the
  same model as ``onnxruntime`` on the ``onnx`` artifact; ``zoo bench --endpoint URL``
  measures it served by a running Triton.
- **config.pbtxt** is written here as text, every string quoted and escaped as protobuf's text
  format reads it: zoo does not depend on ``tritonclient`` (an optional extra), whose
  ``model_config`` schema the tests parse it with, field by field against the manifest.

The choices in the config, each a constant below: :data:`MAX_BATCH_SIZE` (64; 0 where the
batch axis is not dynamic), :data:`MAX_QUEUE_DELAY_US` (2 ms, ``zoo serve``'s default wait),
and one CPU instance (:data:`INSTANCE_GROUP`). Dims leave the batch axis out and are -1 on every
other dynamic axis (an image's height and width, a sequence's length). ``label_filename``
names ``labels.txt`` on the output of class scores, where the export has exactly one output
with one score per class (not a top-k export's: its ``indices`` index ``labels.txt``, but
Triton's classification extension needs a score per class).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch

from zoo._io import atomic_write_text
from zoo._version import __version__
from zoo.formats import ExportRequest, Format, Runner
from zoo.hookspecs import FormatRegistrar, hookimpl
from zoo.plugins.onnx import OnnxFormat, check_onnx, onnx_runner
from zoo.registry import InputSpec, OutputSpec

__all__ = [
    "CONFIG",
    "DATATYPES",
    "INSTANCE_GROUP",
    "LABELS",
    "MAX_BATCH_SIZE",
    "MAX_QUEUE_DELAY_US",
    "REPOSITORY",
    "VERSION",
    "TritonFormat",
    "model_config",
]

#: The folder of the export that is the model repository (``--model-repository`` points here).
REPOSITORY = "triton"
#: The model's configuration, in the model's folder.
CONFIG = "config.pbtxt"
#: The class names, one a line, in the model's folder (the config's ``label_filename``).
LABELS = "labels.txt"
#: The model version zoo writes (Triton serves the highest version present by default).
VERSION = "1"
#: The largest batch one request may carry and the dynamic batcher may form. Large enough for
#: offline clients (zoo bench's batches of 1, 8 and 32 fit), bounded so that one batch of
#: 224x224 colour images stays under 10 MB of input.
MAX_BATCH_SIZE = 64
#: How long Triton's dynamic batcher holds a request waiting for others to batch it with:
#: 2 ms, as ``zoo serve --batch-wait-ms`` by default, so that the two servers compare alike.
MAX_QUEUE_DELAY_US = 2000
#: One instance on the CPU: the parity gate checked ONNX Runtime's CPU provider, and one
#: instance's intra-op threads already use every core (more instances would share them).
#: Serving on a GPU is a one-line change of the config (``kind: KIND_GPU``), outside what
#: zoo gated: ONNX Runtime's CUDA provider may compute in TF32.
INSTANCE_GROUP = {"count": 1, "kind": "KIND_CPU"}

#: torch dtype name -> (Triton's ``data_type``, ONNX's ``TensorProto`` type name).
DATATYPES: Mapping[str, tuple[str, str]] = {
    "bool": ("TYPE_BOOL", "BOOL"),
    "uint8": ("TYPE_UINT8", "UINT8"),
    "uint16": ("TYPE_UINT16", "UINT16"),
    "uint32": ("TYPE_UINT32", "UINT32"),
    "uint64": ("TYPE_UINT64", "UINT64"),
    "int8": ("TYPE_INT8", "INT8"),
    "int16": ("TYPE_INT16", "INT16"),
    "int32": ("TYPE_INT32", "INT32"),
    "int64": ("TYPE_INT64", "INT64"),
    "float16": ("TYPE_FP16", "FLOAT16"),
    "bfloat16": ("TYPE_BF16", "BFLOAT16"),
    "float32": ("TYPE_FP32", "FLOAT"),
    "float64": ("TYPE_FP64", "DOUBLE"),
}

#: Triton's model names (a folder of the repository, a segment of ``/v2/models/NAME``).
_TRITON_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def _model_name(name: str) -> str:
    """``name`` if Triton and a file system take it as a model's folder; ValueError if not."""
    if not _TRITON_NAME.fullmatch(name) or name in (".", "..") or name.startswith("."):
        raise ValueError(
            f"model name {name!r:.80} is not a Triton model name (letters, digits, '_', '-', "
            "'.'; not hidden)"
        )
    return name


def _quoted(text: str) -> str:
    """``text`` as a string of protobuf's text format: double quotes around it, a backslash
    before ``"`` and ``\\``, and every byte of its UTF-8 outside printable ASCII as an octal
    escape (``\\n`` is ``\\012``), which protobuf's parser turns back into the same string."""
    out = []
    for byte in text.encode("utf-8"):
        char = chr(byte)
        if char in '"\\':
            out.append("\\" + char)
        elif 0x20 <= byte < 0x7F:
            out.append(char)
        else:
            out.append(f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


def _datatype(dtype: str, what: str) -> str:
    if dtype not in DATATYPES:
        raise ValueError(f"{what} is {dtype}, which Triton has no data type for")
    return DATATYPES[dtype][0]


def _dims(
    shape: Sequence[int], dynamic_axes: Mapping[int, str], batched: bool, batch: int
) -> list[int]:
    """Triton's ``dims`` of a tensor whose per-sample shape is ``shape``: -1 on the dynamic
    axes (of the batched tensor: 0 is the batch), the batch axis left out where Triton batches
    (``max_batch_size`` > 0), else first (of size ``batch`` unless dynamic)."""
    dims = [-1 if axis + 1 in dynamic_axes else size for axis, size in enumerate(shape)]
    if batched:
        return dims
    return [-1 if 0 in dynamic_axes else batch, *dims]


def model_config(
    name: str,
    input_spec: InputSpec,
    outputs: Sequence[OutputSpec],
    *,
    classes: int | None = None,
    batch: int = 1,
) -> str:
    """``config.pbtxt`` for model ``name`` taking ``input_spec`` and giving ``outputs`` (as
    the export's manifest records them: names, dtypes, per-sample shapes, the input's dynamic
    axes; the outputs' only dynamic axis is the batch). ``classes``: the number of class names
    in :data:`LABELS`, which ``label_filename`` names on the output of class scores (the one
    output, of that many scores; None: no labels). ``batch``: the batch size of a model whose
    batch axis is fixed (then ``max_batch_size`` is 0)."""
    batched = 0 in input_spec.dynamic_axes
    max_batch = MAX_BATCH_SIZE if batched else 0

    def tensor(tensor_name: str, dtype: str, dims: list[int], label: bool, what: str) -> list[str]:
        lines = [
            "  {",
            f"    name: {_quoted(tensor_name)}",
            f"    data_type: {_datatype(dtype, what)}",
            f"    dims: [ {', '.join(map(str, dims))} ]",
        ]
        if label:
            lines.append(f"    label_filename: {_quoted(LABELS)}")
        return [*lines, "  }"]

    def listed(blocks: list[list[str]]) -> list[str]:
        joined: list[str] = []
        for i, block in enumerate(blocks):
            joined += [*block[:-1], block[-1] + ("," if i < len(blocks) - 1 else "")]
        return joined

    classified = classes is not None and len(outputs) == 1 and outputs[0].shape == (classes,)
    inputs = [
        tensor(
            input_spec.name,
            input_spec.dtype,
            _dims(input_spec.shape, input_spec.dynamic_axes, batched, batch),
            False,
            f"input {input_spec.name!r}",
        )
    ]
    output_blocks = [
        tensor(
            o.name,
            o.dtype,
            _dims(o.shape, {0: "batch"} if batched else {}, batched, batch),
            classified,
            f"output {o.name!r}",
        )
        for o in outputs
    ]
    lines = [
        f"# Written by zoo {__version__} (zoo export --format triton): a Triton model",
        f"# repository's model, {VERSION}/model.onnx run by the onnxruntime backend. Names, data",
        "# types and dims are the export's manifest's; zoo keeps the model only if it passes",
        "# the parity gate against PyTorch in ONNX Runtime's CPU provider.",
        f"name: {_quoted(name)}",
        f"backend: {_quoted('onnxruntime')}",
        f"platform: {_quoted('onnxruntime_onnx')}",
        f"max_batch_size: {max_batch}",
        "input [",
        *listed(inputs),
        "]",
        "output [",
        *listed(output_blocks),
        "]",
    ]
    if batched:
        lines += [
            "dynamic_batching {",
            f"  max_queue_delay_microseconds: {MAX_QUEUE_DELAY_US}",
            "}",
        ]
    lines += [
        "instance_group [",
        "  {",
        f"    count: {INSTANCE_GROUP['count']}",
        f"    kind: {INSTANCE_GROUP['kind']}",
        "  }",
        "]",
    ]
    return "\n".join(lines) + "\n"


def _outputs(request: ExportRequest) -> tuple[OutputSpec, ...]:
    """The outputs as the exporter describes them, or, where the caller does not say, as the
    module gives them on the example (per-sample shapes, dtypes)."""
    if request.outputs:
        names = tuple(o.name for o in request.outputs)
        if names != tuple(request.output_names):
            raise ValueError(f"outputs {names} are not output_names {request.output_names}")
        return request.outputs
    with torch.no_grad():
        got = request.module(request.example)
    got = tuple(got) if isinstance(got, (tuple, list)) else (got,)
    return tuple(
        OutputSpec(name, tuple(t.shape[1:]), str(t.dtype).removeprefix("torch."))
        for name, t in zip(request.output_names, got, strict=True)
    )


def _check_against_model(path: Path, config_inputs: list[tuple[str, str, list[int]]]) -> None:
    """ValueError where the ONNX model at ``path`` would not load under the config (Triton's
    onnxruntime backend compares them): the names in order, the data types, and every dim the
    config fixes that the model fixes too. ``config_inputs``: (name, dtype, batched dims) of
    each input and then each output, -1 for a dynamic axis."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    tensors = [*graph.input, *graph.output]
    initializers = {t.name for t in graph.initializer}
    tensors = [t for t in tensors if t.name not in initializers]
    if [t.name for t in tensors] != [c[0] for c in config_inputs]:
        raise ValueError(
            f"the ONNX model's tensors {[t.name for t in tensors]} are not the manifest's "
            f"{[c[0] for c in config_inputs]}"
        )
    for t, (name, dtype, dims) in zip(tensors, config_inputs, strict=True):
        kind = onnx.TensorProto.DataType.Name(t.type.tensor_type.elem_type)
        if kind != DATATYPES[dtype][1]:
            raise ValueError(f"{name!r}: the ONNX model has {kind}, the manifest {dtype}")
        model_dims = [
            d.dim_value if d.HasField("dim_value") else -1 for d in t.type.tensor_type.shape.dim
        ]
        if len(model_dims) != len(dims) or any(
            m != c for m, c in zip(model_dims, dims, strict=True) if m != -1 and c != -1
        ):
            raise ValueError(f"{name!r}: the ONNX model's shape {model_dims} is not {dims}")


class TritonFormat(Format):
    """``triton/NAME/``: a Triton model repository (``config.pbtxt``, ``1/model.onnx`` for the
    onnxruntime backend, ``labels.txt``), its model gated in ONNX Runtime like ``onnx``'s."""

    name = "triton"
    files: ClassVar[tuple[str, ...]] = (REPOSITORY,)
    description = (
        "triton/NAME/: a Triton Inference Server model repository (config.pbtxt, "
        "1/model.onnx for the onnxruntime backend, labels.txt)"
    )
    devices: ClassVar[tuple[str, ...]] = ("cpu",)

    def check_options(self, options: Mapping[str, Any]) -> None:
        OnnxFormat().check_options(options)

    def versions(self) -> dict[str, str]:
        return OnnxFormat().versions()

    def artifact(self, directory: Path) -> str:
        """``triton/NAME/1/model.onnx``, NAME the one folder of the repository; ValueError
        where the repository holds anything else (zoo writes one model)."""
        repository = directory / REPOSITORY
        if repository.is_symlink() or not repository.is_dir():
            raise ValueError(f"{REPOSITORY} is not a folder")
        names = sorted(os.listdir(repository))
        if len(names) != 1:
            raise ValueError(
                f"{REPOSITORY}/ holds {len(names)} entries, not the one model zoo writes: "
                f"{names[:3]!r:.200}"
            )
        name = _model_name(names[0])
        folder = repository / name
        if folder.is_symlink() or not folder.is_dir():
            raise ValueError(f"{REPOSITORY}/{name} is not a folder")
        return f"{REPOSITORY}/{name}/{VERSION}/{OnnxFormat.files[0]}"

    def export(self, request: ExportRequest) -> dict[str, Any]:
        name = _model_name(request.model or "model")
        folder = request.path(REPOSITORY) / name
        version = folder / VERSION
        version.mkdir(parents=True)
        outputs = _outputs(request)
        labels = request.labels
        for label in labels or ():
            if "\n" in label or "\r" in label:
                raise ValueError(
                    f"class name {label!r:.80} holds a line break: {LABELS} has one a line"
                )
        # zoo's ONNX format writes the model (checker, external weights), into version 1.
        details = OnnxFormat().export(dataclasses.replace(request, directory=version))
        config = model_config(
            name,
            request.input,
            outputs,
            classes=len(labels) if labels is not None else None,
            batch=len(request.example),
        )
        batched = 0 in request.input.dynamic_axes
        spec = request.input
        _check_against_model(
            version / OnnxFormat.files[0],
            [
                (spec.name, spec.dtype, [-1, *_dims(spec.shape, spec.dynamic_axes, True, 0)]),
                *((o.name, o.dtype, [-1, *o.shape]) for o in outputs),
            ],
        )
        if labels is not None:
            atomic_write_text(folder / LABELS, "".join(f"{label}\n" for label in labels))
        atomic_write_text(folder / CONFIG, config)
        return {
            **details,
            "model_name": name,
            "backend": "onnxruntime",
            "max_batch_size": MAX_BATCH_SIZE if batched else 0,
            "labels": labels is not None,
        }

    def check_artifact(self, directory: Path) -> None:
        check_onnx(directory / self.artifact(directory), self.operator_namespaces)

    def check_program(self, directory: Path) -> str | None:
        check_onnx(directory / self.artifact(directory), self.operator_namespaces)
        return None

    def load(self, directory: Path, variant: str = "") -> Runner:
        return onnx_runner(directory / self.artifact(directory), self.operator_namespaces)


@hookimpl
def zoo_register_formats(registry: FormatRegistrar) -> None:
    registry.register(TritonFormat())
