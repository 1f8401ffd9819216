"""The stability rule: rounds until the best two quiet rounds agree, and a row that cannot be
trusted says so, with why. First the rule on rounds of known figures, then zoo bench itself,
quiet and beside a CPU hog."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from click.testing import CliRunner

from zoo.bench.load import BUSY_SHARE, Others, OthersShare, process_tree_cpu
from zoo.bench.results import load_run
from zoo.bench.rows import single_stream_row
from zoo.bench.settings import BenchSettings
from zoo.bench.stability import Entry, Round, assess, settled
from zoo.bench.worker import BatchTimes, JobResult
from zoo.cli import cli

QUICK = ["--min-time", "0.05", "--min-iters", "10", "--warmup", "2"]
ENTRY = Entry("eager", threads=2)
SERVER = Entry("eager", scenario="server", sessions=2, threads=1)


def _round(p50_ms: float, others: float = 0.0, tail: float = 1.1) -> Round:
    """A round whose batch-1 calls have this p50 and p90 = ``tail`` x p50."""
    ns = int(p50_ms * 1e6)
    times = (ns,) * 60 + (int(ns * tail),) * 40  # p50 the lower, p90 the upper
    result = JobResult("ok", batches={1: BatchTimes(times_ns=times, faults_per_call=0.0)})
    return Round(result, OthersShare(others, 0.0, 1.0), load_avg=1.0)


def _server_round(qps: float, note: str = "", others: float = 0.0) -> Round:
    level = {"achieved_qps": qps}
    result = JobResult("ok", scenario={"best": level if qps else None, "note": note})
    return Round(result, OthersShare(others, 0.0, 1.0), load_avg=1.0)


def test_two_quiet_rounds_that_agree_settle_and_are_stable() -> None:
    settings = BenchSettings(models=["m"])
    rounds = [_round(1.00), _round(1.03)]
    assert settled(ENTRY, rounds, settings)
    stability = assess(ENTRY, rounds, "1", settings, False, 1.1)
    assert stability.stable and stability.reasons == [] and stability.quiet_rounds == 2
    assert stability.agreement == pytest.approx(0.03, abs=0.005)


def test_rounds_that_disagree_run_on_and_then_say_so() -> None:
    settings = BenchSettings(models=["m"], max_rounds=3)
    rounds = [_round(1.0), _round(1.3)]
    assert not settled(ENTRY, rounds, settings)  # another round is wanted
    rounds.append(_round(1.6))
    stability = assess(ENTRY, rounds, "1", settings, False, 1.1)
    assert not stability.stable
    assert stability.reasons == [
        "the best two quiet rounds' p50s differ by 30% (over 5%) after 3 rounds"
    ]
    # The best two of three count: a third, disturbed round does not spoil two that agree.
    assert settled(ENTRY, [_round(1.0), _round(1.6), _round(1.02)], settings)


def test_rounds_that_agree_beside_a_busy_process_are_not_stable() -> None:
    """Measured here: beside a busy process eager runs 100x slower in every round, and the
    rounds agree. Agreement is not enough: the others' CPU share decides."""
    settings = BenchSettings(models=["m"])
    busy = [_round(90.0, others=0.5), _round(91.0, others=0.5)]
    assert not settled(ENTRY, busy, settings)
    stability = assess(ENTRY, busy, "1", settings, False, 1.1)
    assert not stability.stable and stability.quiet_rounds == 0
    assert stability.reasons == [
        "other processes used 50% of the CPUs (steal 0%, load average 1) during 2 of 2 rounds"
    ]
    assert stability.others_cpu_share == [0.5, 0.5] and stability.agreement is None
    # The row's figures come from the quiet round when there is one, even if it was slower.
    row = single_stream_row(
        "m", ENTRY, "cpu", 1, [_round(1.0), _round(0.5, others=0.5)], settings, False
    )
    assert row.batch_latency_ms is not None and row.batch_latency_ms.p50 == pytest.approx(1.0)
    assert row.stability is not None and not row.stability.stable  # one quiet round of two


