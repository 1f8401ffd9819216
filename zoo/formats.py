"""Export formats: the interface a format plugin implements, and what the exporter hands it.

A :class:`Format` writes the module to ship (preprocessing + model, eval mode: the *bundle*)
into files of an export directory (:meth:`Format.export`) and loads those files back in the
runtime a deployment would use, for the parity gate (:meth:`Format.load`). zoo's own formats
(TorchScript, ONNX, ``.pt2`` and AOTInductor) are plugins too (``zoo/plugins/``); a plugin adds
one with the ``zoo_register_formats`` hook::

    @zoo.hookimpl
    def zoo_register_formats(registry):
        registry.register(MyFormat())

``zoo export --format NAME``, the manifest, ``zoo export --check``, ``zoo list``'s capability
columns and the capability record all read the :class:`FormatRegistry`.

Importing this module does not import torch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from zoo._io import is_plain_name
from zoo.errors import InvalidSpecError, UnknownFormatError, UsageError
from zoo.registry import InputSpec, OutputSpec, Registry

if TYPE_CHECKING:
    import numpy as np
    from torch import Tensor, nn

__all__ = [
    "CALIBRATION_BATCH",
    "IMPURE_ATEN",
    "INT8_CPU_FEATURES",
    "ONNX_DOMAINS",
    "PRECISIONS",
    "STRUCTURAL_PRIM",
    "ExportRequest",
    "Format",
    "FormatRegistry",
    "Runner",
    "check_precisions",
    "refused_operator",
]

#: The precisions an artifact may have, full first.
PRECISIONS = ("fp32", "bf16", "fp16", "int8")


def check_precisions(precisions: Sequence[str]) -> None:
    """UsageError for a ``--precision`` list that is empty or names an unknown precision."""
    if not precisions:
        raise UsageError(f"--precision: give at least one of {', '.join(PRECISIONS)}")
    for precision in precisions:
        if precision not in PRECISIONS:
            raise UsageError(
                f"--precision {precision}: choose from {', '.join(PRECISIONS)} (comma-separated)"
            )


#: ``aten`` operators that are not tensor computation: they read or write files
#: (``torch.from_file``, ``torch.save``), print, reseed the process's generators or wait on
#: other work. A program (TorchScript, ``.pt2``) that calls one is refused before it runs.
IMPURE_ATEN = frozenset({"from_file", "save", "_print", "manual_seed", "seed", "wait"})
#: The ``prim`` operators a TorchScript program may use: constants, control flow, lists and
#: tuples, attributes and type queries; not ``fork``, ``rpc_*``, ``Print``, ``PythonOp``...
STRUCTURAL_PRIM = frozenset(
    {
        "AutogradZero", "CallMethod", "Constant", "ConstantChunk", "DictConstruct",
        "DictIndex", "Enter", "EnumName", "EnumValue", "Exit", "GetAttr", "If", "ListConstruct",
        "ListUnpack", "Loop", "NumToTensor", "RaiseException", "SetAttr", "StringIndex",
        "TupleConstruct", "TupleIndex", "TupleUnpack", "TypeCheck", "Uninitialized", "abs",
        "data", "device", "dtype", "is_cuda", "is_meta", "is_mkldnn", "is_quantized",
        "isinstance", "layout", "max", "min", "name", "rangelist", "requires_grad", "shape",
        "unchecked_cast", "unchecked_unwrap_optional",
    }
)  # fmt: skip
#: The ONNX domains of the operators zoo exports (the default domain and its ML operators).
ONNX_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml"})


def refused_operator(name: str, namespaces: Sequence[str] = ()) -> str | None:
    """Why the operator ``name`` (``aten::conv2d``, ``prim::If``; an overload after a dot is
    ignored) is not one zoo runs in an untrusted program, or None: every ``aten`` operator
    but the :data:`IMPURE_ATEN` ones, the :data:`STRUCTURAL_PRIM` ones, and any operator of
    ``namespaces`` (those a format plugin declares, :attr:`Format.operator_namespaces`)."""
    namespace, _, op = name.partition("::")
    op = op.split(".", 1)[0]
    if namespace in namespaces:
        return None
    if namespace == "aten":
        return (
            "it is not tensor computation (files, printing, seeds)" if op in IMPURE_ATEN else None
        )
    if namespace == "prim":
        return None if op in STRUCTURAL_PRIM else "it is not one of the structural prim operators"
    return f"the namespace {namespace or name!r} is not one zoo runs (custom operators are code)"


#: Calibration inputs per forward pass while a calibrated format collects its statistics.
CALIBRATION_BATCH = 32
#: The CPU instructions (any one) that make int8 convolutions and matrix products fast: the
#: :attr:`Format.cpu_features` of an int8 format.
INT8_CPU_FEATURES = ("avx512_vnni", "avx_vnni", "amx_int8")

#: Runs a loaded artifact: a CPU tensor in (the bundle's input), its outputs as numpy arrays.
Runner = Callable[["Tensor"], tuple["np.ndarray", ...]]


@dataclass(frozen=True)
class ExportRequest:
    """What :meth:`Format.export` is asked to write."""

    #: The module to ship, in eval mode, gradients off: preprocessing + model (+ softmax or
    #: top-k), or the bare model with ``--raw``.
    module: nn.Module
    #: An input for tracing or exporting, of batch 2 (exporters specialise a batch of 1).
    example: Tensor
    #: What ``module`` takes: input name, per-sample shape, dtype, dynamic axes.
    input: InputSpec
    #: The names of ``module``'s outputs, in order.
    output_names: tuple[str, ...]
    #: Where to write: only the files the format declares (:attr:`Format.files`).
    directory: Path
    #: Format options from the command line (``opset`` for ONNX-based formats).
    options: Mapping[str, Any] = field(default_factory=dict)
    #: Inputs of ``module`` from the model's training data, for a format that calibrates
    #: (:attr:`Format.calibrated`, static int8 quantization); None for the others.
    calibration: Tensor | None = None
    #: The registered model's name (a serving format names the model after it: Triton's
    #: repository folder); "" where the caller does not say.
    model: str = ""
    #: ``module``'s outputs as the manifest records them (name, per-sample shape, dtype), in
    #: the order of :attr:`output_names`; empty where the caller does not say.
    outputs: tuple[OutputSpec, ...] = ()
    #: The class of each index of the scores, from the dataset the checkpoint was trained on
    #: (the manifest's ``labels.classes``); None: fresh weights, or not a classifier.
    labels: tuple[str, ...] | None = None

    def path(self, name: str) -> Path:
        """The path of declared file ``name`` in the export directory."""
        return self.directory / name

    def calibration_batches(self) -> list[Tensor]:
        """:attr:`calibration` in batches of :data:`CALIBRATION_BATCH` (ValueError where the
        format is not :attr:`Format.calibrated`: the exporter gives none)."""
        if self.calibration is None:
            raise ValueError("no calibration inputs")
        return list(self.calibration.split(CALIBRATION_BATCH))


class Format(ABC):
    """An export format: a name, the files it writes, ``export`` and ``load``.

    Subclasses set the class attributes and implement :meth:`export` and :meth:`load`; zoo
    calls ``export`` in a staging directory, gates the result on parity with eager PyTorch
    (through :meth:`load`, in a child process when :attr:`isolated`), records it in the
    manifest and removes the files of a format that failed.
    """

    #: ``zoo export --format NAME``: lowercase letters, digits, ``_.-``.
    name: ClassVar[str]
    #: The files it may write, plain names; the first is the artifact a runtime loads, or the
    #: folder that holds it (a model repository: :meth:`artifact` says where in it).
    files: ClassVar[tuple[str, ...]]
    #: One line for ``zoo formats``.
    description: ClassVar[str] = ""
    #: The heading of its column in ``zoo list`` (default: the name in capitals).
    label: ClassVar[str] = ""
    #: Written by ``zoo export`` when ``--format`` is not given.
    default: ClassVar[bool] = False
    #: Its parity gate runs in a child process: for native code that may crash the process.
    isolated: ClassVar[bool] = False
    #: The devices its artifacts run on.
    devices: ClassVar[tuple[str, ...]] = ("cpu",)
    #: Other ways the gate loads the artifact, each checked too (TorchScript: ``optimized``).
    variants: ClassVar[tuple[str, ...]] = ()
    #: The arithmetic of its artifacts: one of :data:`PRECISIONS`. A reduced-precision format
    #: is gated on accuracy over held-out data (its parity is recorded, not required).
    precision: ClassVar[str] = "fp32"
    #: The fp32 format this one is a reduced-precision variant of (``onnx`` for
    #: ``onnx-int8``): ``zoo export --format onnx --precision int8`` picks it, and the
    #: runtimes of that format run its artifacts (``zoo bench`` times each precision).
    variant_of: ClassVar[str | None] = None
    #: Its export needs :attr:`ExportRequest.calibration` (static int8 quantization).
    calibrated: ClassVar[bool] = False
    #: CPU flags (as /proc/cpuinfo names them) its artifacts need to run fast, recorded in the
    #: manifest; any one of them will do (``avx512_vnni``, ``amx_int8``...).
    cpu_features: ClassVar[tuple[str, ...]] = ()
    #: Operator namespaces (TorchScript, ``.pt2``) or ONNX domains its artifacts may use beyond
    #: zoo's rule (:func:`refused_operator`, :data:`ONNX_DOMAINS`): custom operators are code,
    #: run only where a format says it writes them.
    operator_namespaces: ClassVar[tuple[str, ...]] = ()

    @property
    def column(self) -> str:
        """The heading of this format's column in ``zoo list``."""
        return self.label or self.name.upper()

    def unavailable(self) -> str | None:
        """Why this format cannot be used here (a missing package...), or None."""
        return None

    def check_options(self, options: Mapping[str, Any]) -> None:
        """Raise :class:`~zoo.errors.UsageError` for options this format cannot honour, before
        anything is exported."""
        return None  # optional: nothing to do unless a subclass says so

    def versions(self) -> dict[str, str]:
        """Versions of the libraries behind this format, recorded in manifests."""
        return {}

    @abstractmethod
    def export(self, request: ExportRequest) -> dict[str, Any]:
        """Write the artifact into ``request.directory``; return details for the manifest
        (JSON values, e.g. ``{"method": "script"}``). Raise to fail this format only."""

    @abstractmethod
    def load(self, directory: Path, variant: str = "") -> Runner:
        """Load the artifact from ``directory`` as a deployment would (``variant``: one of
        :attr:`variants`, or "" for the artifact as written)."""

    def artifact(self, directory: Path) -> str:
        """The artifact a runtime loads, as a path relative to ``directory`` (an export, or
        the staging directory the format wrote into): the first of :attr:`files`. A format
        whose first file is a folder (Triton's model repository, ``triton/``) says which file
        in it (``triton/lenet/1/model.onnx``), raising ValueError where the folder does not
        hold it as the format writes it. Cheap: it may list the folder, never load. The
        manifest names this path first among the format's files, and reading an export checks
        that it still does (:func:`zoo.export.manifest.verify_export`)."""
        return self.files[0]

    def check_artifact(self, directory: Path) -> None:
        """Raise ValueError, naming what is wrong, if the artifact in ``directory`` would make
        its runtime read a file or run an operator zoo refuses; cheap (no session, no load):
        ``zoo bench --artifacts`` asks it before anything is timed, so that a refusal is one
        line and not a failed row. zoo's ONNX formats check external data and operator
        domains here; the default checks nothing (:meth:`load` still checks)."""
        return None

    def check_program(self, directory: Path) -> str | None:
        """Raise ValueError naming the first operator of the artifact in ``directory`` that
        zoo's rule refuses (:func:`refused_operator`, :data:`ONNX_DOMAINS`, and this format's
        :attr:`operator_namespaces`); None when every one passes; or why nothing can be
        checked (a compiled library's code cannot be listed). zoo's formats check before
        they run anything; ``zoo check-plugin`` asks every format."""
        return "the format does not say what its artifacts call (check_program)"


