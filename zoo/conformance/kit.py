"""The conformance kit's checks (``zoo check-plugin``, the pytest plugin): see
:mod:`zoo.conformance`."""

from __future__ import annotations

import contextlib
import inspect
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Final

import numpy as np
import torch

from zoo._pluginmanager import PluginRecord, ZooPlugins, get_plugins
from zoo._version import __version__
from zoo.bench.worker import inputs_of, source_of
from zoo.capabilities import Capabilities, CapabilityOutcome, read_record, write_record
from zoo.checkpoint import load_checkpoint, save_checkpoint
from zoo.data import load_dataset
from zoo.datasets import DatasetEntry, DataSplits
from zoo.errors import UsageError, ZooError, one_line, user_message
from zoo.export.bundle import run_eager
from zoo.export.defaults import DEFAULT_ATOL, DEFAULT_RTOL
from zoo.export.exporter import check_accuracy, check_export, export_model
from zoo.export.manifest import read_manifest
from zoo.export.matrix import outcomes_of
from zoo.formats import Format
from zoo.registry import ModelSpec
from zoo.spec_check import check_outputs
from zoo.tasks import Task, TaskRun
from zoo.train.batches import Batches
from zoo.train.config import TrainConfig

__all__ = [
    "FAIL",
    "PASS",
    "SKIP",
    "CheckResult",
    "Report",
    "check_plugin",
    "describe_result",
    "resolve_target",
]

PASS: Final = "pass"
FAIL: Final = "fail"
SKIP: Final = "skip"
SCHEMA: Final = "zoo-conformance/1"
#: Built-in models that formats, runtimes, tasks and datasets are checked against: an image
#: classifier (exported as a bundle with preprocessing) and a recurrent one (dynamic length).
REFERENCE_MODELS: Final = ("lenet", "lstm")
#: The batch of the train-step check: enough samples to span a dataset's classes.
TRAIN_STEP_SAMPLES: Final = 16


class Skipped(Exception):
    """A check that does not apply here, with the reason (not a failure)."""


@dataclass(frozen=True)
class CheckResult:
    """One check of one registered object."""

    #: What was checked: ``model tiny_mlp``, ``format openvino``...
    subject: str
    #: Which check: ``spec``, ``outputs``, ``train-step``, ``export onnx``...
    check: str
    #: ``pass``, ``fail`` or ``skip``.
    status: str
    #: Why it failed or was skipped; what it measured when it passed.
    detail: str = ""
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "check": self.check,
            "status": self.status,
            "detail": self.detail,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class Report:
    """Every check of one ``zoo check-plugin`` run."""

    target: str
    plugins: tuple[str, ...]
    results: list[CheckResult] = field(default_factory=list)
    #: Model -> its measured capabilities (the export checks' outcomes).
    capabilities: dict[str, Capabilities] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.results) and not self.failures

    @property
    def failures(self) -> list[CheckResult]:
        return [r for r in self.results if r.status == FAIL]

    def lines(self) -> list[str]:
        """One line per check, then the verdict: what ``zoo check-plugin`` prints."""
        return [describe_result(r) for r in self.results] + [self.verdict()]

    def verdict(self) -> str:
        counts = self.counts()
        word = "conforms" if self.ok else "does NOT conform"
        return (
            f"{self.target} {word}: {counts['pass']} passed, {counts['fail']} failed, "
            f"{counts['skip']} skipped"
        )

    def counts(self) -> dict[str, int]:
        return {s: sum(r.status == s for r in self.results) for s in (PASS, FAIL, SKIP)}

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "target": self.target,
            "plugins": list(self.plugins),
            "ok": self.ok,
            "counts": self.counts(),
            "checks": [r.to_dict() for r in self.results],
            "capabilities": {m: c.to_dict() for m, c in self.capabilities.items()},
        }

    def record(self, versions: Mapping[str, str]) -> dict[str, Any]:
        """The measured outcomes in the form of zoo's capability record."""
        return {
            "measured_with": dict(versions),
            "models": {
                model: {fmt: o.to_dict() for fmt, o in caps.formats.items()}
                for model, caps in self.capabilities.items()
            },
        }

    def write_record(self, path: Path) -> None:
        """Write (or update) the capability record at ``path`` with this run's outcomes."""
        versions = {"zoo": __version__, "torch": torch.__version__}
        plugins = get_plugins()
        for caps in self.capabilities.values():
            for fmt in caps.formats:
                if fmt in plugins.formats:
                    versions.update(plugins.formats.get(fmt).versions())
        record = read_record(path) if path.exists() else {"models": {}}
        fresh = self.record(versions)
        record["measured_with"] = fresh["measured_with"]
        for model, outcomes in fresh["models"].items():
            record.setdefault("models", {}).setdefault(model, {}).update(outcomes)
        write_record(record, path)


