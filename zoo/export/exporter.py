"""``zoo export``: build the bundle, write each format, gate it on parity, write the manifest.

Everything is written into a staging directory beside ``--out`` and moved into place at the
end, so an interrupted export never leaves a half-written directory that looks complete, and
an artifact that fails its parity check is removed rather than shipped. One process at a time
writes an export directory (a lock beside it); an existing export is replaced only when asked
(``overwrite``), and stays whole until its replacement is complete. Free space is checked
first; a disk that fills up anyway aborts the export and keeps the earlier one. The formats
come from the format registry (``zoo formats``): zoo's own and any plugin's are exported the
same way.
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from zoo._io import (
    MAX_EXPORT_DEPTH,
    atomic_path,
    exchange,
    free_bytes,
    fsync_dir,
    is_export_path,
    is_no_space,
    no_space_message,
    usual_mode,
)
from zoo._lock import DirectoryLocked, lock_directory
from zoo._pluginmanager import get_plugins
from zoo._version import __version__
from zoo.checkpoint import Checkpoint, load_checkpoint
from zoo.errors import NoSpaceError, UsageError, ZooError, one_line, user_message
from zoo.export.accuracy import (
    DEFAULT_CALIBRATION_SAMPLES,
    DEFAULT_EVAL_SAMPLES,
    DEFAULT_MAX_DROP,
    EVAL_FILE,
    AccuracyResult,
    DataSource,
    EvalData,
    calibration_inputs,
    check_calibration_samples,
    check_max_drop,
    eval_data,
    gate_splits,
    load_eval_data,
    measure_artifact,
)
from zoo.export.bundle import make_bundle, run_eager
from zoo.export.gates import (
    DEFAULT_ATOL,
    DEFAULT_RTOL,
    PARITY_FILE,
    ParityResult,
    RuntimeCrash,
    gate,
    load_fixture,
    parity_inputs,
    save_fixture,
)
from zoo.export.manifest import (
    MANIFEST,
    WEIGHTS,
    ArtifactError,
    FileRecord,
    FormatRecord,
    Labels,
    Manifest,
    TensorRecord,
    labels_misfit,
    read_manifest,
    verify_export,
)
from zoo.formats import ExportRequest, Format, check_precisions
from zoo.registry import InputSpec, ModelSpec
from zoo.spec_check import check_outputs
from zoo.tasks import Task
from zoo.train.config import check_checkpoint_config
from zoo.transforms import describe_transform

__all__ = ["ExportReport", "check_accuracy", "check_export", "export_model", "resolve_formats"]


@dataclass
class ExportReport:
    out: Path
    manifest: Manifest
    #: What the user should know that is no failure (a gate that could not run).
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return all(record.ok for record in self.manifest.formats.values())


def resolve_formats(
    names: Sequence[str] | None, precisions: Sequence[str] = ("fp32",)
) -> list[Format]:
    """The registered formats called ``names`` (the default ones for None), each in every one
    of ``precisions`` it has a variant for (``onnx`` in ``int8`` is ``onnx-int8``); a variant
    named itself is taken as it is. UsageError for a format that is unknown (with close
    names) or cannot run here, and for a precision none of the formats has."""
    registry = get_plugins().formats
    check_precisions(precisions)
    bases = [registry.get(n) for n in (registry.defaults() if names is None else names)]
    if not bases:
        raise UsageError("--format: give at least one format (`zoo formats` lists them)")
    chosen: list[Format] = [f for f in bases if f.variant_of is not None]
    bases = [f for f in bases if f.variant_of is None]
    for precision in precisions:
        found = [registry.of_precision(base.name, precision) for base in bases]
        variants = [f for f in found if f is not None]
        if not variants and not chosen:
            having = [f.variant_of for f in registry if f.precision == precision and f.variant_of]
            asked = ", ".join(b.name for b in bases)
            raise UsageError(
                f"--precision {precision}: none of the formats asked for ({asked}) has a "
                f"variant in {precision}"
                + (f"; formats with one: {', '.join(dict.fromkeys(having))}" if having else "")
            )
        chosen += variants
    for fmt in chosen:
        why = fmt.unavailable()
        if why:
            raise UsageError(f"format {fmt.name!r} is not available here: {why}")
    return list(dict.fromkeys(chosen))


#: Space assumed per format, in multiples of the weights' bytes (TorchScript, ONNX and .pt2
#: artifacts hold the weights once, plus the graph); the export also writes the weights.
SPACE_PER_FORMAT = 2.0
SPACE_MARGIN = 1 << 20


def _check_writable(out: Path) -> None:
    parent = out.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".zoo-write-test"):
            pass
    except OSError as exc:
        if is_no_space(exc):
            raise NoSpaceError(no_space_message(parent, SPACE_MARGIN)) from None
        raise UsageError(f"cannot write to {parent}: {exc.strerror or exc}") from exc
    if out.exists() and not (out / MANIFEST).is_file() and any(out.iterdir()):
        raise UsageError(f"{out} exists and is not a zoo export directory; choose another --out")


def _describe_export(out: Path) -> str:
    """What the export in ``out`` holds, in a few words: model, weights, formats."""
    try:
        manifest = read_manifest(out)
    except ArtifactError as exc:
        reason = (str(exc).splitlines() or [""])[0][:120]
        return f"an export zoo cannot read ({reason})"
    source = manifest.weights_source
    weights = "fresh random weights" if source.startswith("fresh") else f"the weights of {source}"
    formats = ", ".join(f for f, r in manifest.formats.items() if r.ok) or "no artifact"
    return f"an export of {manifest.model} with {weights} ({formats})"


def _recover(out: Path) -> None:
    """Under the lock: finish or undo what an export killed mid-way left beside ``out``."""
    parent = out.resolve().parent
    old = parent / f".{out.name}.old"
    if old.is_dir() and not old.is_symlink():
        if out.exists():
            shutil.rmtree(old)  # killed after the new export was in place
        else:
            os.replace(old, out)  # killed between the two renames: put the old one back
    for staging in parent.glob(f".{out.name}.partial-*"):
        if staging.is_dir() and not staging.is_symlink():
            shutil.rmtree(staging, ignore_errors=True)


def clean_leftovers(out: str | Path) -> list[str]:
    """Remove what an export killed mid-way left beside ``out`` (``.OUT.partial-*`` staging
    directories, ``.OUT.old``, its lock file), as the next export of ``out`` would: under the
    export's lock, so nothing is touched while an export runs (then nothing is removed). The
    names removed."""
    out = Path(out)
    parent = out.resolve().parent
    lock_file = parent / f".{out.name}.zoo-lock"
    found = sorted(parent.glob(f".{out.name}.partial-*"))
    found += [p for p in (parent / f".{out.name}.old", lock_file) if os.path.lexists(p)]
    if not found:
        return []
    try:
        with lock_directory(out, beside=True):
            _recover(out)
    except DirectoryLocked:
        return []  # an export of it is running: what is there is its own
    return [p.name for p in found if not os.path.lexists(p)]


@dataclass(frozen=True)
class ExportSettings:
    """How ``zoo export`` exports a model: every option of the command, as
    :class:`~zoo.bench.settings.BenchSettings` is ``zoo bench``'s and
    :class:`~zoo.train.config.TrainConfig` ``zoo train``'s."""

    #: Format names (None: the registry's defaults), each in every one of ``precisions``.
    formats: Sequence[str] | None = None
    #: A run directory (its best checkpoint) or a checkpoint directory; None: fresh weights.
    checkpoint: str | Path | None = None
    model_args: Mapping[str, Any] | None = None
    #: The bare model, without its preprocessing.
    raw: bool = False
    postprocess: str = "none"
    top_k: int = 5
    opset: int = 20
    atol: float = DEFAULT_ATOL
    rtol: float = DEFAULT_RTOL
    #: Seeds fresh weights.
    seed: int | None = None
    #: Replace an export already in ``out``.
    overwrite: bool = False
    precisions: Sequence[str] = ("fp32",)
    #: The accuracy gate's held-out data (default: the checkpoint's dataset).
    eval_dataset: str | None = None
    #: int8 calibration data (default: the gate's dataset).
    calibrate: str | None = None
    calibration_samples: int = DEFAULT_CALIBRATION_SAMPLES
    max_drop: float = DEFAULT_MAX_DROP
    eval_samples: int = DEFAULT_EVAL_SAMPLES


