"""``zoo bench``: artifacts, one worker process per (model, runtime, device), statistics.

Every runtime is timed alone in a fresh process (``zoo.bench.worker``) with the thread count
set before torch starts; with several rounds the runtime order alternates, a row's statistics
are those of its fastest round (by p50), and the spread of the per-round medians is reported.
Runtimes that cannot run here become skipped rows with the reason; a worker that fails or
crashes becomes a failed row; neither stops the run.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import torch

from zoo._cpu import cpu_description
from zoo._pluginmanager import get_plugins
from zoo._process import ChildFailed, run_json_child
from zoo._version import __version__
from zoo.bench.results import BenchRun, Latency, Row
from zoo.bench.timing import TimingPolicy, harness_overhead_ns
from zoo.bench.worker import CeilingJob, CeilingResult, Job, JobResult
from zoo.card import model_card
from zoo.errors import UsageError
from zoo.export.exporter import export_model
from zoo.export.manifest import (
    ArtifactError,
    Manifest,
    one_line,
    read_manifest,
    verify_export,
    verify_files,
)
from zoo.formats import check_precisions
from zoo.plugins.onnx import check_external_data
from zoo.runtimes import Source, cuda_present

__all__ = [
    "DEFAULT_BATCHES",
    "BenchSettings",
    "formats_for",
    "physical_cores",
    "run_bench",
    "spawn_worker",
]

DEFAULT_BATCHES = (1, 8, 32)


def formats_for(runtimes: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The export formats these runtimes load (each runtime's ``format``), in order; the
    default formats' first when none needs one (eager and torch.compile read the weights
    beside it)."""
    plugins = get_plugins()
    formats = (plugins.runtimes.get(r).format for r in runtimes)
    return tuple(dict.fromkeys(f for f in formats if f is not None)) or (
        plugins.formats.defaults()[:1] or tuple(plugins.formats.names()[:1])
    )


def physical_cores() -> int:
    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


@dataclass
class BenchSettings:
    models: list[str]
    #: None: every registered runtime.
    runtimes: tuple[str, ...] | None = None
    devices: tuple[str, ...] | None = None  # None: cpu, and cuda where present
    batches: tuple[int, ...] = DEFAULT_BATCHES
    threads: int | None = None  # None: the physical cores
    artifacts: Path | None = None
    checkpoint: Path | None = None
    raw: bool = True
    rounds: int = 1
    seed: int = 0
    policy: TimingPolicy = field(default_factory=TimingPolicy)
    #: A worker running longer than this is killed and its row fails.
    timeout_s: float = 1800
    #: Each runtime also runs its format's variants in these precisions (``int8``: the
    #: ``onnx-int8`` artifact in ONNX Runtime), each a row of its own. Reduced precision
    #: needs held-out data for its accuracy gate: ``checkpoint`` or ``eval_dataset``.
    precisions: tuple[str, ...] = ("fp32",)
    eval_dataset: str | None = None


def _validate(settings: BenchSettings) -> tuple[str, ...]:
    """The runtimes to time; UsageError for anything the settings get wrong."""
    registry = get_plugins().runtimes
    runtimes = (
        tuple(settings.runtimes) if settings.runtimes is not None else tuple(registry.names())
    )
    for name in runtimes:
        registry.get(name)  # unknown names: an error with suggestions
    if not runtimes:
        raise UsageError("--runtime: give at least one runtime")
    bad = [b for b in settings.batches if b < 1]
    if bad or not settings.batches:
        raise UsageError(f"--batch: batch sizes must be positive integers, got {bad or 'none'}")
    if settings.threads is not None and settings.threads < 1:
        raise UsageError(f"--threads must be at least 1, got {settings.threads}")
    if settings.rounds < 1:
        raise UsageError(f"--rounds must be at least 1, got {settings.rounds}")
    check_precisions(settings.precisions)
    for device in settings.devices or ():
        if device not in ("cpu", "cuda"):
            raise UsageError(f"--device {device!r}: choose cpu or cuda")
        if device == "cuda" and not cuda_present():
            raise UsageError(
                "--device cuda: no CUDA device here (torch sees none); use --device cpu"
            )
    return runtimes


def _resolve_models(patterns: list[str]) -> list[str]:
    registry = get_plugins().models
    names: list[str] = []
    for pattern in patterns:
        found = registry.list(pattern)
        if not found:
            if any(ch in pattern for ch in "*?["):
                raise UsageError(f"no model matches {pattern!r}")
            registry.get(pattern)  # raises UnknownModelError with close matches
        names += [n for n in found if n not in names]
    return names