def describe_result(result: CheckResult) -> str:
    """``ok    model tiny_mlp / outputs: ...``: one check in one line."""
    mark = {PASS: "ok  ", FAIL: "FAIL", SKIP: "skip"}[result.status]
    detail = f": {result.detail}" if result.detail else ""
    return f"{mark}  {result.subject} / {result.check}{detail}"


def resolve_target(target: str, plugins: ZooPlugins | None = None) -> list[PluginRecord]:
    """The plugins called ``target``: an entry-point name, or every entry point of the
    distribution ``target`` (names compared as pip does: case and ``-``/``_`` ignored)."""
    plugins = plugins or get_plugins()

    def norm(name: str) -> str:
        return name.lower().replace("_", "-").replace(".", "-")

    found = [r for r in plugins.records if r.name == target]
    if not found:
        found = [
            r for r in plugins.records if r.distribution and norm(r.distribution) == norm(target)
        ]
    if not found:
        names = sorted(
            {r.name for r in plugins.records}
            | {r.distribution or "" for r in plugins.records} - {""}
        )
        raise UsageError(
            f"no plugin or distribution named {target!r}; installed: {', '.join(names)} "
            "(`zoo plugins` lists them)"
        )
    return found


class _Run:
    """Runs checks, timing each and turning what they raise into a result."""

    def __init__(self, report: Report, echo: Callable[[CheckResult], None] | None) -> None:
        self.report = report
        self.echo = echo

    def check(self, subject: str, name: str, fn: Callable[[], str | None]) -> CheckResult:
        started = time.perf_counter()
        try:
            detail = fn() or ""
            status = PASS
        except Skipped as exc:
            status, detail = SKIP, str(exc)
        except Exception as exc:  # a plugin's bug: the kit reports it and goes on
            status, detail = FAIL, user_message(exc, 500, first_line=False)
        return self.add(CheckResult(subject, name, status, detail, time.perf_counter() - started))

    def guard(self, subject: str, fn: Callable[[], None]) -> None:
        """Run the checks of one object; what escapes them fails that object only."""
        started = time.perf_counter()
        try:
            fn()
        except Exception as exc:
            seconds = time.perf_counter() - started
            self.add(
                CheckResult(
                    subject, "checks", FAIL, user_message(exc, 500, first_line=False), seconds
                )
            )

    def add(self, result: CheckResult) -> CheckResult:
        self.report.results.append(result)
        if self.echo is not None:
            self.echo(result)
        return result


