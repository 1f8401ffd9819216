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
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import torch

from zoo._cpu import cpu_description
from zoo._pluginmanager import get_plugins
from zoo._process import ChildFailed, run_json_child
from zoo._version import __version__
from zoo.bench.load import BUSY_SHARE, Others, OthersShare, wait_for_quiet
from zoo.bench.results import (
    OFFLINE,
    SCENARIOS,
    SERVER,
    SINGLE_STREAM,
    BenchRun,
    Latency,
    Row,
    Stability,
)
from zoo.bench.scenarios import ServerPolicy
from zoo.bench.timing import TimingPolicy, harness_overhead_ns
from zoo.bench.worker import CeilingJob, CeilingResult, Job, JobResult
from zoo.card import model_card
from zoo.errors import UsageError, one_line
from zoo.export.exporter import check_weights, export_model
from zoo.export.manifest import (
    ArtifactError,
    Manifest,
    read_manifest,
    verify_export,
    verify_files,
)
from zoo.formats import check_precisions
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
#: Sessions one offline or server worker loads at most.
MAX_SESSIONS = 64


#: Bounds no benchmark needs to reach: past them a run takes days (``--warmup 10^26``).
MAX_WARMUP = 100_000
MAX_MIN_TIME_S = 3600.0
MAX_SERVER_REQUESTS = 1_000_000