def cache_dir() -> Path:
    root = os.environ.get("ZOO_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "zoo"
    )
    return Path(root)


def _export_dir(model: str, settings: BenchSettings, formats: tuple[str, ...]) -> Path:
    """The export to time: ``--artifacts`` (checked against its manifest), else a cached
    export of fresh weights (seeded), else a new one."""
    if settings.artifacts is not None:
        base = settings.artifacts
        for directory in (base, base / model):
            # lexists: a manifest that is a link or a FIFO is refused by read_manifest, by name
            if os.path.lexists(directory / "manifest.json"):
                manifest = read_manifest(directory)
                if manifest.model != model:
                    continue
                verify_export(directory, manifest)
                for onnx in manifest.artifacts().values():
                    if not onnx.endswith(".onnx"):  # model.onnx, model.int8.onnx, a plugin's
                        continue
                    try:  # here, not in the worker: its load is timed
                        check_external_data(directory / onnx)
                    except ValueError as exc:
                        raise ArtifactError(f"{directory / onnx}: {one_line(exc)}") from None
                    except Exception:  # a file that does not parse: its rows say so
                        pass
                return directory
        raise UsageError(
            f"--artifacts {base}: no export of {model!r} there (expected {base}/manifest.json "
            f"or {base}/{model}/manifest.json, as `zoo export {model} --out DIR` writes)"
        )
    key = json.dumps(
        [
            model,
            settings.raw,
            str(settings.checkpoint),
            settings.seed,
            str(torch.__version__),
            __version__,
            settings.eval_dataset,
        ],
        sort_keys=True,
    )
    if settings.checkpoint is not None:
        key += str(os.stat(settings.checkpoint).st_mtime_ns)
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    out = cache_dir() / "bench-exports" / f"{model}-{digest}"
    have: set[str] = set()
    if (out / "manifest.json").is_file():
        try:
            cached: Manifest = read_manifest(out)
        except ArtifactError:  # an older zoo's export, or a damaged one: export again
            pass
        else:
            if not verify_files(out, cached):
                have = set(cached.artifacts())
                if set(formats) <= set(cached.formats):
                    return out
    wanted = tuple(dict.fromkeys([*sorted(have), *formats]))
    export_model(
        model,
        out,
        formats=wanted,
        checkpoint=settings.checkpoint,
        raw=settings.raw,
        seed=None if settings.checkpoint is not None else settings.seed,
        overwrite=True,  # zoo's own cache: an export missing formats is made again
        eval_dataset=settings.eval_dataset,
    )
    return out


def variants_for(formats: tuple[str, ...], precisions: tuple[str, ...]) -> tuple[str, ...]:
    """``formats`` and their registered variants in ``precisions`` (where they have one)."""
    registry = get_plugins().formats
    found = [
        variant.name
        for fmt in formats
        for precision in precisions
        if precision != "fp32" and (variant := registry.of_precision(fmt, precision)) is not None
    ]
    for precision in precisions:
        if precision != "fp32" and not any(registry.get(v).precision == precision for v in found):
            raise UsageError(
                f"--precision {precision}: none of the runtimes' formats "
                f"({', '.join(formats)}) has a variant in {precision} (`zoo formats`)"
            )
    return tuple(dict.fromkeys([*formats, *found]))