def test_a_long_tail_is_unstable() -> None:
    settings = BenchSettings(models=["m"], tail_bound=2.0)
    rounds = [_round(1.0, tail=3.0), _round(1.0, tail=3.0)]
    row = single_stream_row("m", ENTRY, "cpu", 1, rounds, settings, False)
    assert row.stability is not None and not row.stability.stable
    assert row.stability.reasons == ["p90 is 3.0x p50 (over 2x)"]


def test_one_round_asked_for_is_judged_on_the_machine_and_the_tail_alone() -> None:
    settings = BenchSettings(models=["m"], rounds=1, max_rounds=1)
    assert settled(ENTRY, [_round(1.0)], settings)
    assert assess(ENTRY, [_round(1.0)], "1", settings, False, 1.1).stable
    assert not settled(ENTRY, [_round(1.0, others=0.3)], settings)


def test_a_server_round_settles_when_its_best_rate_repeated() -> None:
    settings = BenchSettings(models=["m"])
    assert settled(SERVER, [_server_round(5000.0)], settings)
    note = "the best rate, 5000/s, did not repeat: p99 12 ms over the 10 ms bound the second time"
    assert not settled(SERVER, [_server_round(5000.0, note)], settings)
    rounds = [_server_round(5000.0, note)]
    stability = assess(SERVER, rounds, "max", settings, False, None, note)
    assert stability.reasons == [note]
    assert not settled(SERVER, [_server_round(5000.0, others=0.4)], settings)


# -- zoo bench, end to end -----------------------------------------------------------------------


def bench(*args: str) -> object:
    return CliRunner().invoke(cli, ["bench", *args], catch_exceptions=False)


def test_rounds_stop_at_max_rounds_and_at_max_time(tmp_path: Path) -> None:
    """--stability 0 is never met by real timings: every row runs --max-rounds rounds and
    says so; --max-time 0 stops them at --rounds."""
    base = ["lenet", "--runtime", "eager", "--batch", "1", *QUICK, "--stability", "0"]
    result = bench(*base, "--max-rounds", "3", "--json", str(tmp_path / "a.json"))
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    (row,) = load_run(tmp_path / "a.json").rows
    assert row.stability is not None and row.stability.rounds == 3 and not row.stability.stable
    assert row.round_p50_ms is not None and len(row.round_p50_ms) == 3
    assert "(over 0%) after 3 rounds" in " ".join(row.stability.reasons) or (
        row.stability.quiet_rounds < 2  # a busy machine: that is the reason given instead
    )
    result = bench(*base, "--max-time", "0", "--json", str(tmp_path / "b.json"))
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    (row,) = load_run(tmp_path / "b.json").rows
    assert row.stability is not None and row.stability.rounds == 2
    assert "unstable" in result.output  # type: ignore[attr-defined]


@pytest.fixture
def hog() -> Iterator[list[subprocess.Popen[bytes]]]:
    """A busy process on every CPU, as a shared machine has."""
    hogs = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(psutil.cpu_count() or 1)
    ]
    try:
        yield hogs
    finally:
        for process in hogs:
            process.kill()
            process.wait()


