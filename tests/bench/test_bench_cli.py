"""zoo bench end to end: real workers, real runtimes, on LeNet (small enough for CI)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

import zoo
from zoo.bench import artifacts, runner, stability
from zoo.bench.processes import physical_cores
from zoo.bench.results import load_run
from zoo.cli import cli
from zoo.export.exporter import export_model
from zoo.export.manifest import sha256
from zoo.runtimes import cuda_present

ALL = "eager,torchscript,onnxruntime,onnxruntime-default,onnxruntime-trt,pt2,aoti,compile"
QUICK = ["--min-time", "0.05", "--min-iters", "10", "--warmup", "2"]


def bench(*args: str) -> object:
    return CliRunner().invoke(cli, ["bench", *args], catch_exceptions=False)


@pytest.fixture(scope="module")
def lenet_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, Path]:
    out = tmp_path_factory.mktemp("bench")
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("ZOO_CACHE_DIR", str(out / "cache"))
    try:
        result = bench(
            "lenet",
            "--runtime",
            ALL,
            "--batch",
            "1,3",
            "--rounds",
            "2",
            "--max-rounds",
            "2",
            *QUICK,
            "--json",
            str(out / "run.json"),
            "--plot",
            str(out / "run.png"),
        )
    finally:
        monkeypatch.undo()
    return result, out


def test_every_runtime_is_timed_or_says_why_not(lenet_run: tuple[object, Path]) -> None:
    result, out = lenet_run
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    run = load_run(out / "run.json")
    status = {(r.runtime, r.batch): r.status for r in run.rows}
    assert status == {
        (runtime, batch): "skipped" if runtime == "onnxruntime-trt" else "ok"
        for runtime in ALL.split(",")
        for batch in (1, 3)
    }, [(r.runtime, r.reason) for r in run.rows if r.status != "ok"]
    skipped = next(r for r in run.rows if r.status == "skipped")
    assert skipped.reason == "onnxruntime-trt does not run on cpu"
    for row in run.rows:
        if row.status != "ok":
            continue
        lat = row.batch_latency_ms
        assert lat is not None and 0 < lat.min <= lat.p50 <= lat.p90 <= lat.p99 <= lat.max
        assert row.iterations >= 10  # the fastest of two rounds of at least 10 calls
        assert row.round_spread is not None and row.cold_start_ms and row.cold_start_ms > 0
        assert row.round_p50_ms is not None and len(row.round_p50_ms) == 2
        low, high = sorted(row.round_p50_ms)
        assert row.round_spread == pytest.approx((high - low) / ((high + low) / 2))
        assert lat.p50 == pytest.approx(low)  # the statistics of the fastest round
        assert row.peak_rss_mb and row.peak_rss_mb > 100  # torch is in every worker
        assert row.faults_per_call is not None and row.faults_per_call >= 0
        assert row.samples_per_s == pytest.approx(row.batch / (lat.p50 / 1e3))
        assert row.gflops and 0 < row.ceiling_share < 1.5  # type: ignore[operator]
        if row.runtime == "eager":
            assert row.speedup_vs_eager == 1.0
    for batch in (1, 3):
        ok = [r for r in run.rows if r.batch == batch and r.status == "ok"]
        fastest = min(ok, key=lambda r: r.batch_latency_ms.p50)  # type: ignore[union-attr]
        assert [r.runtime for r in ok if r.recommended] == [fastest.runtime]


def test_the_run_records_its_environment_and_settings(lenet_run: tuple[object, Path]) -> None:
    _, out = lenet_run
    document = json.loads((out / "run.json").read_text())
    schema = json.loads((Path(zoo.__file__).parent / "bench" / "schema.json").read_text())
    jsonschema.validate(document, schema)
    env = document["environment"]
    assert env["threads"] == physical_cores() and env["torch"] and env["onnxruntime"]
    assert isinstance(env["allocator_env"], dict)  # MALLOC_* and LD_PRELOAD, when set
    assert document["ceiling_gflops"]["cpu"] > 1
    # The ceiling is the best of torch.mm and ORT's MatMul over a few sizes, and says which.
    detail = document["ceiling_detail"]["cpu"]
    assert {"torch.mm 512", "onnxruntime MatMul 2048"} <= set(detail["measured"])
    assert document["ceiling_gflops"]["cpu"] == max(detail["measured"].values())
    assert detail["measured"][detail["source"]] == document["ceiling_gflops"]["cpu"]
    assert document["flops_per_sample"]["lenet"] == 833_040  # zoo info lenet: 0.83 MFLOPs
    assert document["harness_overhead_ns"] > 0
    assert document["settings"]["batches"] == [1, 3] and document["settings"]["rounds"] == 2


def test_table_and_plot(lenet_run: tuple[object, Path]) -> None:
    result, out = lenet_run
    output = result.output  # type: ignore[attr-defined]
    assert (
        "lenet on cpu" in output
        and "* " in output
        and "onnxruntime-trt: skipped: onnxruntime-trt does not run on cpu" in output
    )
    assert (out / "run.png").read_bytes()[:4] == b"\x89PNG"


def test_compare_against_a_baseline(
    lenet_run: tuple[object, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, out = lenet_run
    baseline = json.loads((out / "run.json").read_text())
    # Against itself: nothing regressed. Against a baseline twice as fast: everything did.
    # (--artifacts reuses the cached export, so this is quick.) Every round counts as quiet
    # and any tail passes: what is tested here is the comparison, whatever else runs.
    monkeypatch.setattr(stability, "BUSY_SHARE", 1.0)
    cache = next((out / "cache" / "bench-exports").iterdir())
    args = ["lenet", "--runtime", "onnxruntime", "--batch", "1", *QUICK, "--artifacts", str(cache)]
    args += ["--rounds", "1", "--max-rounds", "1", "--tail-bound", "1000"]
    faster = json.loads(json.dumps(baseline))
    for row in faster["results"]:
        if row["batch_latency_ms"]:
            row["batch_latency_ms"]["p50"] /= 1000
            row["stability"].update(stable=True, reasons=[])  # whatever ran beside the fixture
    (tmp_path / "faster.json").write_text(json.dumps(faster))
    result = bench(*args, "--compare", str(tmp_path / "faster.json"))
    assert result.exit_code == 1  # type: ignore[attr-defined]
    assert "zoo: regression: lenet onnxruntime cpu batch 1: p50" in result.stderr  # type: ignore[attr-defined]
    # The same regression against a baseline whose row was unstable is not counted.
    for row in faster["results"]:
        if row["stability"]:
            row["stability"].update(stable=False, reasons=["rounds disagree"])
    (tmp_path / "unstable.json").write_text(json.dumps(faster))
    result = bench(*args, "--compare", str(tmp_path / "unstable.json"))
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    assert "zoo: not counted (an unstable row): lenet onnxruntime cpu batch 1" in (
        result.stderr  # type: ignore[attr-defined]
    )
    assert "1 more from unstable rows, not counted" in result.stdout  # type: ignore[attr-defined]
    slower = json.loads(json.dumps(baseline))
    for row in slower["results"]:
        if row["batch_latency_ms"]:
            row["batch_latency_ms"]["p50"] *= 1000
    (tmp_path / "slower.json").write_text(json.dumps(slower))
    result = bench(*args, "--compare", str(tmp_path / "slower.json"))
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]


def test_compare_still_reads_a_schema_1_baseline(
    lenet_run: tuple[object, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A zoo-bench/1 file (zoo 0.1's --json: latency_ms, throughput, no scenario or
    stability) is still a baseline: its rows count as single-stream rows."""
    _, out = lenet_run
    monkeypatch.setattr(stability, "BUSY_SHARE", 1.0)
    document = json.loads((out / "run.json").read_text())
    document["schema"] = "zoo-bench/1"
    for row in document["results"]:
        row["latency_ms"] = row.pop("batch_latency_ms")
        row["throughput"] = row.pop("samples_per_s")
        for new in ("ms_per_sample", "speedup_stable", "scenario", "sessions", "threads"):
            row.pop(new)
        row.pop("stability"), row.pop("detail")
        if row["latency_ms"]:
            row["latency_ms"]["p50"] /= 1000  # a baseline 1000x faster: a regression
    for entry in document["recommendations"]:
        entry.pop("scenario")
    (tmp_path / "v1.json").write_text(json.dumps(document))
    old = load_run(tmp_path / "v1.json")
    assert {r.scenario for r in old.rows} == {"single-stream"}
    assert all(r.stability is None for r in old.rows)
    cache = next((out / "cache" / "bench-exports").iterdir())
    result = bench(
        "lenet", "--runtime", "eager", "--batch", "3", *QUICK, "--artifacts", str(cache),
        "--rounds", "1", "--max-rounds", "1", "--tail-bound", "1000",
        "--compare", str(tmp_path / "v1.json"),
    )  # fmt: skip
    assert result.exit_code == 1  # type: ignore[attr-defined]
    assert "zoo: regression: lenet eager cpu batch 3: p50" in result.stderr  # type: ignore[attr-defined]


