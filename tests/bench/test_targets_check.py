"""benchmarks/targets.py: how a run is judged against the issue's performance targets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks.targets import GPU_PEER_TARGETS, TARGETS, check_gpu_peer, check_run, markdown
from zoo.bench.results import BenchRun, Latency, Row, Stability

ROOT = Path(__file__).resolve().parents[2]


def _row(model: str, runtime: str, batch: int, p50: float) -> Row:
    lat = Latency(p50, p50, p50, p50, 0.0, p50, p50)
    return Row(model, runtime, "cpu", batch, "ok", batch_latency_ms=lat, iterations=10)


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
    fastest = "the recommended runtime is the fastest measured that passed its gates (1 cell)"
    assert checks[fastest][0]
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


def _precise(model: str, runtime: str, batch: int, p50: float, precision: str, drop: float | None):
    row = _row(model, runtime, batch, p50)
    row.precision = precision
    if drop is not None:
        row.accuracy = {"metric": "accuracy", "drop": drop, "passed": drop <= 0.5}
    return row


def _flagged(rows: list[Row], flags: list[str]) -> BenchRun:
    run = _run(rows, flops={})
    run.environment = {"cpu_flags": flags}
    return run


def _resnet18_int8(batch: int, int8_ms: float, drop: float = 0.1) -> list[Row]:
    return [
        _row("resnet18", "eager", batch, 20.0),
        _row("resnet18", "onnxruntime", batch, 10.0),
        _precise("resnet18", "onnxruntime", batch, int8_ms, "int8", drop),
    ]


def test_precision_targets_follow_the_cpu_flags_the_run_recorded() -> None:
    rows = [*_resnet18_int8(1, 4.0), *_resnet18_int8(16, 6.0)]  # 2.5x and 1.67x ORT fp32
    vnni = _by_what(_flagged(rows, ["avx2", "avx512_vnni"]))
    assert vnni["CPU class the targets apply to"][:2] == (True, "vnni (avx512_vnni)")
    over_ort = "best gated artifact over onnxruntime fp32"
    assert vnni[f"resnet18 batch 1 on VNNI without AMX: {over_ort} >= 2x"][:2] == (
        True,
        "2.50x (onnxruntime int8 4.00 ms, onnxruntime 10.00 ms)",
    )
    assert vnni[f"resnet18 batch 16 on VNNI without AMX: {over_ort} >= 2x"][0] is False
    assert not any("on AMX" in what for what in vnni)
    # The same figures on an AMX machine are judged by its targets: 4x ORT, 8x eager.
    amx = _by_what(_flagged(rows, ["avx512_vnni", "amx_int8", "amx_tile"]))
    assert amx[f"resnet18 batch 1 on AMX: {over_ort} >= 4x"][0] is False
    assert amx["resnet18 batch 1 on AMX: best gated artifact over eager fp32 >= 8x"][:2] == (
        False,
        "5.00x (onnxruntime int8 4.00 ms, eager 20.00 ms)",
    )
    assert not any("VNNI" in what for what in amx)


def test_an_artifact_that_failed_its_gate_counts_for_no_target() -> None:
    rows = [
        _row("lenet", "eager", 32, 2.0),
        _row("lenet", "onnxruntime", 32, 0.3),
        _precise("lenet", "onnxruntime", 32, 0.1, "int8", 3.0),  # fastest, but failed
        _precise("lenet", "pt2", 32, 0.25, "bf16", 0.2),
    ]
    checks = _by_what(_flagged(rows, []))
    ahead = "lenet batch 32: best gated artifact over the fastest fp32 runtime > 1x"
    assert checks[ahead][:2] == (True, "1.20x (pt2 bf16 0.250 ms, onnxruntime 0.300 ms)")
    within = "every gated artifact within 0.5 points of eager fp32 (1 row)"
    assert checks[within][:2] == (True, "largest drop 0.20")
    fastest = "the recommended runtime is the fastest measured that passed its gates (1 cell)"
    assert checks[fastest][0] is True
    # Without the bf16 artifact no gated reduced-precision artifact is ahead of fp32.
    slower = _by_what(_flagged(rows[:3], []))
    assert slower[ahead] == (False, "not measured (no gated artifact)", False)


def test_a_gated_artifact_past_the_allowed_drop_fails_the_accuracy_target() -> None:
    row = _precise("lenet", "onnxruntime", 32, 0.1, "int8", 0.4)
    row.accuracy = {"metric": "accuracy", "drop": 0.7, "passed": True}  # a gate run at --max-drop 1
    checks = _by_what(_flagged([_row("lenet", "eager", 32, 2.0), row], []))
    assert checks["every gated artifact within 0.5 points of eager fp32 (1 row)"][:2] == (
        False,
        "lenet onnxruntime int8 batch 32: 0.70",
    )


def test_the_fp32_ceiling_target_judges_the_fastest_fp32_row_not_a_faster_int8_one() -> None:
    rows = _resnet18_int8(16, 4.0)  # int8 recommended: its share would be of the int8 ceiling
    run = _run(rows, flops={"resnet18": 1_800_000}, ceiling=3.0)  # ORT fp32: 2.88 GFLOP/s
    run.precision_ceilings = {"cpu": {"int8": 100.0}}
    run.finish()
    assert next(r for r in run.rows if r.recommended).precision == "int8"
    checks = _by_what(run)
    assert checks["resnet18 batch 16 (cpu): share of the fp32 ceiling >= 85%"][:2] == (
        True,
        "96% (onnxruntime)",
    )


def _server(model: str, runtime: str, qps: float, bound: float, stable: bool = True) -> Row:
    lat = Latency(1.0, 2.0, 5.0, 1.0, 0.5, 0.5, 6.0)
    reasons = [] if stable else ["other processes used 50% of the CPUs"]
    return Row(model, runtime, "cpu", 1, "ok", batch_latency_ms=lat, samples_per_s=qps,
               scenario="server", sessions=2, threads=1,
               stability=Stability(stable, reasons, rounds=1, quiet_rounds=int(stable)),
               detail={"latency_bound_ms": bound, "splits": []})  # fmt: skip


def test_server_targets_judge_max_qps_at_the_target_bound() -> None:
    rows = [
        _server("lenet", "eager", 4000.0, 10.0),
        _server("lenet", "torchscript", 9000.0, 10.0),
        _server("lenet", "onnxruntime", 60000.0, 10.0),
        _server("resnet", "eager", 1000.0, 10.0),
        _server("resnet", "onnxruntime", 1500.0, 10.0),  # 1.5x: missed
        _server("resnet18", "eager", 50.0, 50.0),  # another bound: not the target's
    ]
    checks = _by_what(_run(rows, flops={}))
    ratio = "lenet server, p99 <= 10 ms: best runtime's max QPS over eager's >= 2x"
    assert checks[ratio][0] and checks[ratio][1].startswith("15.00x (onnxruntime 60,000 (2x1)")
    each = "server, p99 <= 10 ms: max QPS of eager, torchscript, onnxruntime, stable"
    recorded = checks[f"lenet {each}"]
    assert recorded[0] and "torchscript 9,000 (2x1)" in recorded[1]
    resnet = checks[f"resnet {each}"]
    assert not resnet[0] and resnet[1].endswith("missing: torchscript")
    assert not checks["resnet server, p99 <= 10 ms: best runtime's max QPS over eager's >= 2x"][0]
    assert not any(what.startswith("resnet18 server") for what in checks)
    # A ratio from an unstable row is not a target met.
    rows[0] = _server("lenet", "eager", 4000.0, 10.0, stable=False)
    checks = _by_what(_run(rows, flops={}))
    assert not checks[ratio][0] and checks[ratio][1].endswith("from an unstable row")


# -- the GPU peer targets (benchmarks/gpu_peer.py against zoo's CUDA rows) -------------------

PEER_VARIANTS = (
    "eager fp32",
    "compile reduce-overhead fp32",
    "compile reduce-overhead fp16 channels-last",
)
RESNET18_B1 = "resnet18 batch 1 (cuda): zoo's recommended row >= 1x the hand-written peer's best"
RESNET18_B1_ACCURACY = (
    "resnet18 batch 1 (cuda): zoo's recommended row within 0.5 points of fp32 accuracy"
)
RESNET18_B1_STRETCH = (
    "resnet18 batch 1 (cuda): zoo's recommended row >= 1.5x the hand-written peer's best "
    "(stretch, reported)"
)


def _gpu_row(
    model: str,
    runtime: str,
    batch: int,
    p50: float,
    precision: str = "fp32",
    accuracy: float | None = 0.94,
    passed: bool = True,
) -> Row:
    row = _row(model, runtime, batch, p50)
    row.device, row.precision = "cuda", precision
    if accuracy is not None:  # what the artifact scored at export; eager scored 94.0%
        drop = (0.94 - accuracy) * 100
        row.accuracy = {"metric": "accuracy", "higher_is_better": True, "value": accuracy,
                        "eager": 0.94, "drop": drop, "passed": passed}  # fmt: skip
    return row


def _gpu_run(rows: list[Row]) -> BenchRun:
    """zoo's eager (3 ms) and compile (2 ms) rows in fp32 at every GPU peer cell, and
    ``rows``; recommended as zoo bench recommends (the fastest row that passed its gates)."""
    base = [
        _gpu_row(model, runtime, batch, p50)
        for model in ("resnet18", "vgg_head")
        for batch in (1, 16)
        for runtime, p50 in (("eager", 3.0), ("compile", 2.0))
    ]
    return _run([*base, *rows], flops={})


def _peer(
    p50s: dict[tuple[str, int], tuple[float | None, ...]], device: str = "cuda"
) -> dict[str, Any]:
    """A gpu_peer.py document: p50 per variant in PEER_VARIANTS' order (None: failed)."""
    results = [
        {"model": model, "batch": batch, "variant": variant,
         "precision": "fp16" if "fp16" in variant else "fp32",
         "status": "failed" if p50 is None else "ok", "p50_ms": p50,
         "p90_ms": p50, "iterations": 200, "first_call_s": 1.0,
         "reason": "BackendCompilerFailed: boom" if p50 is None else ""}
        for (model, batch), figures in p50s.items()
        for variant, p50 in zip(PEER_VARIANTS, figures, strict=True)
    ]  # fmt: skip
    return {"schema": "zoo-gpu-peer/1", "device": device, "environment": {"gpu": None},
            "results": results}  # fmt: skip