def test_a_cpu_hog_beside_the_bench_turns_rows_unstable_never_into_a_speed_up(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Before the rule, a hog beside `zoo bench` printed "onnxruntime 1591x": eager stalled
    for whole scheduler slices, ONNX Runtime did not. Now no row reported stable differs from
    the quiet figure by more than 2x, and every speed-up from a disturbed row is marked."""
    args = ["lenet", "--runtime", "eager,onnxruntime", "--batch", "1,8", *QUICK]
    args += ["--max-rounds", "2"]
    quiet = bench(*args, "--json", str(tmp_path / "quiet.json"))
    assert quiet.exit_code == 0, quiet.output  # type: ignore[attr-defined]
    request.getfixturevalue("hog")  # started now, stopped at the end of the test
    busy = bench(*args, "--json", str(tmp_path / "busy.json"))
    assert busy.exit_code == 0, busy.output  # type: ignore[attr-defined]
    before = {r.key: r for r in load_run(tmp_path / "quiet.json").rows}
    after = load_run(tmp_path / "busy.json").rows
    assert len(after) == 4
    for row in after:
        assert row.stability is not None and row.batch_latency_ms is not None
        assert row.stability.rounds <= 2  # bounded: --max-rounds
        # The hog was seen in every round.
        assert min(row.stability.others_cpu_share) > BUSY_SHARE, row.stability
        old = before[row.key].batch_latency_ms
        assert old is not None
        if row.stable:
            assert 0.5 < row.batch_latency_ms.p50 / old.p50 < 2.0, (row, old)
        if row.speedup_vs_eager is not None and row.speedup_stable:
            was = before[row.key].speedup_vs_eager
            assert was is not None and 0.5 < row.speedup_vs_eager / was < 2.0
    assert all(not r.stable for r in after)  # with a busy process on every CPU
    assert "unstable: other processes used" in busy.output  # type: ignore[attr-defined]
    document = json.loads((tmp_path / "busy.json").read_text())
    flagged = [r for r in document["results"] if r["runtime"] == "onnxruntime"]
    assert all(r["speedup_stable"] is False for r in flagged)


def test_the_others_share_counts_a_busy_process_not_the_reaped_worker() -> None:
    """What the rule reads: a busy process beside the measurement shows as the others' share;
    the worker itself, once reaped, does not."""
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        others = Others()
        others.start()
        worker = "import time; t = time.time()\nwhile time.time() - t < 1.0: pass"
        subprocess.run([sys.executable, "-c", worker], check=True)  # busy, then reaped
        measured = others.measure()
    finally:
        busy.kill()
        busy.wait()
    cpus = psutil.cpu_count() or 1
    # The hog's core: counted. The worker's: not (at most the hog's core is counted, on a
    # machine where nothing else runs; with more than 2 CPUs the bound is looser).
    assert measured.share >= 0.8 / cpus > BUSY_SHARE and 0 <= measured.steal <= 1
    assert measured.wall_s >= 1.0


def test_a_server_measured_over_the_wire_counts_as_the_rounds_own() -> None:
    """zoo bench --serve: the server (and the processes it started, as Ray starts its
    replicas) works for the round, so its CPU is not the others' share; the same busy
    process is the others' share for a round that does not measure it."""
    spin = "while True: pass"
    starter = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {spin!r}])"
    server = subprocess.Popen([sys.executable, "-c", starter])  # busy in its child
    try:
        deadline = time.monotonic() + 30
        while not psutil.Process(server.pid).children() and time.monotonic() < deadline:
            time.sleep(0.05)
        clock = process_tree_cpu(server.pid)
        plain, measuring = Others(), Others(also=clock)
        plain.start()
        measuring.start()
        before = clock()
        time.sleep(1.5)
        apart, own = plain.measure(), measuring.measure()
        used = clock() - before
    finally:
        for child in psutil.Process(server.pid).children(recursive=True):
            child.kill()
        server.kill()
        server.wait()
    cpus = psutil.cpu_count() or 1
    assert used >= 0.5  # the grandchild's spin is on the server's clock
    # The same interval, read twice: the server's seconds moved from the others' to the own.
    assert apart.share - own.share >= 0.3 / cpus
    assert apart.share >= 0.3 / cpus
    assert process_tree_cpu(server.pid)() == 0.0  # gone: no clock to read


def test_every_row_of_a_series_says_whether_its_rounds_ran_in_tf32() -> None:
    """The rows of one runtime at each batch size share its rounds, so each carries their
    TF32 setting (it was the first row's alone); rounds that differ give None."""
    from zoo.bench.runner import _Measured, _series_rows

    settings = BenchSettings(models=["m"], batches=(1, 8), devices=("cuda",))
    entry = Entry("eager", threads=2)

    def on_gpu(tf32: bool) -> Round:
        times = {b: BatchTimes(times_ns=(1_000_000,) * 20, faults_per_call=0.0) for b in (1, 8)}
        return Round(JobResult("ok", batches=times, tf32=tf32), OthersShare(0.0, 0.0, 1.0), 1.0)

    same = _Measured({entry: [on_gpu(True), on_gpu(True)]})
    rows = _series_rows("m", "cuda", [entry], same, settings)
    assert [(r.batch, r.tf32) for r in rows] == [(1, True), (8, True)]
    mixed = _Measured({entry: [on_gpu(True), on_gpu(False)]})
    assert [r.tf32 for r in _series_rows("m", "cuda", [entry], mixed, settings)] == [None, None]
