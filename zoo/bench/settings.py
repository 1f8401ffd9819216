"""``zoo bench``'s settings: what a run measures, and the bounds every option is checked
against before anything runs (``validate``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from zoo._pluginmanager import get_plugins
from zoo.bench.results import SCENARIOS, SERVER, SINGLE_STREAM
from zoo.bench.scenarios import ServerPolicy
from zoo.bench.timing import TimingPolicy
from zoo.errors import UsageError
from zoo.formats import check_precisions
from zoo.runtimes import cuda_present

__all__ = ["DEFAULT_BATCHES", "BenchSettings", "thread_splits", "validate"]

DEFAULT_BATCHES = (1, 8, 32)
#: Sessions one offline or server worker loads at most.
MAX_SESSIONS = 64
#: Bounds no benchmark needs to reach: past them a run takes days (``--warmup 10^26``).
MAX_WARMUP = 100_000
MAX_MIN_TIME_S = 3600.0
MAX_SERVER_REQUESTS = 1_000_000


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
    #: The server scenario over the wire too (``zoo.bench.wire``): against a live v2
    #: endpoint (``http://HOST:PORT[/v2/models/NAME]``), or (``serve``) against zoo serve
    #: started on the export, once per in-process server row; ``clients`` connections each,
    #: ``serve_args`` passed to zoo serve (``--max-batch 16 --batch-wait-ms 2``).
    endpoint: str | None = None
    serve: bool = False
    clients: int = 16
    serve_args: tuple[str, ...] = ()


def validate(settings: BenchSettings) -> tuple[str, ...]:
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
    _validate_wire(settings)
    check_precisions(settings.precisions)
    for device in settings.devices or ():
        if device not in ("cpu", "cuda"):
            raise UsageError(f"--device {device!r}: choose cpu or cuda")
        if device == "cuda" and not cuda_present():
            raise UsageError(
                "--device cuda: no CUDA device here (torch sees none); use --device cpu"
            )
    return runtimes


def _validate_wire(settings: BenchSettings) -> None:
    if settings.endpoint is None and not settings.serve:
        if settings.serve_args:
            raise UsageError("--serve-args: only with --serve")
        return
    if settings.endpoint is not None and settings.serve:
        raise UsageError("give --endpoint (a running server) or --serve (zoo bench starts one)")
    if SERVER not in settings.scenarios:
        raise UsageError(
            f"--{'serve' if settings.serve else 'endpoint'} measures the server scenario: "
            "add --scenario server"
        )
    if not 1 <= settings.clients <= MAX_SESSIONS:
        raise UsageError(f"--clients {settings.clients}: from 1 to {MAX_SESSIONS}")
    if settings.serve_args and not settings.serve:
        raise UsageError("--serve-args: only with --serve")


def thread_splits(settings: BenchSettings, threads: int) -> tuple[tuple[int, int], ...]:
    """``--splits``, or every (sessions, threads per session) whose product is ``threads``:
    on 2 cores, 1 session of 2 threads and 2 sessions of 1."""
    if settings.splits:
        return settings.splits
    return tuple((n, threads // n) for n in range(1, threads + 1) if threads % n == 0)
