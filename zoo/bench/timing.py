"""Timing done right: warm-up, then timed calls until both a minimum count and a minimum
time are reached, each call timed on its own with ``perf_counter_ns`` (and, on a GPU, after a
device synchronisation, so the time is the device's, not the launch's)."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from zoo.errors import UsageError

__all__ = ["TimingPolicy", "harness_overhead_ns", "time_calls", "timed_calls", "warm_up"]


@dataclass(frozen=True)
class TimingPolicy:
    warmup_iters: int = 5
    warmup_time_s: float = 0.2
    min_iters: int = 20
    min_time_s: float = 1.0
    #: A hard stop for very fast calls (enough for stable p99s).
    max_iters: int = 200_000

    def __post_init__(self) -> None:
        if self.min_iters < 1 or self.warmup_iters < 0 or self.max_iters < self.min_iters:
            raise UsageError("timing: need min_iters >= 1, warmup_iters >= 0, max >= min")
        times = (self.min_time_s, self.warmup_time_s)
        if not all(math.isfinite(t) and t >= 0 for t in times):  # nan: an endless loop
            raise UsageError("timing: times must be finite and >= 0")


def warm_up(call: Callable[[], Any], sync: Callable[[], None], policy: TimingPolicy) -> int:
    """The untimed calls: at least ``warmup_iters`` of them and ``warmup_time_s`` of calling.
    Returns how many were made."""
    clock = time.perf_counter_ns
    start = clock()
    done = 0
    warm_ns = policy.warmup_time_s * 1e9
    while done < policy.warmup_iters or clock() - start < warm_ns:
        call()
        sync()
        done += 1
    return done


def timed_calls(
    call: Callable[[], Any], sync: Callable[[], None], policy: TimingPolicy
) -> list[int]:
    """Per-call wall times in nanoseconds, no warm-up: until both ``min_iters`` calls and
    ``min_time_s`` of calling (or ``max_iters``)."""
    clock = time.perf_counter_ns
    times: list[int] = []
    append = times.append
    min_ns = policy.min_time_s * 1e9
    start = clock()
    while True:
        t0 = clock()
        call()
        sync()
        t1 = clock()
        append(t1 - t0)
        n = len(times)
        if (n >= policy.min_iters and t1 - start >= min_ns) or n >= policy.max_iters:
            return times


def time_calls(
    call: Callable[[], Any], sync: Callable[[], None], policy: TimingPolicy
) -> list[int]:
    """Per-call wall times in nanoseconds, after the warm-up."""
    warm_up(call, sync, policy)
    return timed_calls(call, sync, policy)


def harness_overhead_ns(repeats: int = 5) -> float:
    """What the harness itself adds to every recorded call: the median recorded time of a
    call that does nothing, made exactly as the worker makes its timed calls (a closure
    calling the session's ``run`` on a prepared input, then ``sync``). Best of ``repeats``
    runs of 20,000 calls."""

    def identity(x: Any) -> Any:
        return x

    def sync() -> None:
        return None

    prepared = object()
    policy = TimingPolicy(warmup_iters=1000, warmup_time_s=0, min_iters=20_000, min_time_s=0)
    return min(
        statistics.median(time_calls(lambda: identity(prepared), sync, policy))
        for _ in range(repeats)
    )
