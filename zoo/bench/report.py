"""Reports of a benchmark run: the terminal table, the plot, and regressions against a baseline."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from zoo.bench.outputs import write_output
from zoo.bench.results import BenchRun, Row
from zoo.errors import UsageError

__all__ = [
    "FAULTS_WORTH_A_NOTE",
    "PeerLoss",
    "Regression",
    "compare_runs",
    "peer_losses",
    "plot_run",
    "print_table",
    "summary_rows",
]

#: Page faults per timed call from which the table adds a note: the allocator maps fresh
#: memory on every call (measured: BAM at batch 32 in TorchScript, about 6,000 faults per
#: call and 4.5x slower than with an allocator that keeps its memory).
FAULTS_WORTH_A_NOTE = 100
#: The least relative difference counted as more than noise between two p50s of one run.
NOISE_FLOOR = 0.05


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def _groups(run: BenchRun) -> dict[tuple[str, str], list[Row]]:
    groups: dict[tuple[str, str], list[Row]] = {}
    for row in run.rows:
        groups.setdefault((row.model, row.device), []).append(row)
    return groups


def summary_rows(run: BenchRun, model: str, device: str) -> list[list[str]]:
    """The cells of the table for one model on one device (``headers(run)`` names them)."""
    rows = []
    measured = [r for r in run.rows if (r.model, r.device) == (model, device)]
    order = list(dict.fromkeys(r.label for r in measured))
    spread = _has_rounds(run)
    gated = _has_accuracy(run)
    for row in sorted(measured, key=lambda r: (r.batch, order.index(r.label))):
        if row.status != "ok" or row.latency_ms is None:
            continue
        lat = row.latency_ms
        share = f" ({row.ceiling_share:.0%})" if row.ceiling_share is not None else ""
        cells = [
            str(row.batch),
            ("* " if row.recommended else "  ") + row.label,
            _ms(lat.p50),
        ]
        if spread:
            cells.append(f"{row.round_spread:.0%}" if row.round_spread is not None else "-")
        cells += [
            _ms(lat.p90),
            _ms(lat.p99),
            _ms(lat.mean),
            _ms(lat.std),
            _ms(lat.min),
            f"{row.throughput:,.0f}" if row.throughput else "-",
            f"{row.speedup_vs_eager:.2f}x" if row.speedup_vs_eager else "-",
            (f"{row.gflops:.1f}{share}" if row.gflops is not None else "-"),
            _ms(row.cold_start_ms),
            f"{row.rss_growth_mb:.0f}" if row.rss_growth_mb is not None else "-",
        ]
        if gated:
            cells.append(_accuracy_cell(row))
        rows.append(cells)
    return rows


def _accuracy_cell(row: Row) -> str:
    """What the artifact scored at export on held-out data, and its drop against eager."""
    gate = row.accuracy
    if not gate:
        return "-"
    value = gate.get("value")
    drop = gate.get("drop")
    if not isinstance(value, (int, float)) or not isinstance(drop, (int, float)):
        return "-"
    shown = f"{100 * value:.1f}%" if gate.get("higher_is_better", True) else f"{value:.4g}"
    return f"{shown} ({0.0 - drop:+.1f})"  # 0.0 - 0.0 is +0.0, where -0.0 would show


def _has_rounds(run: BenchRun) -> bool:
    return any(r.round_spread is not None for r in run.rows)


def _has_accuracy(run: BenchRun) -> bool:
    return any(r.accuracy for r in run.rows)


def not_measured(run: BenchRun, model: str, device: str) -> dict[str, str]:
    """Runtimes without numbers for this model and device, with the reason."""
    reasons: dict[str, str] = {}
    for row in run.rows:
        if (row.model, row.device) == (model, device) and row.status != "ok":
            reasons.setdefault(row.label, f"{row.status}: {row.reason}")
    return reasons


def fault_notes(run: BenchRun, model: str, device: str) -> list[str]:
    """One line per runtime whose timed calls fault in fresh memory on every call."""
    notes: dict[str, list[str]] = {}
    for row in run.rows:
        if (row.model, row.device) != (model, device) or row.status != "ok":
            continue
        if row.faults_per_call is not None and row.faults_per_call >= FAULTS_WORTH_A_NOTE:
            notes.setdefault(row.label, []).append(
                f"{row.faults_per_call:,.0f} at batch {row.batch}"
            )
    return [
        f"  {runtime}: page faults per call: {', '.join(cells)} (the allocator maps fresh "
        "memory on every call; docs/benchmarks.md: Page faults)"
        for runtime, cells in notes.items()
    ]


@dataclass
class PeerLoss:
    """A runtime slower than its plain peer (zoo's configured ORT session against a plain
    ``InferenceSession(path)``) beyond noise."""

    model: str
    device: str
    batch: int
    zoo_ms: float
    peer_ms: float
    noise: float
    runtime: str = "onnxruntime"
    peer: str = "onnxruntime-default"

    def describe(self) -> str:
        return (
            f"{self.model} {self.device} batch {self.batch}: {self.runtime} p50 "
            f"{_ms(self.zoo_ms)} ms vs {self.peer} {_ms(self.peer_ms)} ms "
            f"({self.zoo_ms / self.peer_ms - 1:+.0%}, noise {self.noise:.0%})"
        )


def round_noise(row: Row) -> float:
    """How far apart the two fastest rounds of a row are, relative to the faster: the noise
    left once the most disturbed rounds are dropped (0 with one round)."""
    rounds = sorted(row.round_p50_ms or [])
    if len(rounds) < 2:
        return row.round_spread or 0.0
    return (rounds[1] - rounds[0]) / rounds[0]


def peer_losses(run: BenchRun) -> list[PeerLoss]:
    """Cells where a runtime with a peer (``run.peers``: zoo's ORT session ``onnxruntime``
    and the plain ``onnxruntime-default``) is slower than that peer beyond noise: by more
    than the larger of the two rows' ``round_noise``, and at least ``NOISE_FLOOR``."""
    ok = {r.key: r for r in run.rows if r.status == "ok" and r.latency_ms is not None}
    losses = []
    for (model, runtime, device, batch, precision), row in ok.items():
        peer_name = run.peers.get(runtime)
        peer = ok.get((model, peer_name, device, batch, precision)) if peer_name else None
        if peer_name is None or peer is None:
            continue
        assert row.latency_ms is not None and peer.latency_ms is not None
        noise = max(NOISE_FLOOR, round_noise(row), round_noise(peer))
        if row.latency_ms.p50 > peer.latency_ms.p50 * (1 + noise):
            losses.append(
                PeerLoss(
                    model,
                    device,
                    batch,
                    row.latency_ms.p50,
                    peer.latency_ms.p50,
                    noise,
                    runtime=runtime,
                    peer=peer_name,
                )
            )
    return losses


