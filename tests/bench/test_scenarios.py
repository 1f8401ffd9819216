"""The offline and server scenarios on sessions of known cost: a session whose call sleeps for a
fixed time releases the GIL as a runtime computing does, so N of them serve N calls at once and
the expected figures are known in advance."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from zoo.bench import scenarios
from zoo.bench.scenarios import (
    KEPT_UP,
    ServerPolicy,
    run_offline,
    run_server_level,
    search_server,
)
from zoo.runtimes import Session

QUICK = ServerPolicy(min_requests=60, min_time_s=0.3, max_levels=10)


def sleeper(seconds: float, calls: list[str] | None = None) -> Session:
    def run(x: Any) -> None:
        if calls is not None:
            calls.append(threading.current_thread().name)
        time.sleep(seconds)

    return Session(prepare=lambda x: x, run=run)


def test_offline_counts_every_session_s_samples_over_the_wall_time() -> None:
    one = run_offline([sleeper(0.004)], [None], batch=8, min_calls=10, min_s=0.3)
    two = run_offline([sleeper(0.004), sleeper(0.004)], [None, None], 8, 10, 0.3)
    # One session: at most 8 samples per 4 ms; two sessions side by side: about twice that.
    assert 0.5 * 2000 < one.samples_per_s <= 2000 * 1.01
    assert 1.6 < two.samples_per_s / one.samples_per_s < 2.2
    assert two.calls >= 20 and two.wall_s >= 0.3
    assert two.batch_latency_ms["p50"] >= 4.0  # per call, that is per batch of 8


def test_offline_runs_session_0_in_the_calling_thread_and_the_others_beside_it() -> None:
    calls: list[str] = []
    run_offline([sleeper(0.001, calls), sleeper(0.001, calls)], [None, None], 1, 5, 0.05)
    assert threading.current_thread().name in calls  # session 0 (OpenMP: docs of _in_threads)
    assert len(set(calls)) == 2


def test_a_session_that_raises_fails_the_scenario() -> None:
    def boom(x: Any) -> None:
        raise RuntimeError("the runtime fell over")

    broken = Session(prepare=lambda x: x, run=boom)
    with pytest.raises(RuntimeError, match="fell over"):
        run_offline([sleeper(0.001), broken], [None, None], 1, 5, 0.05)


def test_server_latency_includes_the_queue() -> None:
    """At a tenth of capacity a request waits for nothing; at twice capacity the queue grows
    through the window and the rate fails, however the p99 looks (answers fall behind)."""
    service = 0.004  # 250 requests/s per session
    light = run_server_level([sleeper(service)], [None], 25.0, 50.0, QUICK, seed=0)
    assert light.passed and light.requests >= 60
    assert service * 1e3 <= light.latency_ms["p50"] < 3 * service * 1e3
    heavy = run_server_level([sleeper(service)], [None], 500.0, 20.0, QUICK, seed=0)
    assert not heavy.passed
    assert heavy.achieved_qps < KEPT_UP * heavy.arrival_qps
    assert heavy.latency_ms["p99"] > 10 * service * 1e3  # waited in the queue
    # The arrivals are seeded: the same seed, the same requests.
    again = run_server_level([sleeper(service)], [None], 25.0, 50.0, QUICK, seed=0)
    assert again.arrival_qps == light.arrival_qps


def test_the_search_finds_the_highest_rate_under_the_bound() -> None:
    service = 0.002  # capacity 500/s per session
    one = search_server([sleeper(service)], [None], 20.0, QUICK, seed=1, alone_ms=2.0)
    assert one.best is not None and one.repeat is not None
    assert 150 < one.max_qps <= 520
    assert all(level.latency_ms["p99"] <= 20.0 for level in one.levels if level.passed)
    assert any(not level.passed for level in one.levels)  # it found where the bound breaks
    two = search_server(
        [sleeper(service), sleeper(service)], [None, None], 20.0, QUICK, seed=1, alone_ms=2.0
    )
    assert two.max_qps > 1.4 * one.max_qps  # two sessions serve about twice the rate


def test_clients_of_one_server_search_from_what_one_request_at_a_time_serves() -> None:
    """Four clients of a server that answers one request at a time (a lock: 4 ms each, 250/s)
    are not four servers: with ``parallel=1`` the search starts at half of 250/s and finds
    the rate; taken as four servers, it starts at 500/s and halves down from there."""
    lock = threading.Lock()

    def served(x: Any) -> None:
        with lock:
            time.sleep(0.004)

    clients = [Session(prepare=lambda x: x, run=served) for _ in range(4)]
    search = search_server(clients, [None] * 4, 40.0, QUICK, seed=0, alone_ms=4.0, parallel=1)
    assert search.levels[0].offered_qps == pytest.approx(125.0)
    assert search.levels[0].passed
    assert search.best is not None and 100 < search.max_qps <= 260
    as_four = search_server(clients, [None] * 4, 40.0, QUICK, seed=0, alone_ms=4.0)
    assert as_four.levels[0].offered_qps == pytest.approx(500.0)
    assert not as_four.levels[0].passed


def test_a_bound_no_rate_meets_says_why() -> None:
    search = search_server([sleeper(0.01)], [None], 2.0, QUICK, seed=0, alone_ms=10.0)
    assert search.best is None and search.max_qps == 0.0 and search.repeat is None
    assert search.note == "no rate can keep p99 under 2 ms: one request alone takes 10 ms (p50)"
    assert not search.levels  # nothing to search: the p50 alone is over the bound
    # A p50 under the bound with a tail over it: the search goes down to 2% load, then stops.
    jittery = Session(prepare=lambda x: x, run=lambda x: time.sleep(0.001))
    search = search_server([jittery], [None], 0.5, QUICK, seed=0, alone_ms=0.4)
    assert search.best is None and search.levels
    assert "no rate kept p99 under 0.5 ms" in search.note
    assert min(level.offered_qps for level in search.levels) >= 2500 / 50 / 2


def test_the_best_rate_is_the_highest_that_passed_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    """Near the cliff one window's p99 hangs on a few stalls: a rate that passes once and not
    again gives way to the next passing rate below it that repeats."""
    policy = ServerPolicy(max_levels=10)
    repeats = policy.max_levels + 1  # the seeds of the second windows start here

    def level(sessions: Any, prepared: Any, rate: float, bound: float, pol: Any, seed: int) -> Any:
        limit = 100.0 if seed < repeats else 80.0  # the second time, only up to 80/s pass
        p99 = 1.0 if rate <= limit else 50.0
        stats = {"p50": 0.5, "p90": 0.8, "p99": p99, "mean": 0.5, "std": 0.1, "min": 0.1,
                 "max": p99}  # fmt: skip
        return scenarios.LevelResult(rate, rate, rate, stats, 100, p99 <= bound)

    monkeypatch.setattr(scenarios, "run_server_level", level)
    search = search_server([sleeper(0)], [None], 10.0, policy, seed=0, alone_ms=10.0)
    passed_once = [lv.offered_qps for lv in search.levels if lv.passed]
    assert search.best is not None and search.repeat is not None and search.repeat.passed
    assert search.best.offered_qps == max(r for r in passed_once if r <= 80.0)
    assert search.note == "" and "passed once and not again" in search.skipped
    # When none of the top rates repeats, the row says so (and is unstable).
    monkeypatch.setattr(
        scenarios,
        "run_server_level",
        lambda *a: level(*a[:5], 0) if a[5] < repeats else level(a[0], a[1], 1e9, *a[3:5], a[5]),
    )
    search = search_server([sleeper(0)], [None], 10.0, policy, seed=0, alone_ms=10.0)
    assert search.best is not None and search.best.offered_qps == max(
        lv.offered_qps for lv in search.levels if lv.passed
    )
    assert search.note.startswith(f"the best rate, {search.best.offered_qps:.4g}/s, did not repeat")