def formats_for(runtimes: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The export formats these runtimes load (each runtime's ``format``) that can be written
    here, in order (``aoti-cuda`` compiles on a GPU only: without one its runtime's row says
    why it is skipped); the default formats' first when none needs one (eager and
    torch.compile read the weights beside it)."""
    plugins = get_plugins()
    formats = (plugins.runtimes.get(r).format for r in runtimes)
    here = (f for f in formats if f is not None and plugins.formats.get(f).unavailable() is None)
    return tuple(dict.fromkeys(here)) or (
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
    #: Rounds every entry runs at least; more run (each in fresh workers) until the best two
    #: quiet rounds agree within ``stability``, up to ``max_rounds`` and while the run is
    #: under ``max_time_s`` (docs/benchmarks.md: Stability).
    rounds: int = 2
    max_rounds: int = 5
    stability: float = 0.05
    max_time_s: float = 600.0
    #: A row whose p90 is more than this many times its p50 is unstable.
    tail_bound: float = 2.0
    #: Before each worker, wait up to this long for other processes to leave the CPUs.
    wait_quiet_s: float = 0.0
    seed: int = 0
    policy: TimingPolicy = field(default_factory=TimingPolicy)
    #: A worker running longer than this is killed and its row fails.
    timeout_s: float = 1800
    #: Each runtime also runs its format's variants in these precisions (``int8``: the
    #: ``onnx-int8`` artifact in ONNX Runtime), each a row of its own. Reduced precision
    #: needs held-out data for its accuracy gate: ``checkpoint`` or ``eval_dataset``.
    precisions: tuple[str, ...] = ("fp32",)
    eval_dataset: str | None = None
    #: ``single-stream``, ``offline``, ``server`` (``zoo.bench.scenarios``).
    scenarios: tuple[str, ...] = (SINGLE_STREAM,)
    #: (sessions, threads per session) for offline and server; None: every split of the
    #: run's threads.
    splits: tuple[tuple[int, int], ...] | None = None
    #: server: the p99 bound of the search, in milliseconds, and how each rate is measured.
    latency_bound_ms: float = 100.0
    server: ServerPolicy = field(default_factory=ServerPolicy)
    #: On CUDA: let fp32 convolutions and matrix products run in TF32 (recorded per row).
    tf32: bool = False


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
    if settings.max_rounds < settings.rounds:
        raise UsageError(
            f"--max-rounds ({settings.max_rounds}) must be at least --rounds ({settings.rounds})"
        )
    for option, value in (
        ("--stability", settings.stability),
        ("--max-time", settings.max_time_s),
        ("--wait-quiet", settings.wait_quiet_s),
    ):
        if not (math.isfinite(value) and value >= 0):
            raise UsageError(f"{option} must be a finite number >= 0, got {value}")
    policy = settings.policy
    if policy.warmup_iters > MAX_WARMUP:
        raise UsageError(
            f"--warmup {policy.warmup_iters}: at most {MAX_WARMUP:,} untimed calls (the warm-up "
            "also runs at least 0.2 s)"
        )
    if policy.min_time_s > MAX_MIN_TIME_S:
        raise UsageError(
            f"--min-time {policy.min_time_s:g}: at most {MAX_MIN_TIME_S:g} seconds of timed "
            "calls per batch size (--max-time bounds the rounds, not one round)"
        )
    if settings.server.min_requests > MAX_SERVER_REQUESTS:
        raise UsageError(
            f"--server-requests {settings.server.min_requests}: at most "
            f"{MAX_SERVER_REQUESTS:,} requests per rate"
        )
    if not (math.isfinite(settings.tail_bound) and settings.tail_bound >= 1):
        raise UsageError(f"--tail-bound must be a finite ratio >= 1, got {settings.tail_bound}")
    if not (math.isfinite(settings.latency_bound_ms) and settings.latency_bound_ms > 0):
        raise UsageError(
            f"--latency-bound must be a positive number of milliseconds, got "
            f"{settings.latency_bound_ms}"
        )
    for scenario in settings.scenarios:
        if scenario not in SCENARIOS:
            raise UsageError(f"--scenario {scenario!r}: choose from {', '.join(SCENARIOS)}")
    if not settings.scenarios:
        raise UsageError(f"--scenario: give at least one of {', '.join(SCENARIOS)}")
    for sessions, per in settings.splits or ():
        if sessions < 1 or per < 1:
            raise UsageError(f"--splits {sessions}x{per}: sessions and threads must be at least 1")
        if sessions > MAX_SESSIONS:
            raise UsageError(
                f"--splits {sessions}x{per}: at most {MAX_SESSIONS} sessions (each loads the "
                "model again in one process)"
            )
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
                check_weights(directory, manifest)  # eager and compile rebuild the model from them
                registry = get_plugins().formats
                for fmt, artifact in manifest.artifacts().items():
                    if fmt not in registry:
                        continue
                    try:  # here, not in the worker: its load is timed
                        registry.get(fmt).check_artifact(directory)
                    except ValueError as exc:
                        raise ArtifactError(f"{directory / artifact}: {one_line(exc)}") from None
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
    deadline = time.monotonic() + settings.max_time_s
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
            "server": asdict(settings.server),
            "scenarios": list(settings.scenarios),
            "splits": [list(s) for s in settings.splits] if settings.splits else None,
            "artifacts": str(settings.artifacts) if settings.artifacts else None,
            "checkpoint": str(settings.checkpoint) if settings.checkpoint else None,
        },
        ceiling_gflops={},
        flops_per_sample={},
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        reference=registry.reference(),
        peers={r: p for r in runtimes if (p := registry.get(r).peer) is not None},
        peer_notes={r: n for r in runtimes if (n := registry.get(r).peer_note)},
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
            _bench_model_device(
                run, settings, runtimes, device, source, manifest, threads, echo, deadline
            )
    run.finish()
    return run


@dataclass(frozen=True, eq=False)  # one per worker series: identity is its key
class _Entry:
    """What one worker per round runs: a runtime on its format's artifact, or (``variant``)
    on a reduced-precision variant of that format, in one scenario with one thread split;
    its rows carry the precision and the accuracy the artifact scored at export."""

    runtime: str
    variant: str | None = None
    precision: str = "fp32"
    accuracy: dict[str, Any] | None = None
    #: Why it cannot run here (its rows are skipped), or None.
    why: str | None = None
    scenario: str = SINGLE_STREAM
    sessions: int = 1
    threads: int = 1

    @property
    def label(self) -> str:
        name = self.runtime if self.variant is None else f"{self.runtime} {self.precision}"
        if self.scenario == SINGLE_STREAM:
            return name
        return f"{name} {self.scenario} {self.sessions}x{self.threads}"

    @property
    def series(self) -> tuple[str, str | None, str]:
        """The entries one row is made from (the thread splits of a runtime in a scenario)."""
        return (self.runtime, self.variant, self.scenario)


@dataclass
class _Round:
    """One worker of an entry: what it measured and what the machine did meanwhile."""

    result: JobResult
    others: OthersShare
    load_avg: float

    @property
    def quiet(self) -> bool:
        return self.others.share <= BUSY_SHARE


def _plan(
    settings: BenchSettings,
    runtimes: tuple[str, ...],
    device: str,
    source: Source,
    manifest: Manifest,
) -> list[_Entry]:
    """Each runtime, then each runtime on each variant of its format that the export holds
    in ``settings.precisions``; in every scenario, offline and server once per thread split."""
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
    threads = settings.threads or physical_cores()
    planned = []
    for scenario in settings.scenarios:
        for entry in entries:
            if scenario == SINGLE_STREAM:
                planned.append(replace(entry, threads=threads))
                continue
            for sessions, per in thread_splits(settings, threads):
                planned.append(replace(entry, scenario=scenario, sessions=sessions, threads=per))
    return planned


def thread_splits(settings: BenchSettings, threads: int) -> tuple[tuple[int, int], ...]:
    """``--splits``, or every (sessions, threads per session) whose product is ``threads``:
    on 2 cores, 1 session of 2 threads and 2 sessions of 1."""
    if settings.splits:
        return settings.splits
    return tuple((n, threads // n) for n in range(1, threads + 1) if threads % n == 0)


def _job(entry: _Entry, settings: BenchSettings, device: str, source: Source) -> Job:
    return Job(
        runtime=entry.runtime,
        device=device,
        threads=entry.threads,
        artifacts=str(source.directory),
        batches=(1,) if entry.scenario == SERVER else tuple(settings.batches),
        seed=settings.seed,
        policy=settings.policy,
        variant=entry.variant,
        scenario=entry.scenario,
        sessions=entry.sessions,
        latency_bound_ms=settings.latency_bound_ms,
        server=settings.server,
        tf32=settings.tf32,
    )


def _figures(entry: _Entry, result: JobResult) -> dict[str, float]:
    """What the rounds of an entry must agree on, each lower-is-better: the p50 per batch
    (single-stream), seconds per sample per batch (offline), per max QPS (server)."""
    if entry.scenario == SINGLE_STREAM:
        return {str(b): float(np.median(t.times_ns)) for b, t in result.batches.items()}
    if entry.scenario == OFFLINE:
        return {b: 1.0 / max(p["samples_per_s"], 1e-12) for b, p in result.scenario.items()}
    best = result.scenario.get("best")
    return {"max": 1.0 / best["achieved_qps"] if best else math.inf}


def _agreement(rounds: list[_Round], entry: _Entry, key: str) -> float | None:
    """How far apart the best two quiet rounds are on ``key``, relative to the best."""
    values = sorted(_figures(entry, r.result)[key] for r in rounds if r.quiet)
    if len(values) < 2 or not math.isfinite(values[1]):
        return None
    return (values[1] - values[0]) / values[0] if values[0] > 0 else math.inf


def _wanted_rounds(entry: _Entry, settings: BenchSettings) -> int:
    """Quiet rounds that must agree: one for the server scenario (each worker measures its
    best rate twice) and with ``--max-rounds 1``, else two."""
    return 1 if entry.scenario == SERVER or settings.max_rounds == 1 else 2


def _settled(entry: _Entry, rounds: list[_Round], settings: BenchSettings) -> bool:
    """Enough quiet rounds, and every figure of the best two within ``--stability``."""
    quiet = [r for r in rounds if r.quiet]
    least = 1 if entry.scenario == SERVER else settings.rounds
    if len(rounds) < least or len(quiet) < _wanted_rounds(entry, settings):
        return False
    if entry.scenario == SERVER:
        return any(not r.result.scenario.get("note") for r in quiet)
    if _wanted_rounds(entry, settings) == 1:
        return True
    keys = _figures(entry, rounds[0].result)
    return all(
        (gap := _agreement(rounds, entry, key)) is not None and gap <= settings.stability
        for key in keys
    )


def _bench_model_device(
    run: BenchRun,
    settings: BenchSettings,
    runtimes: tuple[str, ...],
    device: str,
    source: Source,
    manifest: Manifest,
    threads: int,
    echo: Callable[[str], None],
    deadline: float,
) -> None:
    """Rounds of workers until each entry settles (``_settled``), ``--max-rounds`` or
    ``--max-time``; then the rows, with their stability."""
    model = source.model
    entries = _plan(settings, runtimes, device, source, manifest)
    active = [e for e in entries if e.why is None]
    rounds: dict[_Entry, list[_Round]] = {e: [] for e in active}
    failed: dict[_Entry, str] = {}
    stopped_by_time = False
    for round_ in range(settings.max_rounds):
        todo = [e for e in active if e not in failed and not _settled(e, rounds[e], settings)]
        if not todo:
            break
        if (
            round_ >= 1
            and time.monotonic() > deadline
            and not any(
                len(rounds[e]) < (1 if e.scenario == SERVER else settings.rounds) for e in todo
            )
        ):
            stopped_by_time = True
            break
        for entry in todo if round_ % 2 == 0 else list(reversed(todo)):
            echo(f"{model} on {device}: {entry.label} (round {round_ + 1})")
            if settings.wait_quiet_s > 0:
                wait_for_quiet(settings.wait_quiet_s)
            load = os.getloadavg()[0]
            others = Others()
            others.start()
            result = JobResult.from_json(
                _spawn(_job(entry, settings, device, source), settings.timeout_s)
            )
            machine = others.measure()
            if result.status != "ok":
                failed[entry] = result.reason
                continue
            rounds[entry].append(_Round(result, machine, round(load, 2)))
    series: dict[tuple[str, str | None, str], list[_Entry]] = {}
    for entry in entries:
        series.setdefault(entry.series, []).append(entry)
    for group in series.values():
        first = group[0]
        if first.why is not None or all(e in failed for e in group):
            status, reason = ("skipped", first.why) if first.why else ("failed", failed[first])
            batches = settings.batches if first.scenario == SINGLE_STREAM else (1,)
            for batch in batches:
                row = Row(model, first.runtime, device, batch, status, reason=reason or "")
                row.precision, row.accuracy, row.scenario = (
                    first.precision,
                    first.accuracy,
                    first.scenario,
                )
                run.rows.append(row)
            continue
        measured = [e for e in group if e not in failed and rounds[e]]
        if first.scenario == SINGLE_STREAM:
            made = [
                _row(model, first, device, b, rounds[first], settings, stopped_by_time)
                for b in settings.batches
            ]
        elif first.scenario == OFFLINE:
            made = [_offline_row(model, device, measured, rounds, settings, stopped_by_time)]
        else:
            made = [_server_row(model, device, measured, rounds, settings, stopped_by_time)]
        lost = {f"{e.sessions}x{e.threads}": failed[e] for e in group if e in failed}
        tf32 = {r.result.tf32 for e in measured for r in rounds[e]}
        for row in made:
            row.precision, row.accuracy = first.precision, first.accuracy
            row.tf32 = tf32.pop() if len(tf32) == 1 else None
            if lost and row.detail is not None:
                row.detail["failed_splits"] = lost  # the row is the best of the others
            run.rows.append(row)


def _best_round(rounds: list[_Round], figure: Callable[[_Round], float]) -> _Round:
    """The round with the lowest ``figure`` among the quiet ones (all, if none was quiet):
    interference from outside only ever slows a process down (measured here: whole workers
    2.3x slower for tens of seconds), so the fastest quiet round is the runtime's own cost,
    as timeit takes the best of its repeats."""
    return min([r for r in rounds if r.quiet] or rounds, key=figure)


def _stability(
    entry: _Entry,
    rounds: list[_Round],
    key: str,
    settings: BenchSettings,
    stopped_by_time: bool,
    tail_ratio: float | None,
    note: str = "",
) -> Stability:
    """The rule of docs/benchmarks.md (Stability): enough quiet rounds, the best two within
    ``--stability``, p90/p50 within ``--tail-bound``; the reasons where not."""
    reasons = []
    quiet = [r for r in rounds if r.quiet]
    wanted = _wanted_rounds(entry, settings)
    if len(quiet) < wanted:
        worst = max(rounds, key=lambda r: r.others.share)
        reasons.append(
            f"other processes used {worst.others.share:.0%} of the CPUs (steal "
            f"{worst.others.steal:.0%}, load average {worst.load_avg:g}) during "
            f"{len(rounds) - len(quiet)} of {len(rounds)} rounds"
        )
    agreement = _agreement(rounds, entry, key) if wanted > 1 else None
    if agreement is not None and agreement > settings.stability:
        what = "p50s" if entry.scenario == SINGLE_STREAM else "samples/s"
        reasons.append(
            f"the best two quiet rounds' {what} differ by {agreement:.0%} (over "
            f"{settings.stability:.0%}) after {len(rounds)} rounds"
            + (" (--max-time reached)" if stopped_by_time else "")
        )
    if tail_ratio is not None and tail_ratio > settings.tail_bound:
        reasons.append(f"p90 is {tail_ratio:.1f}x p50 (over {settings.tail_bound:g}x)")
    if note:
        reasons.append(note)
    return Stability(
        stable=not reasons,
        reasons=reasons,
        rounds=len(rounds),
        quiet_rounds=len(quiet),
        others_cpu_share=[round(r.others.share, 3) for r in rounds],
        steal_share=[round(r.others.steal, 3) for r in rounds],
        load_avg=[r.load_avg for r in rounds],
        agreement=agreement,
        tail_ratio=tail_ratio,
    )


def _row(
    model: str,
    entry: _Entry,
    device: str,
    batch: int,
    rounds: list[_Round],
    settings: BenchSettings,
    stopped_by_time: bool,
) -> Row:
    """One single-stream row from every round of a runtime at one batch size."""
    medians = [float(np.median(r.result.batches[batch].times_ns)) / 1e6 for r in rounds]
    spread = None
    if len(rounds) > 1:
        spread = (max(medians) - min(medians)) / float(np.median(medians))
    best = _best_round(rounds, lambda r: float(np.median(r.result.batches[batch].times_ns)))
    timed = best.result.batches[batch]
    latency = Latency.from_ns(timed.times_ns)
    tail = latency.p90 / latency.p50 if latency.p50 > 0 else None
    return Row(
        model,
        entry.runtime,
        device,
        batch,
        "ok",
        batch_latency_ms=latency,
        iterations=len(timed.times_ns),
        cold_start_ms=float(np.median([r.result.cold_start_ms for r in rounds])),
        peak_rss_mb=max(r.result.peak_rss_mb for r in rounds),
        rss_growth_mb=max(r.result.rss_growth_mb for r in rounds),
        cuda_max_allocated_mb=timed.cuda_max_allocated_mb,
        # Over every round: a runtime whose allocator churns in some processes and not in
        # others is flagged even when its fastest round was lucky.
        faults_per_call=float(np.median([r.result.batches[batch].faults_per_call for r in rounds])),
        round_spread=spread,
        round_p50_ms=medians,
        threads=entry.threads,
        stability=_stability(entry, rounds, str(batch), settings, stopped_by_time, tail),
    )


def _offline_row(
    model: str,
    device: str,
    entries: list[_Entry],
    rounds: dict[_Entry, list[_Round]],
    settings: BenchSettings,
    stopped_by_time: bool,
) -> Row:
    """A runtime's best samples/s over batch sizes and thread splits; every point in
    ``detail``."""
    points = []
    for entry in entries:
        for batch in settings.batches:
            key = str(batch)
            best = _best_round(rounds[entry], lambda r: _figures(entry, r.result)[key])  # noqa: B023
            point = best.result.scenario[key]
            points.append((entry, batch, best, point))
    entry, batch, best, point = max(points, key=lambda p: p[3]["samples_per_s"])
    row = Row(
        model,
        entry.runtime,
        device,
        batch,
        "ok",
        batch_latency_ms=Latency(**point["batch_latency_ms"]),
        iterations=int(point["calls"]),
        samples_per_s=float(point["samples_per_s"]),
        ms_per_sample=1e3 / float(point["samples_per_s"]),
        cold_start_ms=best.result.cold_start_ms,
        peak_rss_mb=best.result.peak_rss_mb,
        rss_growth_mb=best.result.rss_growth_mb,
        scenario=OFFLINE,
        sessions=entry.sessions,
        threads=entry.threads,
        stability=_stability(entry, rounds[entry], str(batch), settings, stopped_by_time, None),
        detail={
            "points": [
                {
                    "sessions": e.sessions,
                    "threads": e.threads,
                    "batch": b,
                    "samples_per_s": p["samples_per_s"],
                    "batch_p50_ms": p["batch_latency_ms"]["p50"],
                    "calls": p["calls"],
                }
                for e, b, _, p in points
            ]
        },
    )
    return row


def _server_row(
    model: str,
    device: str,
    entries: list[_Entry],
    rounds: dict[_Entry, list[_Round]],
    settings: BenchSettings,
    stopped_by_time: bool,
) -> Row:
    """A runtime's highest QPS under the latency bound over thread splits; every split's
    search (its latency-vs-QPS curve) in ``detail``."""
    searches = []
    for entry in entries:
        best = _best_round(rounds[entry], lambda r: _figures(entry, r.result)["max"])  # noqa: B023
        searches.append((entry, best, best.result.scenario))
    entry, best, search = max(searches, key=lambda s: (s[2]["best"] or {}).get("achieved_qps", 0.0))
    level = search["best"]
    latency = Latency(**(level or search["levels"][0])["latency_ms"])
    row = Row(
        model,
        entry.runtime,
        device,
        1,
        "ok",
        batch_latency_ms=latency,
        iterations=int((level or search["levels"][0])["requests"]),
        samples_per_s=float(level["achieved_qps"]) if level else 0.0,
        cold_start_ms=best.result.cold_start_ms,
        peak_rss_mb=best.result.peak_rss_mb,
        rss_growth_mb=best.result.rss_growth_mb,
        scenario=SERVER,
        sessions=entry.sessions,
        threads=entry.threads,
        stability=_stability(
            entry, rounds[entry], "max", settings, stopped_by_time, None, search.get("note", "")
        ),
        detail={
            "latency_bound_ms": settings.latency_bound_ms,
            "splits": [
                {
                    "sessions": e.sessions,
                    "threads": e.threads,
                    "max_qps": (s["best"] or {}).get("achieved_qps", 0.0),
                    "alone_ms": s["alone_ms"],
                    "levels": s["levels"],
                    "repeat": s["repeat"],
                    "note": s["note"],
                    "skipped": s.get("skipped", ""),
                }
                for e, _, s in searches
            ],
        },
    )
    return row