def export_model(
    name: str, out: str | Path, settings: ExportSettings | None = None, **options: Any
) -> ExportReport:
    """Export model ``name`` (fresh weights, or a run directory's best checkpoint) as
    ``settings`` say (or the :class:`ExportSettings` fields given as keywords): to
    ``formats`` (the registry's defaults if None) in each of ``precisions``. An export already
    in ``out`` is refused unless ``overwrite``; another process exporting to ``out`` is
    refused (:class:`UsageError` naming its pid).

    The accuracy gate (``zoo.export.accuracy``) runs on the test split of ``eval_dataset``
    (default: the checkpoint's dataset, split as it was trained; none for fresh weights
    unless given); reduced precisions need it, and int8 calibrates on ``calibration_samples``
    of the training split of ``calibrate`` (default: the gate's dataset)."""
    settings = replace(settings or ExportSettings(), **options)
    out = Path(out)
    chosen = resolve_formats(settings.formats, settings.precisions)
    format_options = {"opset": settings.opset}
    for fmt in chosen:
        fmt.check_options(format_options)
    settings = replace(settings, max_drop=check_max_drop(settings.max_drop))
    if settings.eval_samples < 1:
        raise UsageError(f"--eval-samples {settings.eval_samples}: give at least 1")
    spec = get_plugins().models.get(name)
    task = get_plugins().tasks.create(spec.task, {}) if spec.task else None
    _check_gating(spec, chosen, settings, task)
    if out.is_symlink():
        # The new export is swapped in for the old by renaming the directory entry: a link
        # there would be replaced by a directory, and what it points to left as it was.
        raise UsageError(
            f"--out {out} is a symbolic link (to {os.path.realpath(out)}): give the directory "
            "it points to, or another --out (nothing was changed)"
        )
    _check_writable(out)
    with lock_directory(out, beside=True):
        _recover(out)
        if (out / MANIFEST).is_file() and not settings.overwrite:
            raise UsageError(
                f"{out} already holds {_describe_export(out)}: pass --overwrite to replace it, "
                "or choose another --out (nothing was changed)"
            )
        return _export(spec, out, chosen, format_options, settings, task)