def _every_cell(*figures: float | None) -> dict[tuple[str, int], tuple[float | None, ...]]:
    return {(model, batch): figures for model in ("resnet18", "vgg_head") for batch in (1, 16)}


def _peer_checks(run: BenchRun, peer: dict[str, Any]) -> dict[str, tuple[bool, str, bool | None]]:
    return {c.what: (c.passed, c.measured, c.stretch_met) for c in check_gpu_peer(run, peer)}


def test_gpu_peer_targets_met_with_the_stretch_reported_not_failing() -> None:
    checks = check_gpu_peer(_gpu_run([]), _peer(_every_cell(3.0, 2.5, None)))
    assert len(checks) == len(GPU_PEER_TARGETS) * 2 + 2  # speed, accuracy; two stretches
    assert all(c.passed for c in checks)
    by_what = {c.what: (c.passed, c.measured, c.stretch_met) for c in checks}
    assert by_what[RESNET18_B1] == (
        True,
        "1.25x (compile 2.00 ms, peer compile reduce-overhead fp32 2.50 ms)",
        None,
    )
    assert by_what[RESNET18_B1_ACCURACY] == (True, "0.00 points (compile 94.0%, fp32 94.0%)", None)
    # 1.25x is short of the 1.5x stretch: reported as missed, and the check still passes.
    assert by_what[RESNET18_B1_STRETCH][::2] == (True, False)
    table = markdown(checks)
    assert f"| {RESNET18_B1_STRETCH} | 1.25x " in table
    assert table.count("| no (stretch, not failing) |") == 2
    assert "**no**" not in table
    assert not any("batch 16" in c.what and "stretch" in c.what for c in checks)
    # Past 1.5x the stretch is met.
    fast = _peer_checks(_gpu_run([]), _peer(_every_cell(3.0, 3.2, 3.5)))
    assert fast[RESNET18_B1_STRETCH][::2] == (True, True)


