"""``manifest.json``: what an export holds, how it was made, and proof that it matches eager.

:class:`Manifest` is the one reader and writer of the file. A manifest is untrusted input
(anyone can edit one): :func:`read_manifest` refuses a file that its declared schema,
``manifest.schema.json``, refuses (types, bounds, finite numbers), and
:meth:`Manifest.from_dict` one that is not exactly what zoo writes; every file name in it must
be a plain name inside the export directory, or a relative path of plain names in a folder of
it (a Triton model repository's ``triton/lenet/config.pbtxt``, :func:`zoo._io.is_export_path`),
and be listed with its sha256 and size, so a manifest can never point zoo at a file elsewhere.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Final

from zoo import _json as js
from zoo._io import MAX_EXPORT_DEPTH, atomic_write_json, is_export_path
from zoo._pluginmanager import get_plugins
from zoo.errors import ZooError, one_line
from zoo.export.accuracy import AccuracyResult
from zoo.export.gates import ParityResult
from zoo.formats import PRECISIONS

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST",
    "MAX_MANIFEST_BYTES",
    "MAX_SAMPLE_ELEMENTS",
    "SCHEMA_FILE",
    "WEIGHTS",
    "ArtifactError",
    "FileRecord",
    "FormatRecord",
    "Labels",
    "Manifest",
    "TensorRecord",
    "labels_misfit",
    "manifest_schema",
    "read_manifest",
    "sha256",
    "verify_export",
    "verify_files",
]

MANIFEST: Final = "manifest.json"
#: The state dict of the exported model (the bare model: preprocessing has no weights).
WEIGHTS: Final = "weights.safetensors"
#: A manifest is a few KB; a larger one is not zoo's (and is not read into memory).
MAX_MANIFEST_BYTES: Final = 16 * 2**20
#: 2: zoo 0.2 (formats from plugins, typed records, the weights file).
FORMAT_VERSION: Final = 2
#: The declared JSON Schema of the manifest (published with zoo).
SCHEMA_FILE: Final = Path(__file__).with_name("manifest.schema.json")
#: Elements of one sample of an input or output (a 3x4096x4096 image is 2^25.6): zoo makes
#: inputs of the manifest's shapes, so a shape of 10^30 is refused, not allocated.
MAX_SAMPLE_ELEMENTS: Final = 2**28


class ArtifactError(ZooError):
    """An export directory is missing, corrupt, or fails its parity check."""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class TensorRecord:
    """An input or output of the exported module."""

    name: str
    dtype: str
    #: Per-sample shape, batch axis excluded.
    shape: tuple[int, ...]
    #: Axis (of the batched tensor) -> its name, for axes of any size.
    dynamic_axes: Mapping[int, str] = field(default_factory=lambda: {0: "batch"})
    #: Inputs: the range of meaningful values.
    value_range: tuple[float, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "dtype": self.dtype,
            "shape": ["batch", *self.shape],
            "dynamic_axes": {str(k): v for k, v in sorted(self.dynamic_axes.items())},
        }
        if self.value_range is not None:
            data["value_range"] = list(self.value_range)
        return data

    @classmethod
    def from_dict(cls, data: Any) -> TensorRecord:
        data = js.obj(data, "a tensor")
        shape = js.seq(data.get("shape"), "shape")
        if not shape or shape[0] != "batch":
            raise ValueError(f"shape must be ['batch', ints...], got {shape!r:.60}")
        axes = js.obj(data.get("dynamic_axes", {"0": "batch"}), "dynamic_axes")
        if not all(k.isdigit() for k in axes):
            raise ValueError(f"dynamic_axes must map axes to names, got {axes!r:.60}")
        dims = tuple(js.integer(d, "shape") for d in shape[1:])
        if any(d < 1 for d in dims) or math.prod(dims) > MAX_SAMPLE_ELEMENTS:
            raise ValueError(
                f"shape must be sizes of at least 1 and {MAX_SAMPLE_ELEMENTS:,} elements a "
                f"sample at most, got {shape!r:.60}"
            )
        value_range = None
        if data.get("value_range") is not None:
            bounds = js.seq(data["value_range"], "value_range")
            if len(bounds) != 2:
                raise ValueError(f"value_range must be [low, high], got {bounds!r:.60}")
            value_range = (js.number(bounds[0], "value_range"), js.number(bounds[1], "value_range"))
        return cls(
            name=js.string(data.get("name"), "name"),
            dtype=js.string(data.get("dtype"), "dtype"),
            shape=dims,
            dynamic_axes={int(k): js.string(v, "dynamic axis name") for k, v in axes.items()},
            value_range=value_range,
        )


@dataclass(frozen=True)
class FileRecord:
    """One file of the export: its sha256 and size."""

    sha256: str
    bytes: int

    @classmethod
    def of(cls, path: Path) -> FileRecord:
        return cls(sha256(path), path.stat().st_size)

    def to_dict(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "bytes": self.bytes}

    @classmethod
    def from_dict(cls, data: Any) -> FileRecord:
        data = js.obj(data, "a file entry")
        digest = js.string(data.get("sha256"), "sha256")
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ValueError(f"sha256 {digest!r:.70} is not a hex digest")
        size = js.integer(data.get("bytes"), "bytes")
        if size < 0:
            raise ValueError(f"bytes must be a size, got {size}")
        return cls(digest, size)


@dataclass(frozen=True)
class FormatRecord:
    """What became of one format: its files and parity, or why it failed."""

    #: ``ok`` or ``failed``.
    status: str
    #: The files it wrote, the artifact first (none when it failed: they were removed).
    files: tuple[str, ...] = ()
    reason: str = ""
    #: What the format reported (TorchScript's ``method``, ONNX's ``opset``...).
    details: Mapping[str, Any] = field(default_factory=dict)
    devices: tuple[str, ...] = ("cpu",)
    parity: ParityResult | None = None
    #: ``fp32``, ``bf16`` or ``int8``.
    precision: str = "fp32"
    #: The accuracy gate on held-out data (None where none ran: fresh weights, no --eval).
    accuracy: AccuracyResult | None = None
    #: Static quantization: the dataset and the number of samples calibrated on.
    calibration: Mapping[str, Any] | None = None
    #: CPU flags its artifact needs to run fast (any one of them).
    cpu_features: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def artifact(self) -> str | None:
        """The file a runtime loads, if the format succeeded."""
        return self.files[0] if self.ok and self.files else None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "status": self.status,
            "files": list(self.files),
            "devices": list(self.devices),
            "details": dict(self.details),
        }
        if self.reason:
            data["reason"] = self.reason
        if self.parity is not None:
            data["parity"] = self.parity.to_dict()
        data["precision"] = self.precision
        if self.accuracy is not None:
            data["accuracy"] = self.accuracy.to_dict()
        if self.calibration is not None:
            data["calibration"] = dict(self.calibration)
        if self.cpu_features:
            data["cpu_features"] = list(self.cpu_features)
        return data

    @classmethod
    def from_dict(cls, data: Any) -> FormatRecord:
        data = js.obj(data, "a format entry")
        status = data.get("status")
        if status not in ("ok", "failed"):
            raise ValueError(f"status must be 'ok' or 'failed', got {status!r:.40}")
        files = tuple(_names(data.get("files", []), "files"))
        if status == "ok" and not files:
            raise ValueError("a format that succeeded lists its files")
        parity = data.get("parity")
        precision = js.string(data.get("precision", "fp32"), "precision")
        if precision not in PRECISIONS:
            raise ValueError(
                f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r:.20}"
            )
        accuracy = data.get("accuracy")
        calibration = data.get("calibration")
        if status == "ok" and precision != "fp32" and accuracy is None:
            # --check would vouch for an artifact it never ran: no such export is zoo's.
            raise ValueError(
                f"a {precision} artifact listed as ok has no accuracy gate (zoo gates every "
                "reduced-precision artifact)"
            )
        return cls(
            status=status,
            files=files,
            reason=js.string(data.get("reason", ""), "reason"),
            details=js.obj(data.get("details", {}), "details"),
            devices=tuple(
                js.string(d, "device") for d in js.seq(data.get("devices", []), "devices")
            ),
            parity=ParityResult.from_dict(js.obj(parity, "parity")) if parity else None,
            precision=precision,
            accuracy=AccuracyResult.from_dict(accuracy) if accuracy is not None else None,
            calibration=js.obj(calibration, "calibration") if calibration is not None else None,
            cpu_features=tuple(
                js.string(f, "cpu feature")
                for f in js.seq(data.get("cpu_features", []), "cpu_features")
            ),
        )


@dataclass(frozen=True)
class Labels:
    """What a classifier's outputs mean, from the dataset it was trained on: the class of
    each output index and, for a sequence model, the token of each input id. A checkpoint's
    ``meta.json`` holds them (its ``dataset``) and an export copies them into its manifest."""

    #: The dataset they come from (``mnist5k``, ``imagefolder:/data/pets``...).
    dataset: str
    #: Output index -> class name (the digits for MNIST, the folder names of an ImageFolder,
    #: the languages of ``names``).
    classes: tuple[str, ...]
    #: Input id -> character, ``<pad>`` and ``<unk>`` first (sequence models), else None.
    vocabulary: tuple[str, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "classes": list(self.classes),
            "vocabulary": list(self.vocabulary) if self.vocabulary is not None else None,
        }

    @classmethod
    def from_dict(cls, data: Any) -> Labels:
        data = js.obj(data, "labels")
        classes = tuple(
            js.string(c, "a class name") for c in js.seq(data.get("classes"), "classes")
        )
        if not classes or len(set(classes)) != len(classes):
            raise ValueError("labels.classes must name each class once")
        vocabulary = data.get("vocabulary")
        if vocabulary is not None:
            vocabulary = tuple(js.string(t, "a token") for t in js.seq(vocabulary, "vocabulary"))
            if len(set(vocabulary)) != len(vocabulary):
                raise ValueError("labels.vocabulary must list each token once")
        return cls(js.string(data.get("dataset"), "labels.dataset"), classes, vocabulary)

    @classmethod
    def of_checkpoint(cls, meta: Mapping[str, Any]) -> Labels | None:
        """The labels of the dataset a checkpoint was trained on; None where its
        ``meta.json`` has none (zoo 0.1 wrote the class names but no vocabulary, which a
        sequence model's labels need) or they are malformed."""
        dataset = meta.get("dataset")
        if not isinstance(dataset, Mapping):
            return None
        try:
            labels = cls.from_dict(
                {
                    "dataset": dataset.get("name"),
                    "classes": dataset.get("class_names"),
                    "vocabulary": dataset.get("vocabulary"),
                }
            )
        except (ValueError, TypeError):
            return None
        if dataset.get("kind") == "tokens" and labels.vocabulary is None:
            return None
        return labels


@dataclass(frozen=True)
class Manifest:
    """Everything ``manifest.json`` says."""

    #: The registered model name and the builder options it was built with.
    model: str
    model_args: Mapping[str, Any]
    #: Where the weights came from: "fresh weights (seed 0)", or a checkpoint directory.
    weights_source: str
    created: str
    #: zoo, torch and the libraries of every format tried.
    versions: Mapping[str, str]
    #: True: the bare model; False: the bundle with its preprocessing.
    raw: bool
    #: ``none``, ``softmax`` or ``topk``, and k for top-k.
    postprocess: str
    top_k: int | None
    #: The bundle's preprocessing steps (``zoo.transforms.describe_transform``).
    preprocessing: tuple[Mapping[str, Any], ...]
    inputs: tuple[TensorRecord, ...]
    outputs: tuple[TensorRecord, ...]
    formats: Mapping[str, FormatRecord]
    #: Every file of the export but the manifest: plain names (paths of them, for the files
    #: in a folder: ``triton/lenet/config.pbtxt``) -> sha256 and size.
    files: Mapping[str, FileRecord]
    #: What the outputs mean (class names, a sequence model's vocabulary); None: an export of
    #: fresh weights, or of a checkpoint that does not say (its outputs are indices).
    labels: Labels | None = None
    format_version: int = FORMAT_VERSION

    @property
    def output_names(self) -> list[str]:
        return [o.name for o in self.outputs]

    def artifacts(self) -> dict[str, str]:
        """Format -> the file its runtime loads, for every format that succeeded."""
        return {f: r.artifact for f, r in self.formats.items() if r.artifact is not None}

    def failures(self) -> dict[str, str]:
        """Format -> why it has no artifact."""
        return {f: r.reason for f, r in self.formats.items() if not r.ok}

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "model": self.model,
            "model_args": dict(self.model_args),
            "weights": {"source": self.weights_source, "file": WEIGHTS},
            "created": self.created,
            "versions": dict(self.versions),
            "raw": self.raw,
            "postprocess": {"kind": self.postprocess, "k": self.top_k},
            "preprocessing": [dict(step) for step in self.preprocessing],
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "formats": {name: f.to_dict() for name, f in self.formats.items()},
            "files": {name: f.to_dict() for name, f in self.files.items()},
            "labels": self.labels.to_dict() if self.labels is not None else None,
        }

    def save(self, directory: Path) -> None:
        atomic_write_json(directory / MANIFEST, self.to_dict())

    @classmethod
    def from_dict(cls, data: Any) -> Manifest:
        """Parse what :meth:`to_dict` wrote; ValueError naming the first thing that is not."""
        data = js.obj(data, "the manifest")
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(
                f"format_version is {version!r:.20}, this zoo reads {FORMAT_VERSION}: "
                "export the model again with this zoo"
            )
        files = {
            name: FileRecord.from_dict(entry)
            for name, entry in js.obj(data.get("files"), "files").items()
        }
        _names(list(files), "files")
        weights = js.obj(data.get("weights"), "weights")
        if weights.get("file") != WEIGHTS or WEIGHTS not in files:
            raise ValueError(f"the weights must be {WEIGHTS}, listed in files")
        formats = {
            js.string(name, "format name"): FormatRecord.from_dict(entry)
            for name, entry in js.obj(data.get("formats"), "formats").items()
        }
        for name, record in formats.items():
            unlisted = [f for f in record.files if f not in files]
            if unlisted:
                raise ValueError(f"format {name!r} names files not listed in files: {unlisted}")
        post = js.obj(data.get("postprocess"), "postprocess")
        top_k = post.get("k")
        if top_k is not None:
            top_k = js.integer(top_k, "postprocess.k")
            if top_k < 1:
                raise ValueError(f"postprocess.k must be at least 1, got {top_k}")
        return cls(
            model=js.string(data.get("model"), "model"),
            model_args=js.obj(data.get("model_args", {}), "model_args"),
            weights_source=js.string(weights.get("source", ""), "weights.source"),
            created=js.string(data.get("created", ""), "created"),
            versions={
                js.string(k, "version"): js.string(v, "version")
                for k, v in js.obj(data.get("versions", {}), "versions").items()
            },
            raw=js.boolean(data.get("raw"), "raw"),
            postprocess=js.string(post.get("kind"), "postprocess.kind"),
            top_k=top_k,
            preprocessing=tuple(
                js.obj(step, "a preprocessing step")
                for step in js.seq(data.get("preprocessing", []), "preprocessing")
            ),
            inputs=tuple(TensorRecord.from_dict(t) for t in js.seq(data.get("inputs"), "inputs")),
            outputs=tuple(
                TensorRecord.from_dict(t) for t in js.seq(data.get("outputs"), "outputs")
            ),
            formats=formats,
            files=files,
            labels=Labels.from_dict(labels) if (labels := data.get("labels")) is not None else None,
        )