def _check_gating(
    spec: ModelSpec, chosen: list[Format], settings: ExportSettings, task: Task | None
) -> None:
    """UsageError, before any work, for reduced precision that cannot be gated."""
    reduced = [f.name for f in chosen if f.precision != "fp32"]
    if reduced and (task is None or task.gate_metric is None):
        raise UsageError(
            f"{', '.join(reduced)}: reduced precision is gated on accuracy over held-out data, "
            f"and task {spec.task!r} of {spec.name!r} measures none; export fp32"
        )
    if reduced and settings.checkpoint is None and settings.eval_dataset is None:
        raise UsageError(
            f"{', '.join(reduced)}: reduced precision is gated on accuracy over held-out data: "
            "give --checkpoint (its dataset is used) or --eval DATASET"
        )
    if any(f.calibrated for f in chosen):
        check_calibration_samples(settings.calibration_samples)


@dataclass
class _Model:
    """The model to export: its spec (vocabulary fitted), built with ``args`` and loaded
    from ``checkpoint`` (None: fresh weights), and where its weights came from."""

    spec: ModelSpec
    module: torch.nn.Module
    args: dict[str, Any]
    source: str
    checkpoint: Checkpoint | None


@dataclass
class _GateData:
    """What the accuracy gate and int8 calibration read, before anything is written."""

    data: EvalData | None = None
    calibration: Any = None
    calibration_source: DataSource | None = None
    notes: list[str] = field(default_factory=list)