def test_gpu_peer_target_missed_when_the_peer_is_faster_or_zoo_unstable() -> None:
    run = _gpu_run([])
    checks = _peer_checks(run, _peer(_every_cell(3.0, 2.2, 1.6)))
    assert checks[RESNET18_B1] == (
        False,
        "0.80x (compile 2.00 ms, peer compile reduce-overhead fp16 channels-last 1.60 ms)",
        None,
    )
    # A ratio met from an unstable row of zoo's is not a target met.
    for row in run.rows:
        row.stability = Stability(False, ["other processes used 60% of the CPUs"], rounds=2)
    unstable = _peer_checks(run, _peer(_every_cell(3.0, 2.5, None)))
    assert unstable[RESNET18_B1][0] is False
    assert unstable[RESNET18_B1][1].endswith("; from an unstable row")
    assert unstable[RESNET18_B1_STRETCH][::2] == (True, False)


def test_gpu_peer_accuracy_within_half_a_point_of_fp32() -> None:
    peer = _peer(_every_cell(3.0, 2.5, 2.2))
    fp16 = [_gpu_row("resnet18", "pt2", batch, 1.0, "fp16", 0.934) for batch in (1, 16)]
    checks = _peer_checks(_gpu_run(fp16), peer)
    assert checks[RESNET18_B1] == (
        True,
        "2.20x (pt2 fp16 1.00 ms, peer compile reduce-overhead fp16 channels-last 2.20 ms)",
        None,
    )
    assert checks[RESNET18_B1_ACCURACY] == (
        False,
        "0.60 points (pt2 fp16 93.4%, fp32 94.0%)",
        None,
    )
    # 0.4 points: within the bound (and exactly 0.5 is too).
    for value, shown in ((0.936, "0.40"), (0.935, "0.50")):
        fp16 = [_gpu_row("resnet18", "pt2", batch, 1.0, "fp16", value) for batch in (1, 16)]
        passed, measured, _ = _peer_checks(_gpu_run(fp16), peer)[RESNET18_B1_ACCURACY]
        assert passed and measured.startswith(f"{shown} points"), measured
    # The reference is the model's fp32 rows, not what the row's gate says eager scored.
    fp16 = [_gpu_row("resnet18", "pt2", batch, 1.0, "fp16", 0.934) for batch in (1, 16)]
    for row in fp16:
        assert row.accuracy is not None
        row.accuracy["eager"] = 0.93
    assert not _peer_checks(_gpu_run(fp16), peer)[RESNET18_B1_ACCURACY][0]


