"""The terminal table, the plot and --compare, on a hand-made run."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

import zoo
from tests.bench.test_timing_and_results import _row, _run
from zoo.bench.plot import figure_of, plot_run
from zoo.bench.report import compare_runs, peer_losses, print_table
from zoo.bench.results import Latency, Row, Stability


def test_table_marks_the_fastest_runtime_and_lists_skipped_ones_with_the_reason() -> None:
    out = io.StringIO()
    print_table(_run(), file=out)
    text = out.getvalue()
    lines = {line.split("│")[1].strip(): line for line in text.splitlines() if "│" in line}
    assert "* onnxruntime" in lines and "4.00x" in lines["* onnxruntime"]
    assert "  onnxruntime-trt: skipped: no CUDA device here" in text.splitlines()
    assert "fp32 matmul ceiling: cpu 100 GFLOP/s" in text
    assert "m on cpu (10.0 MFLOPs per sample)" in text


def test_table_shows_the_spread_between_rounds_when_there_were_several() -> None:
    run = _run()
    out = io.StringIO()
    print_table(run, file=out)
    assert "spread" not in out.getvalue()
    for row in run.rows:
        row.round_spread = 0.123 if row.status == "ok" else None
    out = io.StringIO()
    print_table(run, file=out)
    text = out.getvalue()
    header = next(line for line in text.splitlines() if "p50 ms" in line)
    assert [h.strip() for h in header.split("│")][:4] == [
        "batch",
        "runtime",
        "p50 ms/batch",
        "spread",
    ]
    eager = next(
        line for line in text.splitlines() if [c.strip() for c in line.split("│")][1:2] == ["eager"]
    )
    assert eager.split("│")[3].strip() == "12%"
    assert "spread: (max - min) / median of the p50s of the rounds" in text


def test_plot_writes_a_png(tmp_path: Path) -> None:
    path = plot_run(_run(), tmp_path / "plot.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    assert list(tmp_path.iterdir()) == [path]  # written atomically, no temporary left


def test_the_plot_draws_each_runtime_on_its_panel_with_its_axes() -> None:
    """The figure itself: one visible single-stream panel for model m on the CPU, its axes
    labelled, one bar series per measured runtime (not the skipped one) with a bar per batch
    size it ran, p50 heights, black edges on the fastest at each batch size, and one legend."""
    fig = figure_of(_run())
    (ax,) = [a for a in fig.axes if a.get_visible()]
    assert ax.get_title() == "m on cpu, single-stream"
    assert ax.get_xlabel() == "batch size" and ax.get_yscale() == "log"
    assert ax.get_ylabel() == "latency per batch, ms (bar p50, whisker p99)"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "8"]
    series = ax.containers
    bars = [c for c in series if c.__class__.__name__ == "BarContainer"]
    heights = [[round(b.get_height(), 3) for b in c.patches] for c in bars]
    assert heights == [[2.0, 4.0], [0.5, 5.0], [1.0]]  # eager, onnxruntime, torchscript
    black = [[b.get_edgecolor()[:3] == (0, 0, 0) for b in c.patches] for c in bars]
    assert black == [[False, True], [True, False], [False]]  # the fastest per batch size
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["eager", "onnxruntime", "torchscript"]
    assert "test, 2 threads" in fig.get_suptitle()


def test_plot_without_measurements_is_refused(tmp_path: Path) -> None:
    run = _run()
    run.rows = [r for r in run.rows if r.status != "ok"]
    with pytest.raises(zoo.UsageError, match="nothing to plot"):
        plot_run(run, tmp_path / "p.png")


def test_compare_flags_only_regressions_beyond_the_threshold() -> None:
    baseline, current = _run(), _run()
    for row in current.rows:
        if row.batch_latency_ms and (row.runtime, row.batch) == ("eager", 1):
            row.batch_latency_ms.p50 *= 1.5
        if row.batch_latency_ms and (row.runtime, row.batch) == ("torchscript", 1):
            row.batch_latency_ms.p50 *= 1.05  # within 10%
    current.rows.append(_row("compile", 1, 9.0))  # not in the baseline: not compared
    regressions, shared = compare_runs(current, baseline, threshold=0.10)
    assert shared == 5
    assert [(r.runtime, r.batch) for r in regressions] == [("eager", 1)]
    assert regressions[0].describe() == "m eager cpu batch 1: p50 2.00 -> 3.00 ms (+50%)"
    assert compare_runs(current, baseline, threshold=0.6)[0] == []


def test_table_notes_runtimes_that_fault_in_memory_on_every_call() -> None:
    run = _run()
    for row in run.rows:
        if row.status == "ok":
            row.faults_per_call = 3580.0 if (row.runtime, row.batch) == ("eager", 8) else 2.0
    out = io.StringIO()
    print_table(run, file=out)
    notes = [line for line in out.getvalue().splitlines() if "page faults per call" in line]
    assert len(notes) == 1
    assert notes[0].startswith("  eager: page faults per call: 3,580 at batch 8")


def test_zoo_ort_session_losing_to_the_plain_peer_beyond_noise_is_reported() -> None:
    run = _run()
    run.rows += [_row("onnxruntime-default", 1, 0.45), _row("onnxruntime-default", 8, 4.9)]
    run.finish()
    # batch 1: 0.5 vs 0.45 ms is +11%, beyond the 5% floor; batch 8: +2%, noise.
    losses = peer_losses(run)
    assert [(loss.batch, round(loss.noise, 2)) for loss in losses] == [(1, 0.05)]
    assert losses[0].describe() == (
        "m cpu batch 1: onnxruntime p50 0.500 ms vs onnxruntime-default 0.450 ms (+11%, noise 5%)"
    )
    # With rounds that differed by 20%, the same gap is noise.
    for row in run.rows:
        if row.runtime == "onnxruntime-default":
            row.round_spread = 0.2
    assert peer_losses(run) == []
    # With three rounds, the most disturbed one does not count: two rounds 2% apart and a
    # third 80% slower leave 2% of noise, and the 11% gap stands.
    for row in run.rows:
        if row.runtime == "onnxruntime-default":
            p50 = row.batch_latency_ms.p50  # type: ignore[union-attr]
            row.round_p50_ms, row.round_spread = [p50 * 1.02, p50, p50 * 1.8], 0.8
    assert [loss.batch for loss in peer_losses(run)] == [1]
    out = io.StringIO()
    print_table(run, file=out)
    assert "note: a runtime lost to its plain peer: m cpu batch 1: onnxruntime" in out.getvalue()


def _unstable(row: Row, why: str = "the best two quiet rounds' p50s differ by 30%") -> None:
    row.stability = Stability(stable=False, reasons=[why], rounds=5, quiet_rounds=2)


def test_an_unstable_row_says_why_and_marks_the_speed_ups_it_makes() -> None:
    run = _run()
    for row in run.rows:
        if row.status == "ok":
            row.stability = Stability(stable=True, rounds=2, quiet_rounds=2)
    _unstable(next(r for r in run.rows if (r.runtime, r.batch) == ("eager", 1)))
    run.finish()
    out = io.StringIO()
    print_table(run, file=out)
    text = out.getvalue()
    lines = {line.split("│")[1].strip(): line for line in text.splitlines() if "│" in line}
    # onnxruntime's 4x at batch 1 rests on eager's unstable p50: shown with a "?".
    assert "4.00x?" in lines["* onnxruntime"] and lines["* onnxruntime"].rstrip().endswith("yes")
    assert lines["eager"].rstrip().endswith("NO")
    assert (
        "  eager batch 1: unstable: the best two quiet rounds' p50s differ by 30%"
        in text.splitlines()
    )
    ort = next(r for r in run.rows if (r.runtime, r.batch) == ("onnxruntime", 1))
    assert ort.speedup_stable is False
    assert next(r for r in run.rows if (r.runtime, r.batch) == ("eager", 8)).speedup_stable


def test_compare_does_not_count_a_regression_of_an_unstable_row() -> None:
    baseline, current = _run(), _run()
    for row in current.rows:
        if row.batch_latency_ms and row.batch == 1:
            row.batch_latency_ms.p50 *= 3
            if row.runtime == "eager":
                _unstable(row)
    regressions, _ = compare_runs(current, baseline)
    confirmed = {r.runtime: r.confirmed for r in regressions}
    assert confirmed == {"eager": False, "onnxruntime": True, "torchscript": True}
    # A baseline row that was unstable does not confirm one either.
    _unstable(next(r for r in baseline.rows if (r.runtime, r.batch) == ("torchscript", 1)))
    confirmed = {r.runtime: r.confirmed for r in compare_runs(current, baseline)[0]}
    assert confirmed == {"eager": False, "onnxruntime": True, "torchscript": False}


def test_server_rows_compare_and_plot_their_qps(tmp_path: Path) -> None:
    def server(qps: float) -> Row:
        level = {
            "offered_qps": qps, "arrival_qps": qps, "achieved_qps": qps, "requests": 100,
            "passed": True, "latency_ms": {"p50": 1.0, "p99": 5.0},
        }  # fmt: skip
        split = {"sessions": 2, "threads": 1, "max_qps": qps, "levels": [level]}
        lat = Latency(1.0, 2.0, 5.0, 1.2, 0.5, 0.5, 6.0)
        return Row("m", "eager", "cpu", 1, "ok", batch_latency_ms=lat, samples_per_s=qps,
                   scenario="server", sessions=2, threads=1,
                   detail={"latency_bound_ms": 10.0, "splits": [split]})  # fmt: skip

    baseline, current = _run(), _run()
    baseline.rows.append(server(1000.0))
    current.rows.append(server(800.0))  # fewer requests served: a regression
    regressions, shared = compare_runs(current, baseline)
    assert shared == 6  # the five single-stream cells and the server row
    (regression,) = [r for r in regressions if r.scenario == "server"]
    assert regression.describe() == "m eager cpu server: 1,000 -> 800 samples/s (-20%)"
    out = io.StringIO()
    print_table(current, file=out)
    assert "m on cpu (10.0 MFLOPs per sample), server" in out.getvalue()
    assert "max QPS (p99 <= 10 ms)" in out.getvalue()
    path = plot_run(current, tmp_path / "plot.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
    single, served = [a for a in figure_of(current).axes if a.get_visible()]
    assert single.get_title() == "m on cpu, single-stream"
    assert served.get_title() == "m on cpu, server (best split; dotted: the bound)"
    p99, p50, bound = served.get_lines()  # the row's two curves, then the bound
    assert list(p99.get_ydata()) == [5.0] and list(p50.get_ydata()) == [1.0]
    assert list(bound.get_ydata()) == [10.0, 10.0]
    assert served.get_xlabel().startswith("offered QPS")