HEADERS = [
    "batch",
    "runtime",
    "p50 ms",
    "p90",
    "p99",
    "mean",
    "std",
    "min",
    "samples/s",
    "vs eager",
    "GFLOP/s (of peak)",
    "cold ms",
    "+RSS MB",
]


def headers(run: BenchRun) -> list[str]:
    """The table's columns; with several rounds, the spread of their p50s after the p50."""
    columns = [f"vs {run.reference}" if h == "vs eager" and run.reference else h for h in HEADERS]
    if _has_accuracy(run):
        columns.append("accuracy (vs fp32)")
    if not _has_rounds(run):
        return columns
    return [*columns[:3], "spread", *columns[3:]]


def print_table(run: BenchRun, file: Any = None) -> None:
    """One table per (model, device); ``*`` marks the fastest runtime at each batch size."""
    console = Console(file=file)
    if not console.is_terminal:
        console.width = 200  # a pipe or a file: no terminal to fit
    env = run.environment
    console.print(
        f"{env.get('cpu')} | {env.get('threads')} threads | torch {env.get('torch')} | "
        f"onnxruntime {env.get('onnxruntime')}"
        + (f" | {env['gpu']} (driver {env.get('gpu_driver')})" if env.get("gpu") else "")
    )
    if env.get("cpu_flags"):
        console.print(f"cpu flags: {' '.join(env['cpu_flags'])}", highlight=False)
    ceilings = ", ".join(
        f"{d} {g:.0f} GFLOP/s"
        + (f" ({run.ceiling_detail[d]['source']})" if d in run.ceiling_detail else "")
        for d, g in run.ceiling_gflops.items()
    )
    if ceilings:
        console.print(f"fp32 matmul ceiling: {ceilings}")
    for device, by_precision in run.precision_ceilings.items():
        for precision, gflops in by_precision.items():
            unit = "GOP/s" if precision == "int8" else "GFLOP/s"
            console.print(f"{precision} matmul ceiling: {device} {gflops:.0f} {unit}")
    for (model, device), _ in _groups(run).items():
        flops = run.flops_per_sample.get(model)
        title = f"{model} on {device}" + (
            f" ({flops / 1e6:,.1f} MFLOPs per sample)" if flops else ""
        )
        table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
        for i, header in enumerate(headers(run)):
            table.add_column(header, justify="left" if i == 1 else "right", no_wrap=True)
        for cells in summary_rows(run, model, device):
            table.add_row(*cells)
        console.print(table)
        for runtime, why in not_measured(run, model, device).items():
            console.print(f"  {runtime}: {why}", markup=False, highlight=False)
        for note in fault_notes(run, model, device):
            console.print(note, markup=False, highlight=False)
    console.print(
        "* the fastest runtime measured at that batch size (lowest p50; a reduced-precision "
        "artifact only if it passed its accuracy gate)"
    )
    if _has_rounds(run):
        console.print("spread: (max - min) / median of the p50s of the rounds")
    for loss in peer_losses(run):
        console.print(
            f"note: a runtime lost to its plain peer: {loss.describe()}",
            markup=False,
            highlight=False,
        )


