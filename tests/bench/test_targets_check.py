"""benchmarks/targets.py: how a run is judged against the issue's performance targets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from benchmarks.targets import TARGETS, check_run
from zoo.bench.results import BenchRun, Latency, Row

ROOT = Path(__file__).resolve().parents[2]


def _row(model: str, runtime: str, batch: int, p50: float) -> Row:
    lat = Latency(p50, p50, p50, p50, 0.0, p50, p50)
    return Row(model, runtime, "cpu", batch, "ok", latency_ms=lat, iterations=10)


def _run(rows: list[Row], flops: dict[str, int], ceiling: float = 200.0) -> BenchRun:
    run = BenchRun(
        environment={},
        settings={},
        ceiling_gflops={"cpu": ceiling},
        flops_per_sample=flops,
        rows=rows,
        harness_overhead_ns=150.0,
        peers={"onnxruntime": "onnxruntime-default"},
    )
    run.finish()
    return run


def _by_what(run: BenchRun) -> dict[str, tuple[bool, str, bool]]:
    return {c.what: (c.passed, c.measured, c.ceiling_bound) for c in check_run(run)}


def test_speedup_targets_pass_and_fail_on_the_recommended_runtime() -> None:
    run = _run(
        [
            _row("lenet", "eager", 1, 1.0),
            _row("lenet", "torchscript", 1, 0.5),
            _row("lenet", "onnxruntime", 1, 0.15),  # 6.7x: the target is 5.5x
            _row("vae", "eager", 1, 1.0),
            _row("vae", "onnxruntime", 1, 0.2),  # 5x: the target is 7x
        ],
        flops={"lenet": 1000, "vae": 1000},  # far below the ceiling: nothing is bound by it
    )
    checks = _by_what(run)
    assert checks["lenet batch 1 (cpu): speed-up over eager >= 5.5x"][:2] == (
        True,
        "6.67x (onnxruntime)",
    )
    assert checks["vae batch 1 (cpu): speed-up over eager >= 7x"] == (
        False,
        "5.00x (onnxruntime)",
        False,
    )
    # Targets without cells in the run are not judged.
    assert not any(what.startswith("resnet18") for what in checks)


def test_a_missed_speedup_at_the_fp32_ceiling_is_reported_as_hardware_bound() -> None:
    # resnet18 at batch 1: 3.6 GFLOP per sample; ORT at 19.0 ms is 190 GFLOP/s, 95% of a
    # 200 GFLOP/s ceiling, and eager at 28.5 ms leaves 1.5x where the target asks 2x.
    run = _run(
        [_row("resnet18", "eager", 1, 28.5), _row("resnet18", "onnxruntime", 1, 19.0)],
        flops={"resnet18": 3_610_000_000},
    )
    passed, measured, bound = _by_what(run)["resnet18 batch 1 (cpu): speed-up over eager >= 2x"]
    assert passed and bound
    assert measured == (
        "1.50x (onnxruntime); ceiling-bound: onnxruntime runs at 95% of the fp32 ceiling, "
        "so at most 1.58x is possible on this CPU"
    )
    # Below 90% of the ceiling the same miss is zoo's to fix.
    slow = _run(
        [_row("resnet18", "eager", 1, 30.0), _row("resnet18", "onnxruntime", 1, 21.0)],
        flops={"resnet18": 3_610_000_000},
    )
    assert _by_what(slow)["resnet18 batch 1 (cpu): speed-up over eager >= 2x"][:1] == (False,)


def test_ceiling_share_and_run_wide_checks() -> None:
    run = _run(
        [
            _row("vgg_head", "eager", 8, 2000.0),
            _row("vgg_head", "onnxruntime", 8, 1300.0),
            _row("vgg_head", "onnxruntime-default", 8, 1200.0),  # zoo's session 8% slower
        ],
        flops={"vgg_head": 30_900_000_000},  # 8 x 30.9 GFLOP in 1.2 s: 206 of 250 GFLOP/s
        ceiling=250.0,
    )
    checks = _by_what(run)
    assert checks["vgg_head batch 8 (cpu): share of the fp32 ceiling >= 85%"][:2] == (
        False,
        "82% (onnxruntime-default)",
    )
    assert checks["the recommended runtime is the fastest measured (1 cell)"][0]
    peer = checks[
        "zoo's ORT session not slower than a plain InferenceSession beyond noise (1 cell)"
    ]
    assert not peer[0] and "+8%" in peer[1]
    assert checks["harness overhead per timed call < 5 us"] == (True, "0.15 us", False)


def test_every_target_names_a_registered_model() -> None:
    import zoo

    assert {t.model for t in TARGETS} <= set(zoo.list_models())


def test_the_script_checks_recorded_runs_and_exits_nonzero_on_a_miss(tmp_path: Path) -> None:
    run = _run(
        [_row("vae", "eager", 1, 1.0), _row("vae", "onnxruntime", 1, 0.2)],
        flops={"vae": 1000},
    )
    run.save(tmp_path / "run.json")
    script = [sys.executable, str(ROOT / "benchmarks" / "targets.py")]
    done = subprocess.run(
        [*script, "--summary", str(tmp_path / "run.json")], capture_output=True, text=True
    )
    assert done.returncode == 1, done.stderr
    assert "| vae batch 1 (cpu): speed-up over eager >= 7x | 5.00x (onnxruntime) | **no** |" in (
        done.stdout
    )
    assert "| `vae` | 1 | onnxruntime | 0.200 | 1.00 | 5.00x |" in done.stdout
    assert subprocess.run(script, capture_output=True).returncode == 2  # usage