def _export(
    spec: ModelSpec,
    out: Path,
    chosen: list[Format],
    options: dict[str, Any],
    settings: ExportSettings,
    task: Task | None,
) -> ExportReport:
    model = _load_model(spec, settings)
    model_outputs = check_outputs(model.spec, model.module, model.args)
    bundle, input_spec, outputs = make_bundle(
        model.spec, model.module, raw=settings.raw, postprocess=settings.postprocess,
        top_k=settings.top_k, model_outputs=model_outputs,
    )  # fmt: skip  # the outputs are checked before any work: the manifest says these
    output_names = tuple(o.name for o in outputs)
    inputs = parity_inputs(input_spec)
    expected = [[t.numpy() for t in run_eager(bundle, x)] for x in inputs]
    gating = _read_gate_data(model, bundle, input_spec, chosen, settings, task)
    labels = _labels(model, model_outputs, settings, task, gating.notes)
    state = {k: v.detach().cpu().contiguous() for k, v in model.module.state_dict().items()}
    weight_bytes = sum(t.numel() * t.element_size() for t in state.values())
    needs = int(weight_bytes * (1 + SPACE_PER_FORMAT * len(chosen))) + SPACE_MARGIN
    if gating.data is not None:
        needs += gating.data.nbytes()
    parent = out.resolve().parent
    if free_bytes(parent) < needs:
        raise NoSpaceError(no_space_message(parent, needs))
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=parent))
    try:
        staging.chmod(usual_mode(0o777))  # mkdtemp makes 0700; the export is an ordinary folder
        with atomic_path(staging / WEIGHTS) as tmp:
            save_file(state, str(tmp), metadata={"format": "zoo", "model": model.spec.name})
        save_fixture(staging / PARITY_FILE, inputs, expected, list(output_names))
        if gating.data is not None:
            gating.data.save(staging / EVAL_FILE, output_names)
        # batch 2: a batch of 1 gets specialised (pitfalls)
        request = ExportRequest(
            bundle, input_spec.example(2), input_spec, output_names, staging, options,
            gating.calibration, model=model.spec.name, outputs=tuple(outputs),
            labels=labels.classes if labels is not None else None,
        )  # fmt: skip
        records = {fmt.name: _export_gated(fmt, request, model, settings, gating) for fmt in chosen}
        manifest = _manifest(
            model, bundle, input_spec, outputs, chosen, records, settings, staging, labels
        )
        manifest.save(staging)
        _move_into_place(staging, out)
    except BaseException as exc:
        if is_no_space(exc):
            raise NoSpaceError(no_space_message(parent, needs)) from None
        raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return ExportReport(out=out, manifest=manifest, notes=tuple(gating.notes))


def _load_model(spec: ModelSpec, settings: ExportSettings) -> _Model:
    """The model built with the settings' options over the checkpoint's (if any), its
    weights loaded; ``seed`` seeds fresh weights."""
    args = dict(settings.model_args or {})
    source = "fresh weights" + (f" (seed {settings.seed})" if settings.seed is not None else "")
    ckpt = None
    if settings.checkpoint is not None:
        ckpt = load_checkpoint(settings.checkpoint, tag="best")
        check_checkpoint_config(ckpt.path, ckpt.meta)  # its dataset split feeds the gate
        if ckpt.meta.get("model") != spec.name:
            raise UsageError(
                f"checkpoint {ckpt.path} holds model {ckpt.meta.get('model')!r}, not {spec.name!r}"
            )
        args = {**ckpt.meta.get("model_args", {}), **args}
        source = str(ckpt.path)
    if settings.seed is not None:
        torch.manual_seed(settings.seed)
    spec = _fit_vocabulary(spec, args)
    module = spec.build(**args).eval()
    if ckpt is not None:
        ckpt.load_into(module, spec.name)
    return _Model(spec, module, args, source, ckpt)