def check_plugin(
    target: str,
    *,
    formats: Sequence[str] | None = None,
    workdir: Path | None = None,
    echo: Callable[[CheckResult], None] | None = None,
) -> Report:
    """Check everything the plugin (or distribution) ``target`` registers.

    ``formats``: the export formats to check models with (default: every registered format
    that is available here). ``workdir``: where exports and checkpoints go (default: a
    temporary directory, removed afterwards). ``echo`` sees each result as it is made.
    """
    plugins = get_plugins()
    records = resolve_target(target, plugins)
    chosen = _formats(plugins, formats)  # unknown names: refused before any check
    report = Report(target=target, plugins=tuple(r.name for r in records))
    run = _Run(report, echo)
    for record in records:
        if record.status == "empty" or (record.status == "loaded" and not record.provides()):
            why = record.warning or "it registers nothing"
            run.add(
                CheckResult(f"plugin {record.name}", "load", FAIL, f"registered nothing: {why}")
            )
        elif record.status != "loaded":
            why = record.error or record.status
            run.add(CheckResult(f"plugin {record.name}", "load", FAIL, why))
        else:
            kinds = ", ".join(f"{k} {', '.join(v)}" for k, v in record.provides().items())
            run.add(CheckResult(f"plugin {record.name}", "load", PASS, kinds))
    with _workdir(workdir) as root:
        for record in records:
            jobs: list[tuple[str, Callable[[], None]]] = [
                *(
                    (f"model {n}", partial(_check_model, run, plugins, n, chosen, root))
                    for n in record.models
                ),
                *(
                    (f"format {n}", partial(_check_format, run, plugins, n, root))
                    for n in record.formats
                ),
                *(
                    (f"runtime {n}", partial(_check_runtime, run, plugins, n, root))
                    for n in record.runtimes
                ),
                *(
                    (f"task {n}", partial(_check_task, run, plugins, n, record, root))
                    for n in record.tasks
                ),
                *(
                    (f"dataset {n}", partial(_check_dataset, run, plugins, n, record, root))
                    for n in record.datasets
                ),
            ]
            for subject, job in jobs:
                run.guard(subject, job)
    return report


