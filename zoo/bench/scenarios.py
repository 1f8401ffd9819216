"""The offline and server scenarios (MLPerf Inference's vocabulary), run inside a bench worker
on sessions any runtime loads: nothing here knows a runtime, so a runtime plugin gets both
scenarios by implementing :class:`zoo.runtimes.Runtime.load` alone.

- **offline**: every sample is there at the start. ``sessions`` sessions, each in a thread of
  its own with ``threads`` threads of its runtime, run batches back to back; the figure is
  every session's samples over the wall time, per batch size.
- **server**: requests of one sample arrive as a Poisson process at a target rate (seeded
  exponential gaps) and wait in one FIFO queue for the first free session. A request's latency
  runs from its scheduled arrival to its answer, queueing included (measuring from the
  scheduled time, not from when a busy session got to it, keeps a slow server from hiding its
  own queue: "coordinated omission"). The search looks for the highest rate whose p99 stays
  under the latency bound, then measures that rate again: a figure that does not repeat is
  reported as such.

The sessions share one process, as the sessions of a Python server do: the GIL is part of
what the split measures (each runtime releases it while it computes).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from zoo.bench.results import Latency
from zoo.runtimes import Session

__all__ = [
    "LevelResult",
    "OfflinePoint",
    "ServerPolicy",
    "ServerSearch",
    "run_offline",
    "run_server_level",
    "search_server",
]


#: The search goes no lower than the sessions' capacity over this: at 2% load a request
#: hardly ever waits, so a rate failing there fails on the latency's own tail.
LOWEST_LOAD = 50
#: The passing rates, from the highest down, that get a second window until one repeats.
REPEATS = 3
#: A rate passes only if the requests answered per second reach this share of the arrival
#: rate (with a window of 20 bounds, a server that keeps up loses at most 5% to the last wait).
KEPT_UP = 0.9


@dataclass(frozen=True)
class ServerPolicy:
    """How long each rate of the server search is measured, and how far the search goes."""

    #: A level sends at least this many requests and lasts at least ``min_time_s``.
    min_requests: int = 200
    min_time_s: float = 1.0
    #: And at most this many (a fast model at a high rate would send millions).
    max_requests: int = 20_000
    #: Rates tried at most (the confirmation of the best is one more).
    max_levels: int = 12
    #: The search stops once the best passing and the lowest failing rate are this close.
    tolerance: float = 0.05

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _stats(times_ns: Sequence[int] | np.ndarray) -> dict[str, float]:
    """The row's latency statistics (:class:`~zoo.bench.results.Latency`) as JSON."""
    return asdict(Latency.from_ns(times_ns))


def _in_threads(sessions: int, body: Callable[[int], None]) -> float:
    """Run ``body(i)`` for every session at once: session 0 in this thread, each other in a
    thread of its own; the wall seconds from the release to the last one's end. An exception
    in any of them is raised here.

    Session 0 stays in the thread that loaded it: measured with LeNet at batch 8 and 2
    OpenMP threads, PyTorch called from a second thread of a process whose main thread has
    already run parallel work took 1.05 ms a call against 0.36 ms in the main thread (each
    calling thread gets an OpenMP team of its own). With one session (1 x 2 threads) the
    split is then timed exactly as single-stream is; splits of one thread per session run no
    OpenMP team at all."""
    import torch  # here: the parent imports this module for its records only

    start = threading.Barrier(sessions)
    errors: list[BaseException] = []

    def target(i: int) -> None:
        try:
            with torch.inference_mode():  # per thread: grad mode is thread-local
                start.wait()
                body(i)
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)
            start.abort()

    threads = [threading.Thread(target=target, args=(i,), daemon=True) for i in range(1, sessions)]
    for thread in threads:
        thread.start()
    t0 = time.perf_counter()
    target(0)
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - t0
    if errors:
        raise next(
            (e for e in errors if not isinstance(e, threading.BrokenBarrierError)), errors[0]
        )
    return wall


@dataclass(frozen=True)
class OfflinePoint:
    """One batch size of the offline scenario with one thread split."""

    batch: int
    samples_per_s: float
    #: Per call (one batch) over every session's calls, in milliseconds.
    batch_latency_ms: dict[str, float]
    calls: int
    wall_s: float