class FormatRegistry(Registry[Format]):
    """Format names -> :class:`Format` objects, in registration order (built-ins first)."""

    def __init__(self) -> None:
        super().__init__("format", expected=Format, unknown=UnknownFormatError)

    def check(self, obj: Format) -> str:
        name = super().check(obj)
        files = getattr(obj, "files", None)
        if not isinstance(files, tuple) or not files or not all(map(is_plain_name, files)):
            raise InvalidSpecError(
                f"format {name!r}: files must be a non-empty tuple of plain file names, "
                f"got {files!r}"
            )
        if not isinstance(obj.variants, tuple) or "" in obj.variants:
            raise InvalidSpecError(f"format {name!r}: variants must be a tuple of names")
        if obj.precision not in PRECISIONS:
            raise InvalidSpecError(
                f"format {name!r}: precision must be one of {', '.join(PRECISIONS)}, "
                f"got {obj.precision!r}"
            )
        if (obj.precision == "fp32") != (obj.variant_of is None):
            raise InvalidSpecError(
                f"format {name!r}: a reduced-precision format names the fp32 format it is a "
                "variant of (variant_of), and only such a format does"
            )
        return name

    def full_precision(self) -> list[Format]:
        """The fp32 formats: those a capability record measures with fresh weights (a
        reduced-precision variant needs trained weights and data for its accuracy gate)."""
        return [f for f in self if f.precision == "fp32"]

    def of_precision(self, base: str, precision: str) -> Format | None:
        """The format writing ``base``'s artifacts in ``precision`` (``base`` itself for
        fp32), or None where none is registered."""
        if precision == "fp32":
            return self.get(base)
        return next((f for f in self if f.variant_of == base and f.precision == precision), None)

    def family(self, fmt: Format) -> str:
        """The fp32 format whose runtimes run ``fmt``'s artifacts (``fmt`` itself for fp32)."""
        return fmt.variant_of or fmt.name

    def defaults(self) -> tuple[str, ...]:
        """What ``zoo export`` writes when ``--format`` is not given."""
        return tuple(f.name for f in self if f.default)

    def owner_of(self, file: str) -> Format | None:
        """The format that declares ``file``, if any."""
        return next((f for f in self if file in f.files), None)