@cache
def manifest_schema() -> dict[str, Any]:
    """The declared JSON Schema of ``manifest.json`` (:data:`SCHEMA_FILE`)."""
    schema: dict[str, Any] = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    return schema


@cache
def _checker() -> Any:
    return js.validator(manifest_schema())


def read_manifest(directory: Path) -> Manifest:
    """The manifest of export ``directory``; ArtifactError, naming the file and what is wrong
    with it, for anything else (a symbolic link, a device or FIFO, more than
    :data:`MAX_MANIFEST_BYTES`, not JSON, a field its schema refuses, not what zoo writes)."""
    path = directory / MANIFEST
    try:
        data = json.loads(js.read_text(path, str(path), MAX_MANIFEST_BYTES, follow=False))
    except FileNotFoundError:
        raise ArtifactError(f"{directory} has no {MANIFEST}: not a zoo export directory") from None
    except OSError as exc:
        raise ArtifactError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ArtifactError(f"cannot read {path}: {exc}") from None
    # Another version is said as such (export again), not as the fields it lacks.
    ours = not isinstance(data, dict) or data.get("format_version") == FORMAT_VERSION
    problem = js.first_error(_checker(), data, top="the manifest") if ours else None
    if problem is not None:
        raise ArtifactError(f"{path} is not a zoo manifest: {problem}")
    try:
        manifest = Manifest.from_dict(data)
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise ArtifactError(f"{path} is not a zoo manifest: {exc}") from None
    if len(manifest.inputs) != 1:
        raise ArtifactError(
            f"{path}: zoo exports have one input, this lists {len(manifest.inputs)}"
        )
    problem = _labels_problem(manifest)
    if problem is not None:
        raise ArtifactError(f"{path} is not a zoo manifest: {problem}")
    return manifest