def _read_gate_data(
    model: _Model,
    bundle: Any,
    input_spec: InputSpec,
    chosen: list[Format],
    settings: ExportSettings,
    task: Task | None,
) -> _GateData:
    """The held-out data of the accuracy gate, and calibration inputs: read before anything
    is written, so a dataset that does not fit is refused with nothing done.

    Only what the user asked for may fail the export: --eval, or reduced precision (which has
    no gate without data). The checkpoint's own dataset is read where it is (never downloaded
    by an export); if it cannot be, an fp32 export goes on with a note."""
    spec, ckpt = model.spec, model.checkpoint
    gating = _GateData()
    data_source = None
    splits = None
    bundle_images = input_spec is not spec.input and spec.input.mean is not None
    required = settings.eval_dataset is not None or any(f.precision != "fp32" for f in chosen)
    if (
        (settings.eval_dataset is not None or ckpt is not None)
        and task is not None
        and task.gate_metric is not None
    ):
        try:
            if ckpt is None:
                assert settings.eval_dataset is not None
                data_source = DataSource(settings.eval_dataset)
            else:
                data_source = DataSource.of_checkpoint(dict(ckpt.meta), settings.eval_dataset)
            splits = gate_splits(
                spec, data_source, bundle_images=bundle_images,
                download=settings.eval_dataset is not None,
            )  # fmt: skip
            gating.data = eval_data(
                spec, task, bundle, data_source, splits, bundle_images=bundle_images,
                run=lambda module, x: tuple(run_eager(module, x)),
                postprocess=settings.postprocess, limit=settings.eval_samples,
            )  # fmt: skip
        except (ZooError, ValueError) as exc:
            if required:
                raise
            what = repr(data_source.name) if data_source is not None else "(not recorded)"
            gating.notes.append(
                f"no accuracy gate: the checkpoint's dataset {what} cannot be used here "
                f"({user_message(exc)}); give --eval "
                "DATASET for one"
            )
            data_source = None
    if any(f.calibrated for f in chosen):
        calibrate = settings.calibrate
        source = (
            replace(data_source, name=calibrate, vocabulary=None)
            if calibrate and data_source
            else DataSource(calibrate) if calibrate
            else data_source
        )  # fmt: skip
        assert source is not None  # reduced precision needs data (checked)
        if splits is None or source is not data_source:
            splits = gate_splits(spec, source, bundle_images=bundle_images)
        gating.calibration_source = source
        gating.calibration = calibration_inputs(
            source, splits, settings.calibration_samples, bundle_images=bundle_images
        )
    return gating


def _export_gated(
    fmt: Format, request: ExportRequest, model: _Model, settings: ExportSettings, gating: _GateData
) -> FormatRecord:
    """One format written and gated on parity, its calibration recorded, and, with gate data,
    gated on accuracy."""
    record = _export_one(fmt, request, settings.atol, settings.rtol)
    if gating.calibration_source is not None and fmt.calibrated:
        record = replace(
            record,
            calibration={
                "dataset": gating.calibration_source.name,
                "split": "train",
                "samples": settings.calibration_samples,
            },
        )
    if record.ok and gating.data is not None:
        record = _gate_accuracy(
            fmt, record, request.directory, model.spec.name, request.output_names,
            settings.postprocess, settings.max_drop, gating.data,
        )  # fmt: skip
    return record


def _manifest(
    model: _Model,
    bundle: Any,
    input_spec: InputSpec,
    outputs: Sequence[Any],
    chosen: list[Format],
    records: dict[str, FormatRecord],
    settings: ExportSettings,
    staging: Path,
    labels: Labels | None,
) -> Manifest:
    """What the staged export holds, every file in it listed with its hash and size."""
    versions = {"zoo": __version__, "torch": torch.__version__}
    for fmt in chosen:
        versions.update(fmt.versions())
    preprocess = None if isinstance(bundle.preprocess, torch.nn.Identity) else bundle.preprocess
    return Manifest(
        model=model.spec.name,
        model_args=model.args,
        weights_source=model.source,
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        versions=versions,
        raw=settings.raw,
        postprocess=settings.postprocess,
        top_k=settings.top_k if settings.postprocess == "topk" else None,
        preprocessing=tuple(describe_transform(preprocess)),
        inputs=(
            TensorRecord(
                input_spec.name,
                input_spec.dtype,
                input_spec.shape,
                dict(input_spec.dynamic_axes),
                input_spec.value_range,
            ),
        ),
        outputs=tuple(TensorRecord(o.name, o.dtype, o.shape) for o in outputs),
        formats=records,
        files={
            name: FileRecord.of(staging / name) for name in _files_in(staging) if name != MANIFEST
        },
        labels=labels,
    )


