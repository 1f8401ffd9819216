"""``zoo bench --plot``: one figure of a run, one panel per (model, device) and scenario.

- single-stream: latency per batch against batch size, p50 bars with p99 whiskers, one bar
  per runtime (a black edge on the fastest at that batch size), log scale;
- offline: the best samples/s of each split of sessions x threads, a bar per runtime;
- server: latency per request (solid p99, dashed p50) against the offered QPS of each rate the
  search tried, for each runtime's best split, with the latency bound dotted.

One colour per runtime in every panel, and one legend for the figure. Drawn on a Figure of its
own (no pyplot: the global backend and figure list stay untouched); only ``--plot`` pays for
matplotlib, imported here when a figure is drawn.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from zoo.bench.outputs import write_output
from zoo.bench.results import OFFLINE, SERVER, SINGLE_STREAM, BenchRun, Row
from zoo.errors import UsageError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["figure_of", "plot_run"]

Key = tuple[str, str]
Panel = Callable[["Axes", Key, list[Row], dict[str, str]], set[str]]


def plot_run(run: BenchRun, path: str | Path) -> Path:
    """Write :func:`figure_of` ``run`` to ``path`` as a PNG (atomically; through, to a FIFO)."""
    fig = figure_of(run)
    path = Path(path)
    write_output(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    return path


def figure_of(run: BenchRun) -> Figure:
    """The figure of ``run``: its panels in the order single-stream, offline, server; a
    UsageError when no runtime produced a measurement."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = _panels(run)
    if not panels:
        raise UsageError("nothing to plot: no runtime produced a measurement")
    columns = min(3, len(panels))
    lines = (len(panels) + columns - 1) // columns
    fig = Figure(figsize=(5.5 * columns, 4 * lines))
    FigureCanvasAgg(fig)
    axes = fig.subplots(lines, columns, squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    palette = list(dict.fromkeys(r.label for r in run.rows))
    colors = {name: f"C{i % 10}" for i, name in enumerate(palette)}
    plotted: set[str] = set()
    for ax, (draw, key, rows) in zip(axes.flat, panels, strict=False):
        plotted |= draw(ax, key, rows, colors)
    _title_and_legend(fig, run, [n for n in palette if n in plotted], colors, lines)
    return fig


def _panels(run: BenchRun) -> list[tuple[Panel, Key, list[Row]]]:
    """What to draw, panel by panel: single-stream rows, then offline rows with their points,
    then server rows with their searches, for each (model, device) that has them."""
    groups: dict[Key, list[Row]] = {}
    for row in run.rows:
        if row.status == "ok" and row.batch_latency_ms:
            groups.setdefault((row.model, row.device), []).append(row)
    kinds: list[tuple[Panel, Callable[[Row], bool]]] = [
        (_single_stream, lambda r: r.scenario == SINGLE_STREAM),
        (_offline, lambda r: r.scenario == OFFLINE and bool((r.detail or {}).get("points"))),
        (_server, lambda r: r.scenario == SERVER and bool((r.detail or {}).get("splits"))),
    ]
    panels = []
    for draw, wanted in kinds:
        for key, rows in groups.items():
            chosen = [r for r in rows if wanted(r)]
            if chosen:
                panels.append((draw, key, chosen))
    return panels


def _single_stream(ax: Axes, key: Key, rows: list[Row], colors: dict[str, str]) -> set[str]:
    batches = sorted({r.batch for r in rows})
    runtimes = list(dict.fromkeys(r.label for r in rows))
    width = 0.8 / len(runtimes)
    for i, runtime in enumerate(runtimes):
        cells = {r.batch: r for r in rows if r.label == runtime}
        xs, p50, p99, edges = [], [], [], []
        for j, batch in enumerate(batches):
            row = cells.get(batch)
            if row is None or row.batch_latency_ms is None:
                continue
            xs.append(j + (i - (len(runtimes) - 1) / 2) * width)
            p50.append(row.batch_latency_ms.p50)
            p99.append(row.batch_latency_ms.p99)
            edges.append("black" if row.recommended else colors[runtime])
        p50a, p99a = np.array(p50), np.array(p99)
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
    ax.set_ylabel("latency per batch, ms (bar p50, whisker p99)")
    ax.set_yscale("log")
    ax.set_title(f"{key[0]} on {key[1]}, single-stream")
    ax.grid(axis="y", alpha=0.3, which="both")
    return set(runtimes)


def _offline(ax: Axes, key: Key, rows: list[Row], colors: dict[str, str]) -> set[str]:
    points = [(row, p) for row in rows for p in (row.detail or {})["points"]]
    splits = list(dict.fromkeys(f"{p['sessions']}x{p['threads']}" for _, p in points))
    width = 0.8 / len(rows)
    for i, row in enumerate(rows):
        best: dict[str, float] = {}
        for p in (row.detail or {})["points"]:
            split = f"{p['sessions']}x{p['threads']}"
            best[split] = max(best.get(split, 0.0), float(p["samples_per_s"]))
        ax.bar(
            [j + (i - (len(rows) - 1) / 2) * width for j in range(len(splits))],
            [best.get(split, 0.0) for split in splits],
            width,
            color=colors[row.label],
        )
    ax.set_xticks(range(len(splits)), splits)
    ax.set_xlabel("sessions x threads per session")
    ax.set_ylabel("samples/s (best batch size)")
    ax.set_title(f"{key[0]} on {key[1]}, offline")
    ax.grid(axis="y", alpha=0.3)
    return {row.label for row in rows}


def _server(ax: Axes, key: Key, rows: list[Row], colors: dict[str, str]) -> set[str]:
    from matplotlib.ticker import NullFormatter

    bound = None
    for row in rows:
        detail: dict[str, Any] = row.detail or {}
        split = max(detail["splits"], key=lambda s: s["max_qps"])
        bound = detail.get("latency_bound_ms")
        levels = sorted(split["levels"], key=lambda level: level["offered_qps"])
        qps = [level["offered_qps"] for level in levels]
        color = colors[row.label]
        ax.plot(qps, [lv["latency_ms"]["p99"] for lv in levels], "o-", color=color, ms=3)
        ax.plot(qps, [lv["latency_ms"]["p50"] for lv in levels], "--", color=color, lw=1)
        chosen = [lv for lv in levels if lv["passed"] and lv["achieved_qps"] == split["max_qps"]]
        if chosen:
            ax.annotate(
                f"{split['sessions']}x{split['threads']}",
                (chosen[0]["offered_qps"], chosen[0]["latency_ms"]["p99"]),
                fontsize=7,
                color=color,
            )
    if bound is not None:
        ax.axhline(bound, color="black", lw=0.8, ls=":")
    ax.set_xlabel("offered QPS (Poisson rate of requests of one sample)")
    ax.set_ylabel("ms per request, queueing included\n(solid p99, dashed p50)", fontsize=9)
    rates = [
        lv["offered_qps"]
        for row in rows
        for split in (row.detail or {})["splits"]
        for lv in split["levels"]
    ]
    if rates and max(rates) > 10 * min(rates):  # log only across decades: else no ticks
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_yscale("log")
    ax.set_title(f"{key[0]} on {key[1]}, server (best split; dotted: the bound)", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    return {row.label for row in rows}


def _title_and_legend(
    fig: Figure, run: BenchRun, names: list[str], colors: dict[str, str], lines: int
) -> None:
    """The machine above the panels, and one legend for the figure: the colours are the same
    in every panel."""
    from matplotlib.patches import Patch

    env = run.environment
    fig.suptitle(
        f"zoo bench: {env.get('cpu')}, {env.get('threads')} threads, torch {env.get('torch')}"
        "\n(black edge: the fastest runtime at that batch size)",
        fontsize=9,
    )
    fig.legend(
        [Patch(color=colors[name]) for name in names],
        names,
        loc="upper center",
        ncol=min(len(names), 8),
        fontsize=8,
        bbox_to_anchor=(0.5, 1 - 0.3 / (4 * lines)),
        frameon=False,
    )
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.55 / (4 * lines)))