def _labels_problem(manifest: Manifest) -> str | None:
    if manifest.labels is None:
        return None
    shapes = [tuple(o.shape) for o in manifest.outputs]
    return labels_misfit(manifest.labels, manifest.postprocess, manifest.top_k, shapes)


def labels_misfit(
    labels: Labels, postprocess: str, top_k: int | None, output_shapes: Sequence[tuple[int, ...]]
) -> str | None:
    """Why ``labels`` cannot name these outputs, or None: as many classes as a classifier's
    one output of scores, at least k for top-k."""
    n = len(labels.classes)
    if postprocess == "topk":
        k = top_k or 0
        return f"labels.classes lists {n} classes, fewer than k={k}" if n < k else None
    if len(output_shapes) == 1 and len(output_shapes[0]) == 1 and output_shapes[0][0] != n:
        return f"labels.classes lists {n} classes for {output_shapes[0][0]} scores"
    return None


def _folder_problem(directory: Path, name: str) -> str | None:
    """Why the folders on the way to listed file ``name`` (``triton`` and ``triton/lenet`` for
    ``triton/lenet/config.pbtxt``) cannot be trusted, or None: each must be a real folder,
    not a symbolic link (which would take the path out of the export)."""
    parts = name.split("/")[:-1]
    for depth in range(1, len(parts) + 1):
        folder = "/".join(parts[:depth])
        path = directory / folder
        if path.is_symlink():
            return f"its folder {folder} is a symbolic link (an export holds regular files only)"
        if not path.exists():
            return "missing"
        if not path.is_dir():
            return f"its folder {folder} is not a folder"
    return None


