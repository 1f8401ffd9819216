"""Reports of a benchmark run: the terminal table, the plot, and regressions against a baseline."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from zoo._table import table
from zoo.bench.results import OFFLINE, SERVER, SINGLE_STREAM, BenchRun, Row

__all__ = [
    "FAULTS_WORTH_A_NOTE",
    "PeerLoss",
    "Regression",
    "compare_runs",
    "peer_losses",
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
    measured = [
        r
        for r in run.rows
        if (r.model, r.device) == (model, device) and r.scenario == SINGLE_STREAM
    ]
    order = list(dict.fromkeys(r.label for r in measured))
    spread = _has_rounds(run)
    gated = _has_accuracy(run)
    for row in sorted(measured, key=lambda r: (r.batch, order.index(r.label))):
        if row.status != "ok" or row.batch_latency_ms is None:
            continue
        lat = row.batch_latency_ms
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
            _ms(row.ms_per_sample),
            f"{row.samples_per_s:,.0f}" if row.samples_per_s else "-",
            _speedup(row),
            (f"{row.gflops:.1f}{share}" if row.gflops is not None else "-"),
            _ms(row.cold_start_ms),
            f"{row.rss_growth_mb:.0f}" if row.rss_growth_mb is not None else "-",
        ]
        if gated:
            cells.append(_accuracy_cell(row))
        if _has_stability(run):
            cells.append(_stable_cell(row))
        rows.append(cells)
    return rows


def _speedup(row: Row) -> str:
    """The speed-up over the reference; ``?`` after it when either row is unstable."""
    if not row.speedup_vs_eager:
        return "-"
    return f"{row.speedup_vs_eager:.2f}x" + ("?" if row.speedup_stable is False else "")


def _stable_cell(row: Row) -> str:
    if row.stability is None:
        return "-"
    return "yes" if row.stability.stable else "NO"


def _has_stability(run: BenchRun) -> bool:
    return any(r.stability is not None for r in run.rows)


def unstable_notes(run: BenchRun, model: str, device: str) -> list[str]:
    """One line per unstable row, with why."""
    lines = []
    for row in run.rows:
        if (row.model, row.device) != (model, device) or row.stability is None:
            continue
        if not row.stability.stable:
            where = f"batch {row.batch}" if row.scenario == SINGLE_STREAM else row.scenario
            lines.append(f"  {row.label} {where}: unstable: {'; '.join(row.stability.reasons)}")
    return lines


def offline_rows(run: BenchRun, model: str, device: str) -> list[list[str]]:
    """The offline table's cells: each runtime's best samples/s, the batch size and thread
    split that gave it, and every split's best."""
    rows = []
    for row in run.rows:
        if (row.model, row.device, row.scenario) != (model, device, OFFLINE):
            continue
        if row.status != "ok" or row.batch_latency_ms is None:
            continue
        splits: dict[str, float] = {}
        for point in (row.detail or {}).get("points", []):
            split = f"{point['sessions']}x{point['threads']}"
            splits[split] = max(splits.get(split, 0.0), float(point["samples_per_s"]))
        rows.append(
            [
                ("* " if row.recommended else "  ") + row.label,
                f"{row.samples_per_s:,.0f}" if row.samples_per_s else "-",
                _speedup(row),
                str(row.batch),
                f"{row.sessions}x{row.threads}",
                _ms(row.batch_latency_ms.p50),
                _ms(row.ms_per_sample),
                ", ".join(f"{k} {v:,.0f}" for k, v in splits.items()),
                _stable_cell(row),
            ]
        )
    return rows


OFFLINE_HEADERS = [
    "runtime",
    "samples/s",
    "vs eager",
    "batch",
    "split",
    "p50 ms/batch",
    "ms/sample",
    "samples/s per split (sessions x threads)",
    "stable",
]


def server_rows(run: BenchRun, model: str, device: str) -> list[list[str]]:
    """The server table's cells: each runtime's highest QPS whose p99 kept under the bound,
    its split, the latency per request there, and every split's highest QPS."""
    rows = []
    for row in run.rows:
        if (row.model, row.device, row.scenario) != (model, device, SERVER):
            continue
        if row.status != "ok" or row.batch_latency_ms is None:
            continue
        splits = [
            f"{s['sessions']}x{s['threads']} {s['max_qps']:,.0f}"
            for s in (row.detail or {}).get("splits", [])
        ]
        lat = row.batch_latency_ms
        none = not row.samples_per_s
        rows.append(
            [
                ("* " if row.recommended else "  ") + row.label,
                "0 (none)" if none else f"{row.samples_per_s:,.0f}",
                _speedup(row),
                f"{row.sessions}x{row.threads}",
                "-" if none else _ms(lat.p50),
                "-" if none else _ms(lat.p90),
                "-" if none else _ms(lat.p99),
                ", ".join(splits),
                _stable_cell(row),
            ]
        )
    return rows