def test_gpu_peer_accuracy_not_recorded() -> None:
    peer = _peer(_every_cell(3.0, 2.5, 2.2))
    run = _gpu_run([])
    for row in run.rows:
        row.accuracy = None  # a bare model benched: no held-out data, no gate
    # fp32 in fp32 (eager and compile run the module itself): nothing to lose against fp32.
    checks = _peer_checks(run, peer)
    assert checks[RESNET18_B1_ACCURACY] == (
        True,
        "no drop: compile is fp32 (no accuracy recorded)",
        None,
    )
    assert checks[RESNET18_B1][0]  # the speed target is judged all the same
    # fp32 rows timed with TF32 on (zoo bench --tf32) may lose some: they must show it.
    for row in run.rows:
        row.tf32 = True
    missing = "compile records no accuracy: bench a trained checkpoint (--checkpoint)"
    assert _peer_checks(run, peer)[RESNET18_B1_ACCURACY] == (
        False,
        f"not measured ({missing})",
        None,
    )
    # A reduced-precision row whose gate passed without a figure (a NaN written as null).
    fp16 = [_gpu_row("resnet18", "pt2", batch, 1.0, "fp16", 0.94) for batch in (1, 16)]
    for row in fp16:
        assert row.accuracy is not None
        row.accuracy["value"] = None
    checks = _peer_checks(_gpu_run(fp16), peer)
    assert checks[RESNET18_B1_ACCURACY][:2] == (
        False,
        "not measured (pt2 fp16 records no accuracy: bench a trained checkpoint (--checkpoint))",
    )


def test_gpu_peer_unrecommended_or_ungated_reduced_precision_rows_do_not_count() -> None:
    peer = _peer(_every_cell(3.0, 2.5, 2.2))
    # Faster, but it failed its accuracy gate: zoo recommends compile fp32, which is judged.
    failed = [_gpu_row("resnet18", "pt2", b, 0.5, "fp16", 0.90, passed=False) for b in (1, 16)]
    run = _gpu_run(failed)
    assert _peer_checks(run, peer)[RESNET18_B1] == (  # the pt2 row would have made it 4.4x
        True,
        "1.10x (compile 2.00 ms, peer compile reduce-overhead fp16 channels-last 2.20 ms)",
        None,
    )
    # A reduced-precision row marked recommended without passing its gate is not judged.
    for row in run.rows:
        row.recommended = row.runtime == "pt2" if row.model == "resnet18" else row.recommended
    checks = _peer_checks(run, peer)
    why = "not measured (the recommended row, pt2 fp16, did not pass its accuracy gate)"
    assert checks[RESNET18_B1] == (False, why, None)
    assert checks[RESNET18_B1_ACCURACY] == (False, why, None)
    # A gated, faster row zoo did not recommend does not count either: the recommended does.
    gated = _gpu_run([_gpu_row("resnet18", "pt2", b, 0.5, "fp16", 0.94) for b in (1, 16)])
    for row in gated.rows:
        if row.model == "resnet18":
            row.recommended = row.runtime == "eager"
    assert _peer_checks(gated, peer)[RESNET18_B1][:2] == (
        False,
        "0.73x (eager 3.00 ms, peer compile reduce-overhead fp16 channels-last 2.20 ms)",
    )