def verify_files(directory: Path, manifest: Manifest) -> list[str]:
    """Problems with the files the manifest lists (missing, not a regular file, a symbolic
    link, in a folder that is a symbolic link, a size or sha256 mismatch), and with any
    symbolic link in the directory or in a folder of it that holds listed files: each
    ``name: why``. The size is compared first: a file of another size is not hashed."""
    problems = []
    folders = {""}  # the directory, and every folder of it that holds a listed file
    for name, entry in manifest.files.items():
        path = directory / name
        if (why := _folder_problem(directory, name)) is not None:
            problems.append(f"{name}: {why}")
            continue
        parts = name.split("/")[:-1]
        folders.update("/".join(parts[: i + 1]) for i in range(len(parts)))
        if path.is_symlink():
            problems.append(f"{name}: is a symbolic link (an export holds regular files only)")
        elif not path.exists():
            problems.append(f"{name}: missing")
        elif not path.is_file():
            problems.append(f"{name}: is not a regular file")
        elif (size := path.stat().st_size) != entry.bytes:
            problems.append(
                f"{name}: {size:,} bytes, the manifest says {entry.bytes:,} (modified or corrupt)"
            )
        elif sha256(path) != entry.sha256:
            problems.append(f"{name}: sha256 does not match the manifest (modified or corrupt)")
    for folder in sorted(folders):
        try:
            entries = sorted(os.scandir(directory / folder), key=lambda e: e.name)
        except OSError as exc:
            where = f"the folder {folder}" if folder else "the directory"
            return [*problems, f"cannot list {where}: {exc.strerror or exc}"]
        for item in entries:
            name = f"{folder}/{item.name}" if folder else item.name
            if item.is_symlink() and name not in manifest.files:
                problems.append(
                    f"{name}: a symbolic link in the export directory (refused: an export "
                    "holds regular files only)"
                )
    return problems