def test_a_runtime_that_fails_becomes_a_failed_row(tmp_path: Path) -> None:
    out = tmp_path / "broken"
    export_model("lenet", out, formats=("onnx",), raw=True)
    (out / "model.onnx").write_bytes(b"not an onnx model")
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["files"]["model.onnx"]["sha256"] = sha256(out / "model.onnx")
    manifest["files"]["model.onnx"]["bytes"] = (out / "model.onnx").stat().st_size
    (out / "manifest.json").write_text(json.dumps(manifest))
    result = bench(
        "lenet",
        "--runtime",
        "eager,onnxruntime,pt2",
        "--batch",
        "2",
        *QUICK,
        "--artifacts",
        str(out),
        "--json",
        str(tmp_path / "r.json"),
    )
    assert result.exit_code == 0, result.output
    rows = {r.runtime: r for r in load_run(tmp_path / "r.json").rows}
    assert rows["eager"].status == "ok"
    assert (
        rows["onnxruntime"].status == "failed"
        and f"{out / 'model.onnx'}: does not load in onnxruntime" in rows["onnxruntime"].reason
    )
    assert rows["pt2"].status == "skipped" and "no pt2 artifact" in rows["pt2"].reason


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["lenet", "--batch", "0"], "batch sizes must be positive integers, got [0]"),
        (["lenet", "--batch", "1,x"], "comma-separated values"),
        (
            ["lenet", "--runtime", "onnxruntim"],
            "unknown runtime 'onnxruntim'; did you mean 'onnxruntime'",
        ),
        (["lenett"], "unknown model 'lenett'; did you mean 'lenet'"),
        (["lenet", "--threads", "0"], "--threads must be at least 1"),
        (["lenet", "--device", "tpu"], "--device 'tpu': choose cpu or cuda"),
        (["lenet", "--compare", "missing.json"], "missing.json: no such benchmark file"),
        (["lenet", "--precision", "fp8"], "--precision fp8: choose from fp32, bf16, fp16, int8"),
    ],
)
def test_bad_input_is_a_clear_error(args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, ["bench", *args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.stderr


@pytest.mark.skipif(cuda_present(), reason="checks the message on machines without a GPU")
def test_cuda_without_a_gpu_is_a_clear_error() -> None:
    result = CliRunner().invoke(cli, ["bench", "lenet", "--device", "cuda"])
    assert result.exit_code == 2
    assert "--device cuda: no CUDA device here" in result.stderr


def test_missing_or_tampered_artifacts_are_clear_errors(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["bench", "lenet", "--artifacts", str(tmp_path / "none")])
    assert result.exit_code == 2 and "no export of 'lenet' there" in result.stderr
    out = tmp_path / "exp"
    export_model("lenet", out, formats=("onnx",), raw=True)
    shutil.copy(out / "manifest.json", tmp_path / "m.json")
    data = bytearray((out / "model.onnx").read_bytes())
    data[-1] ^= 0xFF  # the same size: only the hash can tell
    (out / "model.onnx").write_bytes(bytes(data))
    result = CliRunner().invoke(cli, ["bench", "lenet", "--artifacts", str(out)])
    assert result.exit_code == 1
    assert (
        "model.onnx: sha256 does not match the manifest" in result.stderr
        and str(out / "manifest.json") in result.stderr
    )
    with open(out / "model.onnx", "ab") as handle:  # another size: said before any hashing
        handle.write(b"\0")
    result = CliRunner().invoke(cli, ["bench", "lenet", "--artifacts", str(out)])
    assert result.exit_code == 1
    assert re.search(r"model\.onnx: [\d,]+ bytes, the manifest says [\d,]+ ", result.stderr)


@pytest.fixture(scope="module")
def precision_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """LeNet trained briefly on digits, timed in ONNX Runtime fp32 and int8 and .pt2 fp32
    and bf16, with the bf16 and int8 ceilings."""
    from zoo.train import train

    out = tmp_path_factory.mktemp("bench-precision")
    train("lenet", "digits", epochs=1, out=str(out / "run"), progress=False, tensorboard=False)
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("ZOO_CACHE_DIR", str(out / "cache"))
    try:
        result = bench(
            "lenet", "--checkpoint", str(out / "run"), "--runtime", "eager,onnxruntime,pt2",
            "--precision", "fp32,bf16,int8", "--batch", "1,4", *QUICK,
            "--json", str(out / "run.json"),
        )  # fmt: skip
    finally:
        monkeypatch.undo()
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    assert "onnxruntime int8" in result.output and "accuracy (vs fp32)" in result.output  # type: ignore[attr-defined]
    return out / "run.json"


def test_each_precision_variant_is_a_row_with_the_accuracy_it_scored(
    precision_run: Path,
) -> None:
    run = load_run(precision_run)
    rows = {(r.runtime, r.precision, r.batch): r for r in run.rows}
    assert set(rows) == {
        (runtime, precision, batch)
        for runtime, precision in [
            ("eager", "fp32"), ("onnxruntime", "fp32"), ("pt2", "fp32"),
            ("onnxruntime", "int8"), ("pt2", "bf16"),
        ]
        for batch in (1, 4)
    }  # fmt: skip
    for (runtime, precision, _), row in rows.items():
        assert row.status == "ok", row.reason
        if precision == "fp32":
            assert runtime == "eager" or row.accuracy is not None  # the checkpoint's gate
        else:
            assert row.accuracy is not None and row.accuracy["passed"] is True
            assert row.accuracy["precision"] == precision
            assert row.speedup_vs_eager is not None  # against eager fp32
    # each row's share is of its own precision's ceiling, measured in the same run
    assert set(run.precision_ceilings["cpu"]) == {"bf16", "int8"}
    int8 = rows[("onnxruntime", "int8", 4)]
    assert int8.gflops is not None and int8.ceiling_share == pytest.approx(
        int8.gflops / run.precision_ceilings["cpu"]["int8"]
    )
    data = json.loads(precision_run.read_text())
    assert all("precision" in r for r in data["recommendations"])


def test_a_precision_no_runtime_format_has_is_refused() -> None:
    result = CliRunner().invoke(
        cli, ["bench", "lenet", "--runtime", "torchscript", "--precision", "int8"]
    )
    assert result.exit_code == 2, result.output
    assert "none of the runtimes' formats (torchscript) has a variant in int8" in result.stderr


def test_offline_and_server_scenarios_over_thread_splits(
    lenet_run: tuple[object, Path], tmp_path: Path
) -> None:
    _, out = lenet_run
    cache = next((out / "cache" / "bench-exports").iterdir())
    result = bench(
        "lenet", "--runtime", "eager,onnxruntime", "--artifacts", str(cache), "--batch", "1,4",
        *QUICK, "--rounds", "1", "--max-rounds", "1", "--scenario", "single-stream,offline,server",
        "--splits", "1x2,2x1", "--latency-bound", "20", "--server-requests", "40",
        "--json", str(tmp_path / "s.json"), "--plot", str(tmp_path / "s.png"),
    )  # fmt: skip
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    document = json.loads((tmp_path / "s.json").read_text())
    schema = json.loads((Path(zoo.__file__).parent / "bench" / "schema.json").read_text())
    jsonschema.validate(document, schema)
    assert document["schema"] == "zoo-bench/2"
    run = load_run(tmp_path / "s.json")
    rows = {(r.runtime, r.scenario, r.batch if r.scenario == "single-stream" else None): r
            for r in run.rows}  # fmt: skip
    assert len(rows) == len(run.rows) == 2 * (2 + 1 + 1)
    for runtime in ("eager", "onnxruntime"):
        offline = rows[(runtime, "offline", None)]
        points = offline.detail["points"]  # type: ignore[index]
        assert {(p["sessions"], p["threads"], p["batch"]) for p in points} == {
            (s, t, b) for s, t in ((1, 2), (2, 1)) for b in (1, 4)
        }
        best = max(points, key=lambda p: p["samples_per_s"])
        assert offline.samples_per_s == best["samples_per_s"]
        assert (offline.sessions, offline.threads, offline.batch) == (
            best["sessions"], best["threads"], best["batch"],
        )  # fmt: skip
        server = rows[(runtime, "server", None)]
        assert server.batch == 1 and server.detail is not None
        assert server.detail["latency_bound_ms"] == 20.0
        splits = server.detail["splits"]
        assert [(s["sessions"], s["threads"]) for s in splits] == [(1, 2), (2, 1)]
        assert server.samples_per_s == max(s["max_qps"] for s in splits)
        if server.samples_per_s:  # p99 at the highest passing rate within the bound
            assert server.batch_latency_ms is not None
            assert server.batch_latency_ms.p99 <= 20.0
        for split in splits:
            if not split["levels"]:  # the documented rule, seen under load: no search at all
                assert split["note"].startswith("no rate can keep p99 under 20 ms: one request")
                assert split["max_qps"] == 0
                continue
            assert all("achieved_qps" in lv for lv in split["levels"])
        for row in (offline, server):
            assert row.stability is not None and row.stability.rounds >= 1
    # Every ratio comes from the same scenario: offline and server against eager's figure.
    assert rows[("eager", "offline", None)].speedup_vs_eager == 1.0
    ort = rows[("onnxruntime", "offline", None)]
    assert ort.speedup_vs_eager == pytest.approx(
        ort.samples_per_s / rows[("eager", "offline", None)].samples_per_s  # type: ignore[operator]
    )
    output = result.output  # type: ignore[attr-defined]
    assert "lenet on cpu (0.8 MFLOPs per sample), offline" in output
    assert "max QPS (p99 <= 20 ms)" in output and "p50 ms/request" in output
    assert "p50 ms/batch" in output and "ms/sample" in output
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"
    assert {r["scenario"] for r in document["recommendations"]} == {
        "single-stream", "offline", "server"
    }  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scenario", "batch"], "--scenario 'batch': choose from single-stream, offline, server"),
        (["--splits", "2by1"], "--splits: sessions x threads per session, like 2x1, got '2by1'"),
        (["--splits", "0x2"], "--splits 0x2: sessions and threads must be at least 1"),
        (["--splits", "100000x1"], "--splits 100000x1: at most 64 sessions"),
        (["--rounds", "3", "--max-rounds", "2"], "--max-rounds (2) must be at least --rounds (3)"),
        (["--latency-bound", "0"], "--latency-bound must be a positive number of milliseconds"),
        (["--tail-bound", "0.5"], "--tail-bound must be a finite ratio >= 1, got 0.5"),
        (["--server-requests", "0"], "--server-requests"),
    ],
)
def test_scenario_and_stability_options_are_checked_before_anything_runs(
    args: list[str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner, "_spawn", lambda *a, **k: pytest.fail("a worker ran"))
    monkeypatch.setattr(artifacts, "export_model", lambda *a, **k: pytest.fail("an export ran"))
    result = CliRunner().invoke(cli, ["bench", "lenet", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1
