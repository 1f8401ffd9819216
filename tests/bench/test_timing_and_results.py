"""The timing loop, the statistics, the derived figures, the JSON document and its schema."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest

import zoo
from zoo.bench.results import SCHEMA, BenchRun, Latency, Row, load_run
from zoo.bench.timing import TimingPolicy, time_calls, timed_calls, warm_up

SCHEMA_FILE = Path(zoo.__file__).parent / "bench" / "schema.json"


def test_time_calls_warms_up_then_stops_at_min_count_and_min_time() -> None:
    calls: list[int] = []
    syncs: list[int] = []
    policy = TimingPolicy(warmup_iters=7, warmup_time_s=0, min_iters=50, min_time_s=0)
    times = time_calls(lambda: calls.append(1), lambda: syncs.append(1), policy)
    assert len(times) == 50 and len(calls) == 57 and len(syncs) == 57  # sync after every call
    assert all(isinstance(t, int) and t > 0 for t in times)
    # A minimum time keeps it going past the minimum count.
    policy = TimingPolicy(warmup_iters=0, warmup_time_s=0, min_iters=1, min_time_s=0.05)
    times = time_calls(lambda: None, lambda: None, policy)
    assert len(times) > 1000 and sum(times) <= 0.06e9
    # ... and max_iters stops it whatever the time.
    policy = TimingPolicy(warmup_iters=0, warmup_time_s=0, min_iters=1, min_time_s=60, max_iters=10)
    assert len(time_calls(lambda: None, lambda: None, policy)) == 10


def test_warm_up_and_timed_calls_are_separable() -> None:
    """The worker counts page faults between the two, so they cover the timed calls only."""
    calls: list[int] = []
    policy = TimingPolicy(warmup_iters=3, warmup_time_s=0, min_iters=4, min_time_s=0)
    assert warm_up(lambda: calls.append(1), lambda: None, policy) == 3 and len(calls) == 3
    assert len(timed_calls(lambda: calls.append(1), lambda: None, policy)) == 4
    assert len(calls) == 7


def test_timing_policy_refuses_nonsense() -> None:
    with pytest.raises(zoo.UsageError, match="min_iters"):
        TimingPolicy(min_iters=0)


def test_latency_statistics_in_milliseconds() -> None:
    times_ns = np.arange(1, 101) * 1_000_000  # 1..100 ms
    lat = Latency.from_ns(times_ns)
    assert lat.min == 1 and lat.max == 100 and lat.mean == 50.5
    assert lat.p50 == pytest.approx(50.5) and lat.p90 == pytest.approx(90.1)
    assert lat.p99 == pytest.approx(99.01) and lat.std == pytest.approx(
        np.std(np.arange(1, 101), ddof=1)
    )


def _row(runtime: str, batch: int, p50: float, device: str = "cpu") -> Row:
    lat = Latency(p50, p50 * 1.1, p50 * 1.5, p50, 0.1, p50 * 0.9, p50 * 2)
    return Row("m", runtime, device, batch, "ok", batch_latency_ms=lat, iterations=100)


def _run() -> BenchRun:
    run = BenchRun(
        environment={"cpu": "test", "threads": 2},
        settings={},
        ceiling_gflops={"cpu": 100.0},
        flops_per_sample={"m": 10_000_000},
        peers={"onnxruntime": "onnxruntime-default"},
        rows=[
            _row("eager", 1, 2.0),
            _row("onnxruntime", 1, 0.5),
            _row("torchscript", 1, 1.0),
            _row("eager", 8, 4.0),
            _row("onnxruntime", 8, 5.0),
            Row("m", "onnxruntime-trt", "cpu", 1, "skipped", reason="no CUDA device here"),
        ],
    )
    run.finish()
    return run


def test_finish_derives_speedups_throughput_gflops_and_the_fastest_runtime() -> None:
    run = _run()
    by = {(r.runtime, r.batch): r for r in run.rows}
    assert by[("onnxruntime", 1)].speedup_vs_eager == 4.0
    assert by[("onnxruntime", 1)].samples_per_s == pytest.approx(2000.0)  # 1 sample / 0.5 ms
    # 10 MFLOPs per sample, batch 8, 4 ms: 20 GFLOP/s, 20% of a 100 GFLOP/s ceiling.
    assert by[("eager", 8)].gflops == pytest.approx(20.0)
    assert by[("eager", 8)].ceiling_share == pytest.approx(0.2)
    recommended = {(r.batch, r.runtime) for r in run.rows if r.recommended}
    assert recommended == {(1, "onnxruntime"), (8, "eager")}
    assert by[("onnxruntime-trt", 1)].speedup_vs_eager is None


def test_json_round_trips_and_matches_the_published_schema(tmp_path: Path) -> None:
    run = _run()
    run.harness_overhead_ns = 200.0
    run.settings = {
        "models": ["m"],
        "runtimes": ["eager"],
        "devices": ["cpu"],
        "batches": [1, 8],
        "threads": 2,
        "rounds": 1,
        "max_rounds": 1,
        "stability": 0.05,
        "scenarios": ["single-stream"],
        "policy": {},
        "raw": True,
    }
    run.environment.update(
        physical_cores=2, logical_cores=2, os="x", python="3", torch="t", onnxruntime="o", zoo="z"
    )
    path = run.save(tmp_path / "run.json")
    document = json.loads(path.read_text())
    jsonschema.validate(document, json.loads(SCHEMA_FILE.read_text()))
    assert document["schema"] == SCHEMA
    cell = {"model": "m", "device": "cpu", "precision": "fp32", "scenario": "single-stream"}
    assert document["recommendations"] == [
        {**cell, "batch": 1, "runtime": "onnxruntime"},
        {**cell, "batch": 8, "runtime": "eager"},
    ]
    again = load_run(path)
    assert [r.to_dict() for r in again.rows] == [r.to_dict() for r in run.rows]
    # The schema rejects an ok row without numbers.
    document["results"][0]["batch_latency_ms"] = None
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, json.loads(SCHEMA_FILE.read_text()))


def test_load_run_refuses_other_files(tmp_path: Path) -> None:
    (tmp_path / "other.json").write_text('{"benchmarks": []}')
    with pytest.raises(
        zoo.UsageError, match="schema is None, expected one of zoo-bench/1, zoo-bench/2"
    ):
        load_run(tmp_path / "other.json")
    with pytest.raises(zoo.UsageError, match="no such benchmark file"):
        load_run(tmp_path / "missing.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(zoo.UsageError, match="not a zoo bench JSON file"):
        load_run(tmp_path / "broken.json")


def test_offline_and_server_rows_compare_samples_per_s_within_their_scenario() -> None:
    run = _run()
    ss = {(r.runtime, r.batch): r for r in run.rows}
    lat = ss[("eager", 1)].batch_latency_ms
    for runtime, rate, batch in (("eager", 1000.0, 8), ("onnxruntime", 3000.0, 32)):
        run.rows.append(
            Row("m", runtime, "cpu", batch, "ok", batch_latency_ms=lat, samples_per_s=rate,
                scenario="offline")
        )  # fmt: skip
    run.rows.append(
        Row("m", "eager", "cpu", 1, "ok", batch_latency_ms=lat, samples_per_s=0.0,
            scenario="server")
    )  # fmt: skip
    run.finish()
    offline = {r.runtime: r for r in run.rows if r.scenario == "offline"}
    assert offline["onnxruntime"].speedup_vs_eager == 3.0  # samples/s over eager's, any batch
    assert offline["onnxruntime"].recommended and not offline["eager"].recommended
    # 10 MFLOPs per sample at 3000 samples/s.
    assert offline["onnxruntime"].gflops == pytest.approx(30.0)
    # single-stream figures are untouched by the other scenarios' rows
    assert ss[("onnxruntime", 1)].recommended and ss[("onnxruntime", 1)].speedup_vs_eager == 4.0
    server = next(r for r in run.rows if r.scenario == "server")
    assert not server.recommended and server.speedup_vs_eager is None  # nothing met the bound