#: The most entries a format's folder is listed for (a model repository holds a handful).
MAX_FOLDER_ENTRIES: Final = 4096


def _folder_contents(directory: Path, folder: str) -> list[str]:
    """Every entry of ``folder`` (a path in ``directory``) and of its folders, as paths
    relative to ``directory``, but the folders themselves: files, and anything else a runtime
    might read (symbolic links, which are not followed, devices...). ValueError beyond
    :data:`MAX_FOLDER_ENTRIES` entries or :data:`MAX_EXPORT_DEPTH` parts."""
    found: list[str] = []
    pending = [folder]
    while pending:
        current = pending.pop()
        with os.scandir(directory / current) as entries:
            for item in entries:
                name = f"{current}/{item.name}"
                if len(found) + len(pending) >= MAX_FOLDER_ENTRIES:
                    raise ValueError(f"{folder} holds more than {MAX_FOLDER_ENTRIES} entries")
                if item.is_dir(follow_symlinks=False):
                    if name.count("/") + 1 >= MAX_EXPORT_DEPTH:
                        raise ValueError(f"{name!r:.200} lies deeper than an export's files may")
                    pending.append(name)
                else:
                    found.append(name)
    return sorted(found)


def verify_export(directory: Path, manifest: Manifest) -> None:
    """Refuse an export whose runtimes could read anything the manifest does not vouch for:
    ArtifactError, in one line naming the manifest and the entry, unless every listed file is
    a regular file with its sha256, no symbolic link lies in the directory (or in a folder of
    it holding listed files), and each format registered here reads exactly the artifact its
    entry names and only listed files: of a format that writes a folder (a Triton model
    repository, which its server reads whole), every entry in it."""
    where = directory / MANIFEST
    problems = verify_files(directory, manifest)
    if problems:
        raise ArtifactError(f"{where}: " + "; ".join(problems))
    registry = get_plugins().formats
    for name, record in manifest.formats.items():
        if not record.ok or name not in registry:
            continue
        fmt = registry.get(name)
        try:
            artifact = fmt.artifact(directory)
            # The format reads its own file names, and whatever its folders hold: each present
            # must be one the manifest checked.
            present = []
            for file in fmt.files:
                path = directory / file
                if path.is_dir() and not path.is_symlink():
                    # an empty folder where a file belongs is no file the manifest checked
                    present += _folder_contents(directory, file) or [file]
                elif os.path.lexists(path):
                    present.append(file)
        except (ValueError, OSError) as exc:
            why = str(exc) if isinstance(exc, ValueError) else one_line(exc)
            raise ArtifactError(f"{where}: formats.{name}: {' '.join(why.split())[:400]}") from None
        if record.files[0] != artifact:
            raise ArtifactError(
                f"{where}: formats.{name}: names {record.files[0]!r} as its artifact, but the "
                f"{name} format reads {artifact!r}"
            )
        unlisted = [f for f in present if f not in manifest.files]
        if unlisted:
            raise ArtifactError(
                f"{where}: formats.{name}: the {name} format would read {unlisted[0]!r}, "
                "which the manifest does not list (remove it or export again)"
            )


def _names(values: Any, what: str) -> list[str]:
    names = js.seq(values, what)
    bad = [n for n in names if not is_export_path(n)]
    if bad:
        raise ValueError(
            f"{what} must be plain file names inside the export directory (or paths of them in "
            f"its folders, {MAX_EXPORT_DEPTH} parts at most), got {bad[0]!r:.200}"
        )
    return names