def spawn_worker(
    payload: dict[str, Any], threads: int, timeout: float, module: str = "zoo.bench.worker"
) -> dict[str, Any]:
    """Run the worker ``python -m module`` on ``payload`` (JSON on its stdin) with its thread
    count set before torch starts; its result as JSON, or a failure saying how it died."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    command = [sys.executable, "-m", module]
    try:
        result = run_json_child(command, input=json.dumps(payload), env=env, timeout=timeout)
    except ChildFailed as exc:
        return {"status": "failed", "reason": str(exc)}
    return result if isinstance(result, dict) else {"status": "failed", "reason": "no result"}


def _spawn(job: Job | CeilingJob, timeout: float) -> dict[str, Any]:
    return spawn_worker(job.to_json(), job.threads, timeout)


def environment(threads: int, devices: tuple[str, ...]) -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu, flags = cpu_description()
    env: dict[str, Any] = {
        "cpu": cpu,
        "cpu_flags": flags,
        "physical_cores": psutil.cpu_count(logical=False),
        "logical_cores": psutil.cpu_count(logical=True),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "threads": threads,
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    try:
        import onnxruntime  # here: an optional library, recorded where installed

        env["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        env["onnxruntime"] = None
    env["zoo"] = __version__
    # What changes the memory allocator of every worker (they inherit this environment):
    # large per-call allocations can cost more in page faults than in compute.
    env["allocator_env"] = {
        k: v
        for k, v in sorted(os.environ.items())
        if k.startswith("MALLOC_") or k in ("LD_PRELOAD", "GLIBC_TUNABLES")
    }
    if "cuda" in devices:
        env["gpu"] = torch.cuda.get_device_name(0)
        env["cuda"] = torch.version.cuda
        env["gpu_driver"] = _driver_version()
    return env


def _driver_version() -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout else None


def _flops(manifest: Manifest) -> int:
    spec = get_plugins().models.get(manifest.model)
    card = model_card(spec, **manifest.model_args)
    return int(card["measured"]["flops"])


def run_bench(settings: BenchSettings, echo: Callable[[str], None] = lambda _: None) -> BenchRun:
    """Benchmark ``settings.models`` (names or patterns); see the module docstring."""
    runtimes = _validate(settings)
    models = _resolve_models(settings.models)
    devices = settings.devices or (("cpu", "cuda") if cuda_present() else ("cpu",))
    threads = settings.threads or physical_cores()
    plugins = get_plugins()
    registry = plugins.runtimes
    run = BenchRun(
        environment=environment(threads, devices),
        settings={
            **{k: v for k, v in asdict(settings).items() if k not in ("policy",)},
            "models": models,
            "runtimes": list(runtimes),
            "devices": list(devices),
            "threads": threads,
            "policy": asdict(settings.policy),
            "artifacts": str(settings.artifacts) if settings.artifacts else None,
            "checkpoint": str(settings.checkpoint) if settings.checkpoint else None,
        },
        ceiling_gflops={},
        flops_per_sample={},
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        reference=registry.reference(),
        peers={r: p for r in runtimes if (p := registry.get(r).peer) is not None},
    )
    run.harness_overhead_ns = harness_overhead_ns()
    formats = formats_for(runtimes)
    if settings.artifacts is None:
        formats = variants_for(formats, settings.precisions)
    # Every export is found (and checked) or made before anything is measured: a bad
    # --artifacts or --checkpoint fails now, not after the ceiling.
    exports = {model: _export_dir(model, settings, formats) for model in models}
    for device in devices:
        for precision in dict.fromkeys(("fp32", *settings.precisions)):  # fp32 rows always run
            echo(f"measuring the {precision} matmul ceiling on {device} ({threads} threads)")
            job = CeilingJob(device, threads, precision)
            ceiling = CeilingResult.from_json(_spawn(job, 300))
            if ceiling.status != "ok":
                echo(f"the {precision} ceiling on {device} could not be measured: {ceiling.reason}")
            elif precision == "fp32":
                run.ceiling_gflops[device] = ceiling.gflops
                run.ceiling_detail[device] = {
                    "source": ceiling.source,
                    "measured": ceiling.measured,
                }
            else:
                run.precision_ceilings.setdefault(device, {})[precision] = ceiling.gflops
                run.ceiling_detail.setdefault(f"{device} {precision}", {}).update(
                    source=ceiling.source, measured=ceiling.measured
                )
    for model, artifacts in exports.items():
        manifest = read_manifest(artifacts)
        run.flops_per_sample[model] = _flops(manifest)
        # Enough of a Source to ask each runtime whether it can run here (no module needed).
        source = Source(
            model,
            artifacts,
            artifacts={fmt: artifacts / file for fmt, file in manifest.artifacts().items()},
            failed=manifest.failures(),
        )
        have = {plugins.formats.get(n).precision for n in manifest.formats if n in plugins.formats}
        for precision in settings.precisions:
            if precision not in have:
                echo(f"note: {artifacts} holds no {precision} artifact: no {precision} rows")
        for device in devices:
            _bench_model_device(run, settings, runtimes, device, source, manifest, threads, echo)
    run.finish()
    return run


@dataclass(frozen=True, eq=False)  # one per worker series: identity is its key
class _Entry:
    """What one worker per round times: a runtime on its format's artifact, or (``variant``)
    on a reduced-precision variant of that format; its rows carry the precision and the
    accuracy the artifact scored at export."""

    runtime: str
    variant: str | None = None
    precision: str = "fp32"
    accuracy: dict[str, Any] | None = None
    #: Why it cannot run here (its rows are skipped), or None.
    why: str | None = None

    @property
    def label(self) -> str:
        return self.runtime if self.variant is None else f"{self.runtime} {self.precision}"


def _plan(
    settings: BenchSettings,
    runtimes: tuple[str, ...],
    device: str,
    source: Source,
    manifest: Manifest,
) -> list[_Entry]:
    """Each runtime, then each runtime on each variant of its format that the export holds
    in ``settings.precisions``."""
    plugins = get_plugins()

    def accuracy(fmt: str | None) -> dict[str, Any] | None:
        record = manifest.formats.get(fmt) if fmt is not None else None
        return record.accuracy.to_json() if record and record.accuracy else None

    entries = []
    for name in runtimes:
        runtime = plugins.runtimes.get(name)
        why = runtime.unavailable(source, device)
        entries.append(_Entry(name, accuracy=accuracy(runtime.format), why=why))
    for name in runtimes:
        runtime = plugins.runtimes.get(name)
        for variant, record in manifest.formats.items():
            fmt = plugins.formats.get(variant) if variant in plugins.formats else None
            if fmt is None or fmt.variant_of is None or fmt.variant_of != runtime.format:
                continue
            if fmt.precision not in settings.precisions:
                continue
            stand_in = Source(
                source.model, source.directory,
                artifacts={runtime.format: source.directory / record.artifact}
                if record.artifact else {},
                failed={runtime.format: record.reason} if not record.ok else {},
            )  # fmt: skip
            why = runtime.unavailable(stand_in, device) or (
                f"{fmt.name} runs on {', '.join(fmt.devices)}"
                if device not in fmt.devices
                else None
            )
            entries.append(_Entry(name, variant, fmt.precision, accuracy(variant), why))
    return entries


def _bench_model_device(
    run: BenchRun,
    settings: BenchSettings,
    runtimes: tuple[str, ...],
    device: str,
    source: Source,
    manifest: Manifest,
    threads: int,
    echo: Callable[[str], None],
) -> None:
    model = source.model
    entries = _plan(settings, runtimes, device, source, manifest)
    active = [e for e in entries if e.why is None]
    results: dict[_Entry, list[JobResult]] = {e: [] for e in active}
    failed: dict[_Entry, str] = {}
    for round_ in range(settings.rounds):
        order = active if round_ % 2 == 0 else list(reversed(active))
        for entry in order:
            if entry in failed:
                continue
            echo(f"{model} on {device}: {entry.label} (round {round_ + 1}/{settings.rounds})")
            job = Job(
                runtime=entry.runtime,
                device=device,
                threads=threads,
                artifacts=str(source.directory),
                batches=tuple(settings.batches),
                seed=settings.seed,
                policy=settings.policy,
                variant=entry.variant,
            )
            result = JobResult.from_json(_spawn(job, settings.timeout_s))
            if result.status != "ok":
                failed[entry] = result.reason
                continue
            results[entry].append(result)
    for entry in entries:
        for batch in settings.batches:
            if entry.why is not None or entry in failed:
                status, reason = ("skipped", entry.why) if entry.why else ("failed", failed[entry])
                row = Row(model, entry.runtime, device, batch, status, reason=reason or "")
            else:
                row = _row(model, entry.runtime, device, batch, results[entry])
            row.precision, row.accuracy = entry.precision, entry.accuracy
            run.rows.append(row)


def _row(model: str, runtime: str, device: str, batch: int, rounds: list[JobResult]) -> Row:
    """One row from every round of a runtime at one batch size."""
    timed = [r.batches[batch] for r in rounds]
    medians = [float(np.median(t.times_ns)) / 1e6 for t in timed]
    spread = None
    if len(rounds) > 1:
        spread = (max(medians) - min(medians)) / float(np.median(medians))
    best = int(np.argmin(medians))
    return Row(
        model,
        runtime,
        device,
        batch,
        "ok",
        # The least disturbed round: interference from outside (measured here: whole workers
        # 2.3x slower for tens of seconds, ASLR or not) only ever slows a process down, so the
        # fastest round is the runtime's own cost, as timeit takes the best of its repeats.
        latency_ms=Latency.from_ns(timed[best].times_ns),
        iterations=len(timed[best].times_ns),
        cold_start_ms=float(np.median([r.cold_start_ms for r in rounds])),
        peak_rss_mb=max(r.peak_rss_mb for r in rounds),
        rss_growth_mb=max(r.rss_growth_mb for r in rounds),
        cuda_max_allocated_mb=timed[-1].cuda_max_allocated_mb,
        # Over every round: a runtime whose allocator churns in some processes and not in
        # others is flagged even when its fastest round was lucky.
        faults_per_call=float(np.median([t.faults_per_call for t in timed])),
        round_spread=spread,
        round_p50_ms=medians,
    )