def _labels(
    model: _Model,
    model_outputs: Sequence[Any],
    settings: ExportSettings,
    task: Task | None,
    notes: list[str],
) -> Labels | None:
    """The class names (and a sequence model's vocabulary) of the dataset a classifier's
    checkpoint was trained on, for the manifest; None, with a note saying the outputs are
    indices, where the checkpoint has none or they do not fit the outputs. Fresh weights and
    models that do not classify (a VAE, a block) have none, without a note."""
    ckpt = model.checkpoint
    if ckpt is None or task is None or not task.classifies:
        return None
    labels = Labels.of_checkpoint(ckpt.meta)
    if labels is None:
        notes.append(
            f"the checkpoint {ckpt.path} names no classes (written before zoo 0.2?): the "
            "export's outputs are class indices, not labels"
        )
        return None
    # Against the model's own scores (a top-k export's outputs have k columns, not classes).
    shapes = [tuple(o.shape) for o in model_outputs]
    why = labels_misfit(labels, "none", None, shapes)
    if why is not None:
        notes.append(f"the checkpoint's labels do not fit this export ({why}): none recorded")
        return None
    return labels


def _fit_vocabulary(spec: ModelSpec, args: dict[str, Any]) -> ModelSpec:
    """``spec`` with token ids below the model's ``vocab_size`` (a checkpoint trained on
    ``names`` has 111 tokens where the spec's default vocabulary has 128): the example and
    parity inputs must be ids the embedding has."""
    vocab = args.get("vocab_size")
    if not spec.input.is_integer or not isinstance(vocab, int) or isinstance(vocab, bool):
        return spec
    low, high = spec.input.value_range
    if high <= vocab - 1:
        return spec
    return replace(spec, input=replace(spec.input, value_range=(low, float(vocab - 1))))


def _files_in(directory: Path, names: Sequence[str] | None = None) -> list[str]:
    """The regular files in ``directory`` (of its entries ``names`` only, in that order, if
    given), as the manifest names them: plain names, and paths relative to ``directory`` for
    those in its folders, sorted (a Triton repository's ``triton/lenet/config.pbtxt``).
    Symbolic links are neither followed nor listed: zoo writes none."""
    found = []
    for name in sorted(os.listdir(directory)) if names is None else names:
        path = directory / name
        if path.is_symlink():
            continue
        if path.is_file():
            found.append(name)
        elif path.is_dir():
            found += [f"{name}/{inner}" for inner in _files_in(path)]
    return found


def _export_one(fmt: Format, request: ExportRequest, atol: float, rtol: float) -> FormatRecord:
    """Export one format into the staging directory and gate it; on any failure its files are
    removed and the record says why. A format may write only the files it declares; one that
    declares a folder (a model repository) has every file in it recorded, its artifact first
    (:meth:`Format.artifact`)."""
    before = set(os.listdir(request.directory))
    try:
        details = fmt.export(request)
        written = sorted(set(os.listdir(request.directory)) - before)
        undeclared = [f for f in written if f not in fmt.files]
        if undeclared:
            raise ArtifactError(f"the format wrote files it does not declare: {undeclared}")
        if fmt.files[0] not in written:
            raise ArtifactError(f"the format wrote no {fmt.files[0]}")
        listed = _files_in(request.directory, [f for f in fmt.files if f in written])
        artifact = fmt.artifact(request.directory)
        if artifact not in listed:
            raise ArtifactError(f"the format wrote no {artifact}")
        deep = [f for f in listed if not is_export_path(f)]
        if deep:
            raise ArtifactError(
                f"the format wrote {deep[0]!r:.200}, deeper than an export's files may lie "
                f"({MAX_EXPORT_DEPTH} parts at most) or hidden"
            )
        parity = gate(fmt, request.directory, request.output_names, atol, rtol)
    except Exception as exc:
        if is_no_space(exc):  # not this format's failure: the whole export stops
            raise
        _remove(request.directory, set(os.listdir(request.directory)) - before)
        reason = str(exc) if isinstance(exc, RuntimeCrash) else one_line(exc, 1000)
        return FormatRecord(
            "failed", reason=reason, devices=fmt.devices, precision=fmt.precision,
            cpu_features=fmt.cpu_features,
        )  # fmt: skip
    # The artifact first, then the format's other files in its order, a folder's sorted.
    files = (artifact, *(f for f in listed if f != artifact))
    common: dict[str, Any] = {"precision": fmt.precision, "cpu_features": fmt.cpu_features}
    # Never ship an fp32 artifact that differs from eager. A reduced-precision one differs by
    # design: its parity is recorded, and its accuracy on held-out data decides.
    broken = any(c.error for c in parity.checks)
    if not parity.passed and (fmt.precision == "fp32" or broken):
        _remove(request.directory, set(written))
        return FormatRecord(
            "failed", reason=parity.why(), details=details, devices=fmt.devices, parity=parity,
            **common,
        )  # fmt: skip
    return FormatRecord("ok", files, details=details, devices=fmt.devices, parity=parity, **common)