def run_offline(
    sessions: Sequence[Session], prepared: Sequence[Any], batch: int, min_calls: int, min_s: float
) -> OfflinePoint:
    """Every session runs its prepared batch back to back until each has made ``min_calls``
    calls and ``min_s`` seconds have passed; samples/s over the wall time."""
    times: list[list[int]] = [[] for _ in sessions]
    clock = time.perf_counter_ns
    deadline_ns = [0]

    def body(i: int) -> None:
        run, sync, x, own = sessions[i].run, sessions[i].sync, prepared[i], times[i]
        if i == 0:
            deadline_ns[0] = clock() + int(min_s * 1e9)
        while True:
            t0 = clock()
            run(x)
            sync()
            t1 = clock()
            own.append(t1 - t0)
            if len(own) >= min_calls and t1 >= deadline_ns[0] > 0:
                return

    wall = _in_threads(len(sessions), body)
    calls = sum(len(t) for t in times)
    return OfflinePoint(
        batch=batch,
        samples_per_s=calls * batch / wall,
        batch_latency_ms=_stats([t for own in times for t in own]),
        calls=calls,
        wall_s=wall,
    )


@dataclass(frozen=True)
class LevelResult:
    """One rate of the server scenario."""

    #: The target rate, and the rate the seeded arrivals actually had.
    offered_qps: float
    arrival_qps: float
    #: Requests answered per second: every request over the time to the last answer.
    achieved_qps: float
    #: Per request (one sample), from its scheduled arrival to its answer, in milliseconds.
    latency_ms: dict[str, float]
    requests: int
    #: p99 within the bound, and the answers kept up with the arrivals (``KEPT_UP``).
    passed: bool


def run_server_level(
    sessions: Sequence[Session],
    prepared: Sequence[Any],
    rate: float,
    bound_ms: float,
    policy: ServerPolicy,
    seed: int,
) -> LevelResult:
    """Send Poisson arrivals at ``rate`` per second to the sessions (one FIFO queue, the first
    free session takes the next request) and time each request from its scheduled arrival."""
    # A window of at least 20 bounds: a rate slightly over capacity builds its queue slowly,
    # and a short window would end before the queue's wait reached the bound.
    seconds = max(policy.min_time_s, 20 * bound_ms / 1e3)
    n = max(policy.min_requests, rate * seconds)
    # A low rate sends fewer requests than min_requests rather than wait for minutes: at most
    # 5 windows' time, and at least 20 requests.
    n = int(min(policy.max_requests, n, max(20, rate * 5 * seconds)))
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1.0 / rate, n))
    arrivals -= arrivals[0]  # the first request at the start
    arrivals_ns = (arrivals * 1e9).astype(np.int64)
    latency = np.zeros(n, dtype=np.int64)
    done_ns = np.zeros(n, dtype=np.int64)
    lock = threading.Lock()
    cursor = [0]
    clock = time.perf_counter_ns
    origin = [0]

    def body(i: int) -> None:
        run, sync, x = sessions[i].run, sessions[i].sync, prepared[i]
        with lock:
            if origin[0] == 0:
                origin[0] = clock()
        start = origin[0]
        while True:
            with lock:
                k = cursor[0]
                cursor[0] += 1
            if k >= n:
                return
            due = start + int(arrivals_ns[k])
            wait = due - clock()
            if wait > 0:
                time.sleep(wait / 1e9)
            run(x)
            sync()
            t = clock()
            latency[k] = t - due
            done_ns[k] = t - start

    _in_threads(len(sessions), body)
    span_s = float(done_ns.max()) / 1e9
    stats = _stats(latency)
    arrival = (n - 1) / arrivals[-1] if n > 1 and arrivals[-1] > 0 else rate
    achieved = n / span_s if span_s > 0 else 0.0
    return LevelResult(
        offered_qps=rate,
        arrival_qps=arrival,
        achieved_qps=achieved,
        latency_ms=stats,
        requests=n,
        # Kept up: answers came as fast as the requests arrived (a server behind by more than
        # KEPT_UP is overloaded, whatever its p99 in a window this short).
        passed=bool(stats["p99"] <= bound_ms and achieved >= KEPT_UP * arrival),
    )