def test_gpu_peer_missing_figures_are_not_measured_and_fail() -> None:
    run = _gpu_run([])
    cells = _every_cell(3.0, 2.5, 2.2)
    cells[("vgg_head", 16)] = (None, None, None)  # every variant failed
    del cells[("vgg_head", 1)]  # not run (--models, or a killed run)
    checks = _peer_checks(run, _peer(cells))
    vgg = "vgg_head batch {} (cuda): zoo's recommended row >= 1x the hand-written peer's best"
    assert checks[vgg.format(1)] == (
        False,
        "not measured (no peer figure of vgg_head at batch 1)",
        None,
    )
    failed = ", ".join(f"{variant} failed" for variant in PEER_VARIANTS)
    assert checks[vgg.format(16)][:2] == (
        False,
        f"not measured (no peer figure of vgg_head at batch 16 ({failed}))",
    )
    assert checks[RESNET18_B1][0]
    # A peer timed on the CPU says nothing about CUDA rows; an empty document crashes nothing.
    on_cpu = _peer_checks(run, _peer(_every_cell(3.0, 2.5, 2.2), device="cpu"))
    assert on_cpu[RESNET18_B1] == (
        False,
        "not measured (the peer ran on cpu, the target is on cuda)",
        None,
    )
    empty = {c.what: c for c in check_gpu_peer(run, {})}
    speed = [c for what, c in empty.items() if what.endswith("peer's best")]
    assert len(speed) == len(GPU_PEER_TARGETS) and not any(c.passed for c in speed)
    assert empty[RESNET18_B1_ACCURACY].passed  # zoo's own rows: judged without the peer
    # zoo's rows missing: a CPU run, or a cell zoo bench was not asked for.
    cpu_run = _run([_row("resnet18", "eager", 1, 20.0)], flops={})
    checks = _peer_checks(cpu_run, _peer(_every_cell(3.0, 2.5, 2.2)))
    assert checks[RESNET18_B1] == (
        False,
        "not measured (no cuda row of resnet18 at batch 1)",
        None,
    )
    assert checks[RESNET18_B1_ACCURACY][:2] == (
        False,
        "not measured (no cuda row of resnet18 at batch 1)",
    )
    # Figures from another GPU than the run's are not compared.
    run.environment = {"gpu": "NVIDIA H200"}
    other = _peer(_every_cell(3.0, 2.5, 2.2))
    other["environment"] = {"gpu": "NVIDIA H100 80GB HBM3"}
    assert _peer_checks(run, other)[RESNET18_B1][1] == (
        "not measured (the peer ran on NVIDIA H100 80GB HBM3, the run on NVIDIA H200)"
    )


def test_the_script_checks_a_run_against_the_peer(tmp_path: Path) -> None:
    _gpu_run([]).save(tmp_path / "run.json")
    (tmp_path / "peer.json").write_text(json.dumps(_peer(_every_cell(3.0, 1.5, None))))
    script = [sys.executable, str(ROOT / "benchmarks" / "targets.py"), str(tmp_path / "run.json")]
    done = subprocess.run(
        [*script, "--gpu-peer", str(tmp_path / "peer.json")], capture_output=True, text=True
    )
    assert done.returncode == 1, done.stderr  # 0.75x: missed
    assert f"{tmp_path / 'run.json'} against the hand-written peer {tmp_path / 'peer.json'}" in (
        done.stdout
    )
    assert (
        f"| {RESNET18_B1} | 0.75x (compile 2.00 ms, peer compile reduce-overhead fp32 1.50 ms) "
        "| **no** |" in done.stdout
    )
    (tmp_path / "peer.json").write_text(json.dumps(_peer(_every_cell(3.0, 2.5, None))))
    met = subprocess.run(
        [*script, f"--gpu-peer={tmp_path / 'peer.json'}"], capture_output=True, text=True
    )
    assert met.returncode == 0, met.stdout
    assert "| no (stretch, not failing) |" in met.stdout
    # Not a peer file: one line, exit 2.
    bad = subprocess.run(
        [*script, "--gpu-peer", str(tmp_path / "run.json")], capture_output=True, text=True
    )
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and "expected 'zoo-gpu-peer/1'" in bad.stderr
    assert subprocess.run([*script, "--gpu-peer"], capture_output=True).returncode == 2  # usage


def test_every_gpu_peer_target_names_a_registered_model() -> None:
    import zoo

    assert {t.model for t in GPU_PEER_TARGETS} <= set(zoo.list_models())
    assert all(t.device == "cuda" and t.at_least == 1.0 for t in GPU_PEER_TARGETS)