def _gate_accuracy(
    fmt: Format,
    record: FormatRecord,
    directory: Path,
    model: str,
    output_names: Sequence[str],
    postprocess: str,
    max_drop: float,
    data: EvalData,
) -> FormatRecord:
    """The accuracy gate of an artifact that passed its parity gate: recorded, and the
    artifact removed when it fails."""
    result = measure_artifact(
        fmt.name, directory, model, output_names,
        postprocess=postprocess, max_drop=max_drop, dataset=data.dataset, data=data,
    )  # fmt: skip
    if result.passed:
        return replace(record, accuracy=result)
    _remove(directory, {f.split("/", 1)[0] for f in record.files})  # a folder whole
    return replace(record, status="failed", files=(), reason=result.why(), accuracy=result)


def _remove(directory: Path, names: set[str]) -> None:
    """Remove the entries ``names`` of ``directory``: files, and folders whole."""
    for name in names:
        path = directory / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _move_into_place(staging: Path, out: Path) -> None:
    """Put the complete staging directory in place of ``out``. An earlier export is swapped
    out in one atomic step where the file system can (a reader sees the old export or the new
    one); elsewhere it is kept as ``.OUT.old`` until the new one is in place (``_recover``
    puts it back if a crash came between the two renames)."""
    if out.exists() and exchange(staging, out):
        fsync_dir(out.resolve().parent)
        shutil.rmtree(staging)  # now the old export
        return
    old = out.with_name(f".{out.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if out.exists():
        os.replace(out, old)
    os.replace(staging, out)
    fsync_dir(out.resolve().parent)
    if old.exists():
        shutil.rmtree(old)


def unchecked_here(manifest: Manifest) -> dict[str, str]:
    """The export's artifacts whose format cannot run on this machine (``aoti-cuda`` without a
    GPU), and why: ``zoo export --check`` says so and vouches for none of them."""
    registry = get_plugins().formats
    away = {}
    for name, record in manifest.formats.items():
        if record.ok and name in registry and (why := registry.get(name).unavailable()):
            away[name] = why
    return away


def check_weights(directory: Path, manifest: Manifest) -> None:
    """Load ``weights.safetensors`` (safetensors: no pickle) and, where the manifest's model is
    registered here, hold its tensors to the model's own names and shapes (the model is built
    on the meta device: its options allocate nothing). ArtifactError, one line, otherwise: the
    weights are what eager and torch.compile rebuild the model from."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = directory / WEIGHTS
    try:
        weights = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ArtifactError(
            f"{path}: not a safetensors file of weights ({one_line(exc)})"
        ) from None
    models = get_plugins().models
    if manifest.model not in models:
        return
    try:
        with torch.device("meta"):
            own = models.get(manifest.model).build(**manifest.model_args).state_dict()
    except Exception as exc:
        raise ArtifactError(
            f"{directory / MANIFEST}: model_args do not build {manifest.model} ({one_line(exc)})"
        ) from None
    missing = sorted(set(own) - set(weights))
    extra = sorted(set(weights) - set(own))
    shapes = [k for k in own if k in weights and weights[k].shape != own[k].shape]
    if missing or extra or shapes:
        what = (
            f"missing {missing[0]!r}"
            if missing
            else f"unexpected {extra[0]!r}"
            if extra
            else f"{shapes[0]!r} is {tuple(weights[shapes[0]].shape)}, the model's "
            f"{tuple(own[shapes[0]].shape)}"
        )
        raise ArtifactError(
            f"{path}: not the weights of {manifest.model} {dict(manifest.model_args)} ({what})"
        )


def check_export(
    directory: str | Path, on_artifact: Callable[[str, Path], None] | None = None
) -> dict[str, ParityResult]:
    """Re-verify an export: file sizes and hashes, the weights (:func:`check_weights`), then
    parity of each artifact on the saved inputs, in
    the format that wrote it (which must be registered here). Nothing is loaded before
    :func:`verify_export` vouched for every file a format reads; a file that does not load
    is an ArtifactError naming it, in one line. ``on_artifact(format, file)`` is called
    before each artifact runs (:mod:`zoo.export.checking` bounds the time each takes)."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    verify_export(directory, manifest)
    check_weights(directory, manifest)
    if PARITY_FILE not in manifest.files:
        raise ArtifactError(f"{directory / MANIFEST}: files: does not list {PARITY_FILE}")
    try:
        load_fixture(directory / PARITY_FILE, manifest.output_names)  # a clear error, early
    except Exception as exc:
        raise ArtifactError(
            f"{directory / PARITY_FILE}: not this export's parity fixture ({one_line(exc)})"
        ) from None
    registry = get_plugins().formats
    results = {}
    away = unchecked_here(manifest)
    for name, record in manifest.formats.items():
        if not record.ok or record.precision != "fp32":
            continue  # reduced precision: its accuracy gate decides (check_accuracy)
        if record.parity is None or not record.parity.checks:
            # Every artifact zoo writes passed its gate, which the manifest records: one
            # without the record was not gated, and nothing here would run it.
            raise ArtifactError(
                f"{directory / MANIFEST}: {name} is marked ok but records no parity gate: zoo "
                "vouches only for artifacts it gated (export it again)"
            )
        if name in away:
            continue  # it cannot run here (a GPU's package on a CPU): said, not vouched for
        fmt = registry.get(name)
        if on_artifact is not None:
            on_artifact(name, directory / record.files[0])
        try:
            results[name] = gate(
                fmt, directory, manifest.output_names, record.parity.atol, record.parity.rtol
            )
        except Exception as exc:
            raise ArtifactError(
                f"{directory / record.files[0]}: does not load as {name}: {one_line(exc)}"
            ) from None
    return results


def check_accuracy(
    directory: str | Path, on_artifact: Callable[[str, Path], None] | None = None
) -> dict[str, AccuracyResult]:
    """Re-run the accuracy gate of every artifact that had one, on the data saved with the
    export (no model, no dataset), against the eager figures recorded then. The files are
    verified against the manifest first, as :func:`check_export` does; ``on_artifact`` as
    there."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    away = unchecked_here(manifest)
    gated = {
        n: r
        for n, r in manifest.formats.items()
        if r.ok and r.accuracy is not None and n not in away
    }
    if not gated:
        return {}
    if EVAL_FILE not in manifest.files:
        raise ArtifactError(f"{directory / MANIFEST}: files: does not list {EVAL_FILE}")
    verify_export(directory, manifest)
    dataset = next(iter(gated.values())).accuracy.dataset  # type: ignore[union-attr]
    try:
        data = load_eval_data(directory / EVAL_FILE, manifest.output_names, dataset)
    except Exception as exc:
        raise ArtifactError(
            f"{directory / EVAL_FILE}: not this export's accuracy data ({one_line(exc)})"
        ) from None
    results = {}
    for name, record in gated.items():
        assert record.accuracy is not None
        if on_artifact is not None:
            on_artifact(name, directory / record.files[0])
        results[name] = measure_artifact(
            name, directory, manifest.model, manifest.output_names,
            postprocess=manifest.postprocess, max_drop=record.accuracy.max_drop,
            dataset=record.accuracy.dataset, task_name=record.accuracy.task, data=data,
        )  # fmt: skip
    return results