@dataclass
class ServerSearch:
    """The server scenario for one thread split: every rate tried, the best, its repeat."""

    bound_ms: float
    #: p50 of one request alone (the sessions idle otherwise), the search's starting point.
    alone_ms: float
    levels: list[LevelResult] = field(default_factory=list)
    best: LevelResult | None = None
    #: The best rate measured again (with other arrivals); None when no rate passed.
    repeat: LevelResult | None = None
    #: Why no rate passed, or why the best did not repeat ("" when it did).
    note: str = ""
    #: A higher rate that passed once and not twice, when the best is one below it.
    skipped: str = ""

    @property
    def max_qps(self) -> float:
        """Achieved requests/s at the highest rate whose p99 kept under the bound (0: none)."""
        return self.best.achieved_qps if self.best is not None else 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def search_server(
    sessions: Sequence[Session],
    prepared: Sequence[Any],
    bound_ms: float,
    policy: ServerPolicy,
    seed: int,
    alone_ms: float,
    parallel: int | None = None,
) -> ServerSearch:
    """The highest Poisson rate whose p99 latency stays under ``bound_ms``: from half the
    sessions' capacity (``parallel / alone_ms``), up by half again while rates pass, then
    bisection between the best passing and the lowest failing rate; then the best is measured
    again with new arrivals, and if it fails that second time, the next passing rates below it
    (``REPEATS`` in all): the result is the highest rate that passed twice.

    ``parallel``: the requests the sessions serve at once (default: one each). Clients of a
    server over the wire serve none themselves: the server's parallelism is its own, so they
    start from one request at a time and climb (16 clients taken as 16 servers started a
    served resnet18 at 16 times what it could do, and its search ended before a rate it
    could keep)."""
    search = ServerSearch(bound_ms=bound_ms, alone_ms=alone_ms)
    if alone_ms > bound_ms:  # half the requests would miss it with no queue at all
        search.note = (
            f"no rate can keep p99 under {bound_ms:g} ms: one request alone takes "
            f"{alone_ms:.3g} ms (p50)"
        )
        return search
    capacity = (parallel or len(sessions)) * 1e3 / max(alone_ms, 1e-3)
    rate = 0.5 * capacity
    low: LevelResult | None = None
    high: float | None = None
    for level in range(policy.max_levels):
        result = run_server_level(sessions, prepared, rate, bound_ms, policy, seed + level)
        search.levels.append(result)
        if result.passed:
            low = result
        else:
            high = rate if high is None else min(high, rate)
        if high is None:
            rate *= 1.5
        elif low is None:
            rate = high / 2
            if rate < capacity / LOWEST_LOAD:  # fails even when nearly idle: the tail alone
                break
        else:
            if (high - low.offered_qps) / low.offered_qps <= policy.tolerance:
                break
            rate = (low.offered_qps + high) / 2
    search.best = low
    if low is None:
        search.note = (
            f"no rate kept p99 under {bound_ms:g} ms: one request alone takes "
            f"{alone_ms:.3g} ms (p50)"
        )
        return search
    # The best rate must pass twice. Near the cliff one window's p99 hangs on a few stalls,
    # so when it does not repeat, the next passing rates below it get their second window.
    passing = sorted((lv for lv in search.levels if lv.passed), key=lambda lv: -lv.offered_qps)
    first = passing[0]
    for tries, candidate in enumerate(passing[:REPEATS]):
        repeat = run_server_level(
            sessions, prepared, candidate.offered_qps, bound_ms, policy,
            seed + policy.max_levels + 1 + tries,
        )  # fmt: skip
        if repeat.passed or search.repeat is None:
            search.best, search.repeat = candidate, repeat
        if repeat.passed:
            break
    assert search.repeat is not None and search.best is not None
    if not search.repeat.passed:
        below = min(len(passing), REPEATS) - 1
        search.note = (
            f"the best rate, {first.offered_qps:.4g}/s, did not repeat"
            + (
                f", nor the {below} passing rate{'s' if below > 1 else ''} below it"
                if below
                else ""
            )
            + f": p99 "
            f"{search.repeat.latency_ms['p99']:.3g} ms over the {bound_ms:g} ms bound the "
            "second time"
        )
    elif search.best is not first:
        search.skipped = (
            f"{first.offered_qps:.4g}/s passed once and not again: the best is the highest "
            "rate that passed twice"
        )
    return search