SERVER_HEADERS = [
    "runtime",
    "max QPS",
    "vs eager",
    "split",
    "p50 ms/request",
    "p90",
    "p99",
    "max QPS per split (sessions x threads)",
    "stable",
]


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
            label = row.label if row.scenario == SINGLE_STREAM else f"{row.label} {row.scenario}"
            reasons.setdefault(label, f"{row.status}: {row.reason}")
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
    #: What the runtime runs that may explain it (its ``peer_note``).
    why: str = ""

    def describe(self) -> str:
        return (
            f"{self.model} {self.device} batch {self.batch}: {self.runtime} p50 "
            f"{_ms(self.zoo_ms)} ms vs {self.peer} {_ms(self.peer_ms)} ms "
            f"({self.zoo_ms / self.peer_ms - 1:+.0%}, noise {self.noise:.0%})"
            + (f"; {self.why}" if self.why else "")
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
    ok = {
        r.key: r
        for r in run.rows
        if r.status == "ok" and r.batch_latency_ms is not None and r.scenario == SINGLE_STREAM
    }
    losses = []
    for (model, runtime, device, batch, precision, scenario), row in ok.items():
        peer_name = run.peers.get(runtime)
        peer = ok.get((model, peer_name, device, batch, precision, scenario)) if peer_name else None
        if peer_name is None or peer is None:
            continue
        if row.stable is False or peer.stable is False:
            continue  # a loss between disturbed figures is not the runtime's
        assert row.batch_latency_ms is not None and peer.batch_latency_ms is not None
        noise = max(NOISE_FLOOR, round_noise(row), round_noise(peer))
        if row.batch_latency_ms.p50 > peer.batch_latency_ms.p50 * (1 + noise):
            losses.append(
                PeerLoss(
                    model,
                    device,
                    batch,
                    row.batch_latency_ms.p50,
                    peer.batch_latency_ms.p50,
                    noise,
                    runtime=runtime,
                    peer=peer_name,
                    why=run.peer_notes.get(runtime, ""),
                )
            )
    return losses


HEADERS = [
    "batch",
    "runtime",
    "p50 ms/batch",
    "p90",
    "p99",
    "mean",
    "std",
    "min",
    "ms/sample",
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
    if _has_stability(run):
        columns.append("stable")
    if not _has_rounds(run):
        return columns
    return [*columns[:3], "spread", *columns[3:]]


def print_table(run: BenchRun, file: Any = None) -> None:
    """One table per (model, device); ``*`` marks the fastest runtime at each batch size."""

    def say(line: str = "") -> None:
        print(line, file=file)

    env = run.environment
    say(
        f"{env.get('cpu')} | {env.get('threads')} threads | torch {env.get('torch')} | "
        f"onnxruntime {env.get('onnxruntime')}"
        + (f" | {env['gpu']} (driver {env.get('gpu_driver')})" if env.get("gpu") else "")
    )
    if env.get("cpu_flags"):
        say(f"cpu flags: {' '.join(env['cpu_flags'])}")
    ceilings = ", ".join(
        f"{d} {g:.0f} GFLOP/s"
        + (f" ({run.ceiling_detail[d]['source']})" if d in run.ceiling_detail else "")
        for d, g in run.ceiling_gflops.items()
    )
    if ceilings:
        say(f"fp32 matmul ceiling: {ceilings}")
    for device, by_precision in run.precision_ceilings.items():
        for precision, gflops in by_precision.items():
            unit = "GOP/s" if precision == "int8" else "GFLOP/s"
            say(f"{precision} matmul ceiling: {device} {gflops:.0f} {unit}")
    tf32 = {r.tf32 for r in run.rows if r.device == "cuda" and r.tf32 is not None}
    if tf32:
        say(
            "cuda TF32: "
            + {
                frozenset({False}): "off (fp32 convolutions and matrix products are fp32)",
                frozenset({True}): "on (--tf32: fp32 convolutions and matrix products in TF32)",
            }.get(frozenset(tf32), "on in some rows, off in others (each row's tf32 says)")
        )
    for (model, device), rows in _groups(run).items():
        flops = run.flops_per_sample.get(model)
        title = f"{model} on {device}" + (
            f" ({flops / 1e6:,.1f} MFLOPs per sample)" if flops else ""
        )
        scenarios = dict.fromkeys(r.scenario for r in rows)
        if SINGLE_STREAM in scenarios:
            _print_cells(say, f"{title}, single-stream", headers(run), 1,
                         summary_rows(run, model, device))  # fmt: skip
        if OFFLINE in scenarios:
            columns = [_vs(run, h) for h in OFFLINE_HEADERS]
            _print_cells(say, f"{title}, offline", columns, 0,
                         offline_rows(run, model, device))  # fmt: skip
        if SERVER in scenarios:
            bound = next(
                ((r.detail or {}).get("latency_bound_ms") for r in rows if r.scenario == SERVER),
                None,
            )
            columns = [_vs(run, h) for h in SERVER_HEADERS]
            if bound is not None:
                columns[1] = f"max QPS (p99 <= {bound:g} ms)"
            _print_cells(say, f"{title}, server", columns, 0,
                         server_rows(run, model, device))  # fmt: skip
        for runtime, why in not_measured(run, model, device).items():
            say(f"  {runtime}: {why}")
        for note in fault_notes(run, model, device):
            say(note)
        for note in unstable_notes(run, model, device):
            say(note)
    say(
        "* the fastest runtime measured at that batch size (single-stream: lowest p50; "
        "offline, server: most samples/s; a reduced-precision artifact only if it passed its "
        "accuracy gate)"
    )
    say(
        "ms/batch: per call of one batch; ms/sample: that over the batch size; ms/request: "
        "one sample from its arrival, queueing included; samples/s and QPS count samples"
    )
    if _has_rounds(run):
        say("spread: (max - min) / median of the p50s of the rounds")
    if _has_stability(run):
        say(
            "stable: the best two quiet rounds agree (docs/benchmarks.md: Stability); "
            "? after a speed-up: one of its two rows is unstable, do not trust it"
        )
    for loss in peer_losses(run):
        say(
            f"note: a runtime lost to its plain peer: {loss.describe()}",
        )


def _vs(run: BenchRun, header: str) -> str:
    return f"vs {run.reference}" if header == "vs eager" and run.reference else header


def _print_cells(
    say: Callable[[str], None], title: str, columns: list[str], left: int, rows: list[list[str]]
) -> None:
    """A table under its title: column ``left`` (the runtime) aligned left, figures right."""
    if not rows:
        return
    align = "".join("l" if i == left else "r" for i in range(len(columns)))
    say("")
    say(table(columns, rows, align=align, title=title, rules=True))


@dataclass
class Regression:
    """A cell slower than in the baseline beyond the threshold: a higher p50 in
    single-stream, fewer samples/s in offline and server."""

    model: str
    runtime: str
    device: str
    batch: int
    baseline_ms: float
    current_ms: float
    scenario: str = SINGLE_STREAM
    #: False when either run marked its row unstable: not counted as a regression.
    confirmed: bool = True

    @property
    def ratio(self) -> float:
        """How much worse: > 1 is slower (p50 up, or samples/s down)."""
        if self.scenario == SINGLE_STREAM:
            return self.current_ms / self.baseline_ms
        return self.baseline_ms / self.current_ms if self.current_ms > 0 else math.inf

    def describe(self) -> str:
        if self.scenario == SINGLE_STREAM:
            what = f"batch {self.batch}: p50 {_ms(self.baseline_ms)} -> {_ms(self.current_ms)} ms"
            change = self.ratio - 1
        else:
            what = f"{self.scenario}: {self.baseline_ms:,.0f} -> {self.current_ms:,.0f} samples/s"
            change = self.current_ms / self.baseline_ms - 1
        return f"{self.model} {self.runtime} {self.device} {what} ({change:+.0%})"


def compare_runs(
    current: BenchRun, baseline: BenchRun, threshold: float = 0.10
) -> tuple[list[Regression], int]:
    """Cells worse than the baseline's by more than ``threshold`` (p50 up in single-stream,
    samples/s down in offline and server), and how many cells the two runs share. A
    regression where either row is unstable comes back with ``confirmed`` False: the
    figures behind it were disturbed, so it is not counted as real."""
    old = {r.key: r for r in baseline.rows if r.status == "ok" and r.batch_latency_ms}
    regressions = []
    shared = 0
    for row in current.rows:
        before = old.get(row.key)
        if before is None or row.status != "ok" or row.batch_latency_ms is None:
            continue
        assert before.batch_latency_ms is not None
        shared += 1
        if row.scenario == SINGLE_STREAM:
            was, now = before.batch_latency_ms.p50, row.batch_latency_ms.p50
            worse = now > was * (1 + threshold)
        else:
            was, now = before.samples_per_s or 0.0, row.samples_per_s or 0.0
            worse = now * (1 + threshold) < was
        if worse:
            regressions.append(
                Regression(
                    row.model,
                    row.label,
                    row.device,
                    row.batch,
                    was,
                    now,
                    scenario=row.scenario,
                    confirmed=row.stable is not False and before.stable is not False,
                )
            )
    return regressions, shared