def plot_run(run: BenchRun, path: str | Path) -> Path:
    """PNG: latency vs batch size per runtime, p50 bars with p99 whiskers, one panel per
    (model, device), log scale. Drawn on a Figure of its own (no pyplot: the global backend
    and figure list stay untouched)."""
    # here: only --plot pays for matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    groups = _groups(run)
    panels = [
        (key, [r for r in rows if r.status == "ok" and r.latency_ms])
        for key, rows in groups.items()
    ]
    panels = [(key, rows) for key, rows in panels if rows]
    if not panels:
        raise UsageError("nothing to plot: no runtime produced a measurement")
    columns = min(3, len(panels))
    lines = (len(panels) + columns - 1) // columns
    fig = Figure(figsize=(5.5 * columns, 4 * lines))
    FigureCanvasAgg(fig)
    axes = fig.subplots(lines, columns, squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    # One colour per runtime across every panel, whichever runtimes a panel has.
    palette = list(dict.fromkeys(r.label for r in run.rows))
    colors = {name: f"C{i % 10}" for i, name in enumerate(palette)}
    plotted: set[str] = set()
    for ax, ((model, device), rows) in zip(axes.flat, panels, strict=False):
        batches = sorted({r.batch for r in rows})
        runtimes = list(dict.fromkeys(r.label for r in rows))
        width = 0.8 / len(runtimes)
        for i, runtime in enumerate(runtimes):
            cells = {r.batch: r for r in rows if r.label == runtime}
            xs, p50, p99, edges = [], [], [], []
            for j, batch in enumerate(batches):
                row = cells.get(batch)
                if row is None or row.latency_ms is None:
                    continue
                xs.append(j + (i - (len(runtimes) - 1) / 2) * width)
                p50.append(row.latency_ms.p50)
                p99.append(row.latency_ms.p99)
                edges.append("black" if row.recommended else colors[runtime])
            p50a, p99a = np.array(p50), np.array(p99)
            plotted.add(runtime)
            ax.bar(
                xs,
                p50a,
                width,
                color=colors[runtime],
                edgecolor=edges,
                linewidth=1.5,
                yerr=[np.zeros_like(p50a), np.maximum(p99a - p50a, 0)],
                capsize=2,
            )
        ax.set_xticks(range(len(batches)), [str(b) for b in batches])
        ax.set_xlabel("batch size")
        ax.set_ylabel("latency, ms (bar p50, whisker p99)")
        ax.set_yscale("log")
        ax.set_title(f"{model} on {device}")
        ax.grid(axis="y", alpha=0.3, which="both")
    env = run.environment
    fig.suptitle(
        f"zoo bench: {env.get('cpu')}, {env.get('threads')} threads, torch {env.get('torch')}"
        " (black edge: the fastest runtime at that batch size)",
        fontsize=9,
    )
    # One legend for the figure: the colours are the same in every panel.
    ordered = [name for name in palette if name in plotted]
    fig.legend(
        [Patch(color=colors[name]) for name in ordered],
        ordered,
        loc="upper center",
        ncol=min(len(ordered), 8),
        fontsize=8,
        bbox_to_anchor=(0.5, 1 - 0.3 / (4 * lines)),
        frameon=False,
    )
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.55 / (4 * lines)))
    path = Path(path)
    write_output(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    return path


@dataclass
class Regression:
    model: str
    runtime: str
    device: str
    batch: int
    baseline_ms: float
    current_ms: float

    @property
    def ratio(self) -> float:
        return self.current_ms / self.baseline_ms

    def describe(self) -> str:
        return (
            f"{self.model} {self.runtime} {self.device} batch {self.batch}: p50 "
            f"{_ms(self.baseline_ms)} -> {_ms(self.current_ms)} ms ({self.ratio - 1:+.0%})"
        )


def compare_runs(
    current: BenchRun, baseline: BenchRun, threshold: float = 0.10
) -> tuple[list[Regression], int]:
    """Cells whose p50 grew by more than ``threshold`` over the baseline's; and how many
    cells the two runs share."""
    old = {r.key: r for r in baseline.rows if r.status == "ok" and r.latency_ms}
    regressions = []
    shared = 0
    for row in current.rows:
        before = old.get(row.key)
        if before is None or row.status != "ok" or row.latency_ms is None:
            continue
        assert before.latency_ms is not None
        shared += 1
        if row.latency_ms.p50 > before.latency_ms.p50 * (1 + threshold):
            regressions.append(
                Regression(
                    row.model,
                    row.label,
                    row.device,
                    row.batch,
                    before.latency_ms.p50,
                    row.latency_ms.p50,
                )
            )
    return regressions, shared