@contextlib.contextmanager
def _workdir(path: Path | None) -> Iterator[Path]:
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    root = Path(tempfile.mkdtemp(prefix="zoo-check-"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _formats(plugins: ZooPlugins, names: Sequence[str] | None) -> list[str]:
    """The formats to export: those named, or every fp32 one (a reduced-precision variant is
    gated on held-out data and checked when named: ``--format onnx-int8``)."""
    registry = plugins.formats
    if names is None:
        return [f.name for f in registry.full_precision()]
    return [registry.get(n).name for n in names]  # UnknownFormatError names close ones


# -- models ---------------------------------------------------------------------------------


def _check_model(
    run: _Run, plugins: ZooPlugins, name: str, formats: Sequence[str], root: Path
) -> None:
    spec = plugins.models.get(name)
    subject = f"model {spec.name}"
    if run.check(subject, "spec", lambda: _spec_consistent(plugins, spec)).status == FAIL:
        return  # nothing else can be trusted
    if run.check(subject, "outputs", lambda: _outputs_match(spec)).status == FAIL:
        return
    trained: dict[str, Any] = {}
    run.check(subject, "train-step", lambda: _train_step(plugins, spec, None, root, trained))
    run.check(subject, "eval-deterministic", lambda: _eval_deterministic(spec, trained))
    run.check(subject, "checkpoint", lambda: _checkpoint_round_trip(spec, trained, root))
    _check_exports(run, plugins, spec, formats, root)


def _spec_consistent(plugins: ZooPlugins, spec: ModelSpec) -> str:
    problems = []
    if not spec.summary.strip():
        problems.append("summary is empty (zoo list shows it)")
    required = [k for k, v in spec.builder_parameters().items() if v is _EMPTY]
    if required:
        problems.append(
            f"builder option(s) {', '.join(required)} have no default (zoo builds models "
            "with their defaults)"
        )
    if spec.num_classes is not None and spec.outputs[0].shape[-1:] != (spec.num_classes,):
        problems.append(
            f"num_classes is {spec.num_classes} but output {spec.outputs[0].name!r} is "
            f"{list(spec.outputs[0].shape)}"
        )
    if "num_classes" in spec.builder_parameters() and spec.num_classes is None:
        problems.append("the builder takes num_classes but the spec's num_classes is None")
    if spec.task not in plugins.tasks:
        problems.append(f"task {spec.task!r} is not registered (`zoo tasks` lists the tasks)")
    unknown = [f for f in spec.capabilities.formats if f not in plugins.formats]
    if unknown:
        problems.append(f"capabilities name unregistered format(s) {', '.join(unknown)}")
    if problems:
        raise ZooError("; ".join(problems))
    return f"task {spec.task}, input {spec.input.describe()}"


_EMPTY = inspect.Parameter.empty


def _lengths(spec: ModelSpec) -> list[tuple[int, ...]]:
    """The example's per-sample shape, and where other axes are dynamic, a shorter and a
    longer one (as the parity gate does)."""
    axes = [a for a in spec.input.dynamic_axes if a > 0]
    shapes = [spec.input.shape]
    for factor in (0.5, 2.0):
        if axes:
            shape = list(spec.input.shape)
            for axis in axes:
                shape[axis - 1] = max(1, int(shape[axis - 1] * factor))
            shapes.append(tuple(shape))
    return shapes


def _outputs_match(spec: ModelSpec) -> str:
    model = spec.build()
    seen = []
    for shape in _lengths(spec):
        exact = shape == spec.input.shape
        for batch in (2, 3):
            x = replace(spec.input, shape=shape).example(batch, seed=batch)
            observed = check_outputs(spec, model, {}, x, exact=exact)
            seen.append("x".join(map(str, x.shape)))
    outs = ", ".join(f"{o.name} [B, {', '.join(map(str, o.shape))}] {o.dtype}" for o in observed)
    return f"{outs} at inputs {', '.join(seen)}"


def _task_for(plugins: ZooPlugins, spec: ModelSpec) -> Task:
    if spec.task not in plugins.tasks:
        raise ZooError(f"task {spec.task!r} is not registered")
    task = plugins.tasks.create(spec.task, {})
    try:
        task.check_model(spec)
    except UsageError as exc:
        raise Skipped(f"task {spec.task!r} does not train it: {exc}") from None
    return task


def _train_step(
    plugins: ZooPlugins,
    spec: ModelSpec,
    data: str | None,
    root: Path,
    out: dict[str, Any],
) -> str:
    """One optimizer step of ``spec``'s task on ``data`` (the task's default): the loss is
    finite, the weights change, the metrics hold the monitored one. ``out`` receives the
    trained model, its options and a batch."""
    task = _task_for(plugins, spec)
    data = data or task.default_data(spec)
    splits = load_dataset(data, spec.input, seed=0)  # the user's data directory, as zoo train
    args = task.model_args(spec, splits.info, {})
    torch.manual_seed(0)
    model = spec.build(**args)
    x, y = _first_batch(splits, TRAIN_STEP_SAMPLES)
    check_outputs(spec, model, args, x)
    run = TaskRun(
        spec=spec,
        info=splits.info,
        run_dir=root,
        device=torch.device("cpu"),
        seed=0,
        augment="none",
        sample=lambda dataset, n: x[:n],
    )
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    outputs = model(task.augment(x, run))
    loss = task.loss(outputs, x, y)
    if loss.dim() != 0 or not math.isfinite(float(loss.detach())):
        raise ZooError(f"task {task.name!r} gave loss {loss!r}: a finite scalar was expected")
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    if not changed:
        raise ZooError("a training step changed no weight: does forward use the parameters?")
    metrics = task.new_metrics(run)
    model.eval()
    with torch.no_grad():
        outputs = model(x)
        metrics.update(outputs, x, y, task.loss(outputs, x, y))
    values = metrics.compute()
    if task.monitor not in values:
        raise ZooError(
            f"task {task.name!r} monitors {task.monitor!r} but its metrics computed "
            f"{sorted(values)}"
        )
    out.update(model=model, args=args, x=x, optimizer=optimizer)
    return (
        f"{data}: one step on {len(x)} seeded random training samples: loss "
        f"{float(loss.detach()):.4g}, then {task.monitor} {values[task.monitor]!r:.8} on them "
        "(a check that it trains, not a score)"
    )


def _first_batch(splits: DataSplits, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded random batch of the training split: a dataset's stored order is often sorted
    by class (mnist5k's first samples are all zeros), and a batch of one class makes any
    classifier look perfect after one step."""
    for part, split in (("train", splits.train), ("val", splits.val), ("test", splits.test)):
        if len(split) == 0:  # type: ignore[arg-type]
            raise ZooError(f"dataset {splits.info.name!r}: its {part} split is empty")
    batches = Batches(splits.train, size, shuffle=True, seed=0, collate_fn=splits.collate_fn)
    x, y = next(iter(batches.epoch(0)))
    return x, y


def _eval_deterministic(spec: ModelSpec, trained: Mapping[str, Any]) -> str:
    model = trained.get("model") or spec.build()
    x = trained.get("x")
    if x is None:
        x = spec.example_input(3)
    model.eval()
    with torch.no_grad():
        first, second = run_eager(model, x), run_eager(model, x)
    for a, b in zip(first, second, strict=True):
        if not torch.equal(a, b):
            diff = (a.double() - b.double()).abs().max().item()
            raise ZooError(f"two eval passes on the same input differ (max {diff:.3g})")
    return f"2 passes on {'x'.join(map(str, x.shape))} are identical"


def _checkpoint_round_trip(spec: ModelSpec, trained: Mapping[str, Any], root: Path) -> str:
    model = trained.get("model") or spec.build()
    args = trained.get("args", {})
    x = trained.get("x")
    if x is None:
        x = spec.example_input(3)
    optimizer = trained.get("optimizer")
    state = {"optimizer": optimizer.state_dict() if optimizer is not None else {}}
    run_dir = root / f"checkpoint-{spec.name}"
    progress: dict[str, Any] = {
        "epoch": 0,
        "batch": 1,
        "step": 1,
        "best": None,
        "bad_epochs": 0,
        "history": [],
    }
    meta = {
        "model": spec.name,
        "model_args": args,
        "epoch": 0,
        "step": 1,
        "config": TrainConfig(model=spec.name, epochs=1).to_dict(),
        "progress": progress,
    }
    save_checkpoint(run_dir, model, state, meta)
    loaded = load_checkpoint(run_dir)
    fresh = spec.build(**args)
    loaded.load_into(fresh, spec.name)
    model.eval()
    fresh.eval()
    with torch.no_grad():
        for a, b in zip(run_eager(model, x), run_eager(fresh, x), strict=True):
            if not torch.equal(a, b):
                raise ZooError("the model loaded from its checkpoint computes other outputs")
    if optimizer is not None:
        optimizer.load_state_dict(loaded.state["optimizer"])
    return f"{len(loaded.weights)} tensors, outputs bit-exact after loading"


def _check_exports(
    run: _Run, plugins: ZooPlugins, spec: ModelSpec, formats: Sequence[str], root: Path
) -> None:
    subject = f"model {spec.name}"
    available = []
    for name in formats:
        why = plugins.formats.get(name).unavailable()
        if why:
            run.add(CheckResult(subject, f"export {name}", SKIP, f"not available here: {why}"))
        else:
            available.append(name)
    if not available:
        return
    # Reduced precision needs held-out data for its accuracy gate: the task's own dataset.
    reduced = any(plugins.formats.get(n).precision != "fp32" for n in available)
    eval_dataset = None
    if reduced and spec.task in plugins.tasks:
        eval_dataset = plugins.tasks.create(spec.task, {}).default_data(spec)
    started = time.perf_counter()
    try:
        report = export_model(
            spec.name, root / f"export-{spec.name}", formats=available, seed=0, overwrite=True,
            eval_dataset=eval_dataset,
        )  # fmt: skip
    except Exception as exc:
        why = user_message(exc, 500, first_line=False)
        for name in available:
            run.add(CheckResult(subject, f"export {name}", FAIL, why))
        return
    seconds = time.perf_counter() - started
    together = f"; {len(available)} formats exported together" if len(available) > 1 else ""
    outcomes = outcomes_of(report)
    for name, outcome in outcomes.items():
        record = report.manifest.formats[name]
        if outcome.works:
            worst = _worst(record.parity)
            detail = (
                "parity holds at "
                + ", ".join("x".join(map(str, c.input_shape)) for c in record.parity.checks)
                if record.parity is not None
                else "written"
            )
            run.add(
                CheckResult(subject, f"export {name}", PASS, detail + worst + together, seconds)
            )
        else:
            run.add(CheckResult(subject, f"export {name}", FAIL, outcome.reason, seconds))
    for name, outcome in outcomes.items():
        if outcome.works:
            _check_operators(run, subject, plugins.formats.get(name), report.out)
    works = [n for n, o in outcomes.items() if o.works]
    measured = Capabilities(
        formats=outcomes,
        dynamic_batch=bool(works),
        measured=f"zoo check-plugin (zoo {__version__}, torch {torch.__version__})",
    )
    run.report.capabilities[spec.name] = measured
    if works:
        run.add(
            CheckResult(
                subject,
                "dynamic-batch",
                PASS,
                f"graphs exported at batch 2 ran batches 1 and 3 in {', '.join(works)}",
            )
        )
    else:
        run.add(
            CheckResult(subject, "dynamic-batch", FAIL, "no export format took batches 1 and 3")
        )
    run.check(subject, "capabilities", lambda: _declared_agree(spec, outcomes))


def _check_operators(run: _Run, subject: str, fmt: Format, directory: Path) -> None:
    """The format's artifact against zoo's operator rule (``Format.check_program``): what
    ``zoo export --check`` and ``zoo bench --artifacts`` hold an artifact from elsewhere to."""
    try:
        why = fmt.check_program(directory)
    except Exception as exc:
        run.add(CheckResult(subject, f"operators {fmt.name}", FAIL, one_line(exc)))
        return
    if why is not None:
        run.add(CheckResult(subject, f"operators {fmt.name}", SKIP, why))
    else:
        run.add(
            CheckResult(
                subject, f"operators {fmt.name}", PASS, "only pure tensor operators (zoo's rule)"
            )
        )


def _worst(parity: Any) -> str:
    if parity is None:
        return ""
    diffs = [d.max_abs for c in parity.checks for d in c.outputs.values() if d.max_abs is not None]
    return f" (max abs diff {max(diffs):.2g})" if diffs else ""


def _declared_agree(spec: ModelSpec, measured: Mapping[str, CapabilityOutcome]) -> str:
    declared = spec.capabilities
    wrong = [
        f"{fmt}: the spec says {o.status}, measured {measured[fmt].status}"
        + (f" ({measured[fmt].reason})" if measured[fmt].reason else "")
        for fmt, o in declared.formats.items()
        if fmt in measured and o.works is not None and o.works != measured[fmt].works
    ]
    if wrong:
        raise ZooError(
            "declared capabilities disagree with the measured ones: "
            + "; ".join(wrong)
            + " (write the measured record with `zoo check-plugin --record FILE`)"
        )
    if not declared.formats:
        return "none declared: `zoo check-plugin --record FILE` writes the measured record"
    return "declared capabilities agree with the measured ones"


# -- formats, runtimes, tasks, datasets ------------------------------------------------------


def _check_format(run: _Run, plugins: ZooPlugins, name: str, root: Path) -> None:
    fmt = plugins.formats.get(name)
    subject = f"format {name}"
    why = fmt.unavailable()
    if why:
        run.add(CheckResult(subject, "available", FAIL, f"not available here: {why}"))
        return
    for model in REFERENCE_MODELS:
        run.check(subject, f"export {model}", partial(_format_round_trip, name, model, root))


def _format_round_trip(fmt: str, model: str, root: Path) -> str:
    out = root / f"format-{fmt}-{model}"
    plugins = get_plugins()
    if plugins.formats.get(fmt).precision != "fp32":
        return _variant_round_trip(fmt, model, out)
    report = export_model(model, out, formats=[fmt], seed=0, overwrite=True)
    record = report.manifest.formats[fmt]
    if not record.ok:
        raise ZooError(record.reason)
    results = check_export(out)
    if fmt not in results or not results[fmt].passed:
        why = results[fmt].why() if fmt in results else "not re-checked"
        raise ZooError(f"`zoo export --check` of the export fails: {why}")
    shapes = ", ".join("x".join(map(str, c.input_shape)) for c in results[fmt].checks)
    return f"parity holds at {shapes}, and again from the manifest"


def _variant_round_trip(fmt: str, model: str, out: Path) -> str:
    """A reduced-precision format on real data: exported (calibrated if it calibrates) and
    gated on the model's default dataset, then gated again from the manifest. The weights
    are fresh, so their accuracy means nothing and any drop is accepted: what is checked is
    that the artifact exports, loads and runs on real inputs, and that --check re-runs it."""
    plugins = get_plugins()
    spec = plugins.models.get(model)
    task = plugins.tasks.create(spec.task, {})
    dataset = task.default_data(spec)
    # Built as for training on it: the dataset's class count (and vocabulary).
    args = task.model_args(spec, load_dataset(dataset, spec.input).info, {})
    report = export_model(
        model, out, formats=[fmt], seed=0, overwrite=True, eval_dataset=dataset,
        max_drop=100.0, eval_samples=200, calibration_samples=64, model_args=args,
    )  # fmt: skip
    record = report.manifest.formats[fmt]
    if not record.ok or record.accuracy is None:
        raise ZooError(record.reason or "no accuracy gate ran")
    check_export(out)  # the files against the manifest
    again = check_accuracy(out).get(fmt)
    if again is None or not again.passed:
        raise ZooError(f"`zoo export --check` of the export fails: {again.why() if again else ''}")
    gate = record.accuracy
    return (
        f"{record.precision}, gated on {gate.samples} {dataset} samples: {gate.metric} "
        f"{gate.value:.3f} against eager's {gate.eager:.3f} (fresh weights: any drop "
        "accepted), and again from the manifest"
    )


def _check_runtime(run: _Run, plugins: ZooPlugins, name: str, root: Path) -> None:
    runtime = plugins.runtimes.get(name)
    subject = f"runtime {name}"
    if runtime.format is not None and runtime.format not in plugins.formats:
        run.add(
            CheckResult(
                subject,
                "format",
                FAIL,
                f"it loads format {runtime.format!r}, which no installed plugin registers",
            )
        )
        return
    for model in REFERENCE_MODELS:
        run.check(subject, f"run {model}", partial(_runtime_matches, name, model, root))


def _runtime_matches(name: str, model: str, root: Path) -> str:
    runtime = get_plugins().runtimes.get(name)
    fmt = runtime.format or "onnx"  # a runtime of the PyTorch module reads the saved weights
    out = root / f"runtime-{fmt}-{model}"
    if not (out / "manifest.json").exists():  # another runtime of the format made it already
        export_model(model, out, formats=[fmt], seed=0, overwrite=True)
    manifest = read_manifest(out)
    source = source_of(out, manifest)
    why = runtime.unavailable(source, "cpu")
    if why:
        raise Skipped(why)
    reference = source.module()
    inputs = inputs_of(manifest, (1, 3), seed=0)
    session = runtime.load(source, "cpu", 1)
    try:
        for batch, x in inputs.items():
            want = [t.numpy() for t in run_eager(reference, x)]
            got = session.outputs(x)
            if len(got) != len(want):
                raise ZooError(f"batch {batch}: {len(got)} outputs, eager gives {len(want)}")
            for g, w in zip(got, want, strict=True):
                if g.shape != w.shape:
                    raise ZooError(f"batch {batch}: output shape {g.shape}, eager {w.shape}")
                if not np.allclose(g, w, atol=DEFAULT_ATOL, rtol=DEFAULT_RTOL):
                    diff = float(np.abs(g.astype(np.float64) - w).max())
                    raise ZooError(f"batch {batch}: differs from eager by {diff:.3g}")
    finally:
        session.close()
    shapes = ", ".join("x".join(map(str, x.shape)) for x in inputs.values())
    return f"matches eager at {shapes}"


def _check_task(
    run: _Run, plugins: ZooPlugins, name: str, record: PluginRecord, root: Path
) -> None:
    subject = f"task {name}"
    if run.check(subject, "options", lambda: _task_defaults(plugins, name)).status == FAIL:
        return
    model = _model_for_task(plugins, name, record)
    why_none = "no registered model names it and no built-in model fits it"
    _train_step_check(run, plugins, subject, model, None, root, why_none)


def _train_step_check(
    run: _Run,
    plugins: ZooPlugins,
    subject: str,
    model: ModelSpec | None,
    data: str | None,
    root: Path,
    why_none: str,
) -> None:
    """The ``train-step`` check of a task or dataset: one step of ``model`` on ``data`` (its
    task's default for None), or skipped with ``why_none`` when no model fits."""
    if model is None:
        run.add(CheckResult(subject, "train-step", SKIP, why_none))
        return
    step = partial(_train_step, plugins, model, data, root, {})
    run.check(subject, f"train-step {model.name}", step)


def _task_defaults(plugins: ZooPlugins, name: str) -> str:
    task = plugins.tasks.create(name, {})  # every option needs a default
    return (
        f"monitors {task.monitor} ({'higher' if task.metrics[task.monitor] else 'lower'} is better)"
    )


def _model_for_task(plugins: ZooPlugins, name: str, record: PluginRecord) -> ModelSpec | None:
    """A model to train for task ``name``: a built-in one that names it and that it accepts,
    else any that names it (the plugin's own first)."""
    task = plugins.tasks.create(name, {})
    for model in REFERENCE_MODELS:
        if model in plugins.models:
            spec = plugins.models.get(model)
            try:
                task.check_model(spec)
            except UsageError:
                continue
            if spec.task == name:
                return spec
    naming = [s for s in plugins.models if s.task == name]
    naming.sort(key=lambda s: s.name not in record.models)
    return naming[0] if naming else None


def _check_dataset(
    run: _Run, plugins: ZooPlugins, name: str, record: PluginRecord, root: Path
) -> None:
    subject = f"dataset {name}"
    entry = _dataset_entry(plugins, name)
    if entry.argument:
        run.add(
            CheckResult(
                subject,
                "train-step",
                SKIP,
                f"it takes an argument ({entry.display_name}): check it with `zoo train "
                f"MODEL --data {entry.display_name} --epochs 1`",
            )
        )
        return
    model = _model_for_dataset(plugins, name, record)
    why_none = (
        "no registered model fits it (none whose task trains on it by default, and no "
        "built-in model of its kind)"
    )
    _train_step_check(run, plugins, subject, model, name, root, why_none)


#: Built-in models a dataset of each kind is tried with, the first that fits its channels.
_BY_KIND: Final = {"image": ("lenet", "resnet18"), "tokens": ("lstm",)}


def _model_for_dataset(plugins: ZooPlugins, name: str, record: PluginRecord) -> ModelSpec | None:
    """A model to train on dataset ``name``: one whose task trains on it by default (the
    plugin's own first), else a built-in model its kind and channels fit."""
    order = {n: i for i, n in enumerate(REFERENCE_MODELS)}
    candidates = sorted(
        plugins.models,
        key=lambda s: (s.name not in record.models, order.get(s.name, len(order)), s.name),
    )
    for spec in candidates:
        if spec.task in plugins.tasks:
            with contextlib.suppress(ZooError):
                task = plugins.tasks.create(spec.task, {})
                task.check_model(spec)
                if task.default_data(spec) == name:
                    return spec
    entry = _dataset_entry(plugins, name)
    for model in _BY_KIND.get(entry.kind or "", ()):
        if model in plugins.models:
            spec = plugins.models.get(model)
            if entry.channels in (None, spec.input.shape[0]):
                return spec
    return None


def _dataset_entry(plugins: ZooPlugins, name: str) -> DatasetEntry:
    """The registered entry called ``name`` (without its ``:ARGUMENT``)."""
    return next(e for e in plugins.datasets if e.name == name)
