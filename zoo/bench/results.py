"""What a benchmark run produces, and its JSON form (schema ``zoo-bench/2``; ``zoo-bench/1``
files are still read, for ``--compare``).

One :class:`Row` per (model, runtime, precision, device, batch) in single-stream, and one per
(model, runtime, precision, device) in offline and server (each runtime's best). Rows of
runtimes that could not run carry ``status="skipped"`` (unavailable here) or ``"failed"`` and a
reason, never numbers.
The JSON document is described in ``docs/bench-schema.md`` and checked against
``zoo/bench/schema.json`` by the tests.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from zoo import _json as js
from zoo.bench.outputs import JsonDocument
from zoo.errors import UsageError, one_line

__all__ = ["SCENARIOS", "SCHEMA", "BenchRun", "Latency", "Row", "Stability", "load_run"]

SCHEMA = "zoo-bench/2"
#: The schemas ``load_run`` reads (``--compare`` takes a baseline of either).
READS = ("zoo-bench/1", SCHEMA)
SINGLE_STREAM, OFFLINE, SERVER = "single-stream", "offline", "server"
SCENARIOS = (SINGLE_STREAM, OFFLINE, SERVER)


@dataclass
class Latency:
    """Per-call latency statistics in milliseconds."""

    p50: float
    p90: float
    p99: float
    mean: float
    std: float
    min: float
    max: float

    @classmethod
    def from_ns(cls, times_ns: Any) -> Latency:
        ms = np.asarray(times_ns, dtype=np.float64) / 1e6
        p50, p90, p99 = np.percentile(ms, [50, 90, 99])
        return cls(
            p50=float(p50),
            p90=float(p90),
            p99=float(p99),
            mean=float(ms.mean()),
            std=float(ms.std(ddof=1)) if ms.size > 1 else 0.0,
            min=float(ms.min()),
            max=float(ms.max()),
        )


@dataclass
class Stability:
    """Whether a row's figures can be trusted: ``zoo bench`` measures new rounds, each in a
    fresh worker, until the fastest two quiet rounds agree within the run's tolerance; a row
    whose rounds never do, whose p90 is far above its p50, or that ran while other processes
    used the CPUs, is unstable, with the reasons."""

    stable: bool
    #: Why not, one short sentence each (empty when stable).
    reasons: list[str] = field(default_factory=list)
    #: Rounds measured, and how many of them were quiet (other processes used at most
    #: ``BUSY_SHARE`` of the CPUs).
    rounds: int = 0
    quiet_rounds: int = 0
    #: Per round: the share of all CPUs other processes used while its worker ran (steal
    #: included), the hypervisor's steal alone, and the 1-minute load average at its start.
    others_cpu_share: list[float] = field(default_factory=list)
    steal_share: list[float] = field(default_factory=list)
    load_avg: list[float] = field(default_factory=list)
    #: How far apart the two best quiet rounds are, relative to the best (None: fewer than
    #: two quiet rounds).
    agreement: float | None = None
    #: p90 / p50 of the reported round (single-stream; None in offline and server).
    tail_ratio: float | None = None


@dataclass
class Row:
    model: str
    runtime: str
    device: str
    batch: int
    #: ``ok``, ``skipped`` (the runtime is unavailable here) or ``failed``.
    status: str
    reason: str = ""
    #: Per call, that is per batch of ``batch`` samples (single-stream, offline), or per
    #: request of one sample from its arrival, queueing included (server), in milliseconds.
    batch_latency_ms: Latency | None = None
    #: Timed calls behind ``batch_latency_ms``: with several rounds, those of the fastest
    #: quiet round (lowest p50), the one least disturbed by the rest of the machine.
    iterations: int = 0
    #: Samples per second: ``batch / p50`` (single-stream); every session's samples over the
    #: wall time (offline); the achieved requests per second at the highest rate whose p99 kept
    #: under the latency bound (server).
    samples_per_s: float | None = None
    #: Milliseconds per sample: the p50 per batch divided by the batch size (single-stream).
    ms_per_sample: float | None = None
    #: Load (or session creation, or compilation) plus the first call, in a fresh process.
    cold_start_ms: float | None = None
    #: Peak resident set size of the process that ran this runtime (imports included), and
    #: how much its resident size grew from before loading to after the timed calls.
    peak_rss_mb: float | None = None
    rss_growth_mb: float | None = None
    #: ``torch.cuda.max_memory_allocated`` during this batch size's calls (CUDA only).
    cuda_max_allocated_mb: float | None = None
    #: Page faults of the worker process per timed call (median over rounds). Thousands per
    #: call mean the allocator hands memory back and maps it again on every call.
    faults_per_call: float | None = None
    #: The reference runtime's (eager's) p50 divided by this row's p50 (same model, device,
    #: batch and scenario); offline and server: this row's samples/s over the reference's.
    speedup_vs_eager: float | None = None
    #: Whether that speed-up may be trusted: both rows stable (None: no speed-up).
    speedup_stable: bool | None = None
    #: Model FLOPs per call divided by the p50 latency, and that as a share of the measured
    #: fp32 matmul ceiling of the device.
    gflops: float | None = None
    ceiling_share: float | None = None
    #: (max - min) / median of the per-round p50s, when there was more than one round.
    round_spread: float | None = None
    #: The p50 of each round, in the order they ran.
    round_p50_ms: list[float] | None = None
    recommended: bool = False
    #: The artifact's precision (``int8``: the runtime ran its format's int8 variant).
    precision: str = "fp32"
    #: What the artifact scored at export on held-out data (its accuracy gate): metric,
    #: value, eager's value and the drop; None where no gate ran.
    accuracy: dict[str, Any] | None = None
    #: ``single-stream`` (one call at a time), ``offline`` (the best samples/s over batch
    #: sizes and thread splits) or ``server`` (Poisson arrivals under a latency bound).
    scenario: str = "single-stream"
    #: Concurrent sessions, and the threads each uses (the thread split of this row).
    sessions: int = 1
    threads: int | None = None
    #: Whether the figures can be trusted, and why not (:class:`Stability`).
    stability: Stability | None = None
    #: offline: every (batch, split) measured; server: the search of every split.
    detail: dict[str, Any] | None = None
    #: On CUDA: whether fp32 convolutions and matrix products could run in TF32 (10-bit
    #: mantissas) while timed: off unless ``zoo bench --tf32``. None on the CPU.
    tf32: bool | None = None

    @property
    def key(self) -> tuple[Any, ...]:
        """What identifies the row across runs (``--compare``): the batch size only in
        single-stream (an offline row's batch is the one that was best)."""
        batch = self.batch if self.scenario == SINGLE_STREAM else None
        return (self.model, self.runtime, self.device, batch, self.precision, self.scenario)

    @property
    def cell(self) -> tuple[Any, ...]:
        """What this row competes in: its model, device, scenario, and in single-stream its
        batch size (offline and server rows are each runtime's best over batches)."""
        batch = self.batch if self.scenario == SINGLE_STREAM else None
        return (self.model, self.device, self.scenario, batch)

    @property
    def stable(self) -> bool | None:
        """None where nothing was measured, or where the run recorded no stability (v1)."""
        return None if self.stability is None else self.stability.stable

    @property
    def label(self) -> str:
        """The runtime, and the precision where it is not fp32: ``onnxruntime int8``."""
        return self.runtime if self.precision == "fp32" else f"{self.runtime} {self.precision}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Row:
        data = dict(data)
        latency = data.pop("batch_latency_ms", None)
        stability = data.pop("stability", None)
        return cls(
            **data,
            batch_latency_ms=Latency(**latency) if latency else None,
            stability=Stability(**stability) if stability else None,
        )

    @classmethod
    def from_v1(cls, data: dict[str, Any]) -> Row:
        """A row of a ``zoo-bench/1`` file: single-stream, its stability not recorded."""
        data = dict(data)
        data["batch_latency_ms"] = data.pop("latency_ms", None)
        data["samples_per_s"] = data.pop("throughput", None)
        row = cls.from_dict(data)
        if row.batch_latency_ms is not None and row.batch > 0:
            row.ms_per_sample = row.batch_latency_ms.p50 / row.batch
        return row


@dataclass
class BenchRun(JsonDocument):
    environment: dict[str, Any]
    settings: dict[str, Any]
    #: device -> measured fp32 matmul GFLOP/s with the run's thread count.
    ceiling_gflops: dict[str, float]
    #: model -> FLOPs per sample (2 per multiply-add) of the bare model.
    flops_per_sample: dict[str, int]
    rows: list[Row] = field(default_factory=list)
    #: Median time of one timed call of an empty function: the harness's own cost.
    harness_overhead_ns: float | None = None
    created: str = ""
    #: device -> {"source": the fastest matmul, "measured": {matmul: GFLOP/s}}.
    ceiling_detail: dict[str, Any] = field(default_factory=dict)
    #: The runtime every speed-up is measured against (the registry's reference runtime).
    reference: str | None = "eager"
    #: Runtime -> the plain runtime it must not be slower than beyond noise.
    peers: dict[str, str] = field(default_factory=dict)
    #: Runtime -> why it may be slower than its peer (said beside a loss).
    peer_notes: dict[str, str] = field(default_factory=dict)
    #: device -> precision (bf16, int8) -> measured matmul GFLOP/s (GOP/s) in it, beside the
    #: fp32 ceiling: each row's share is of its own precision's ceiling.
    precision_ceilings: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "created": self.created,
            "environment": self.environment,
            "settings": self.settings,
            "ceiling_gflops": self.ceiling_gflops,
            "ceiling_detail": self.ceiling_detail,
            "flops_per_sample": self.flops_per_sample,
            "harness_overhead_ns": self.harness_overhead_ns,
            "reference_runtime": self.reference,
            "peers": self.peers,
            "peer_notes": self.peer_notes,
            "precision_ceilings": self.precision_ceilings,
            "results": [r.to_dict() for r in self.rows],
            "recommendations": [
                {
                    "model": r.model,
                    "device": r.device,
                    "batch": r.batch,
                    "runtime": r.runtime,
                    "precision": r.precision,
                    "scenario": r.scenario,
                }
                for r in self.rows
                if r.recommended
            ],
        }

    def finish(self) -> None:
        """Fill samples/s, speed-ups (and whether they can be trusted), GFLOP/s, ceiling
        shares and the recommended runtime of each cell: per batch size in single-stream, per
        model and device in offline and server (their rows are each runtime's best)."""
        ok = [r for r in self.rows if r.status == "ok" and r.batch_latency_ms is not None]
        for row in ok:
            assert row.batch_latency_ms is not None
            if row.scenario == SINGLE_STREAM:
                p50_s = row.batch_latency_ms.p50 / 1e3
                row.samples_per_s = row.batch / p50_s if p50_s > 0 else None
                row.ms_per_sample = row.batch_latency_ms.p50 / row.batch
        reference = {
            row.cell: row for row in ok if row.runtime == self.reference and row.precision == "fp32"
        }
        best: dict[tuple[Any, ...], Row] = {}
        for row in ok:
            base = reference.get(row.cell)
            if base is not None and base.samples_per_s and row.samples_per_s:
                row.speedup_vs_eager = row.samples_per_s / base.samples_per_s
                row.speedup_stable = row.stable is not False and base.stable is not False
            flops = self.flops_per_sample.get(row.model)
            if flops and row.samples_per_s:
                row.gflops = flops * row.samples_per_s / 1e9
                ceiling = (
                    self.ceiling_gflops.get(row.device)
                    if row.precision == "fp32"
                    else self.precision_ceilings.get(row.device, {}).get(row.precision)
                )
                if ceiling:
                    row.ceiling_share = row.gflops / ceiling
            if row.precision != "fp32" and not (row.accuracy or {}).get("passed", False):
                continue  # never recommend what did not pass its accuracy gate
            if not row.samples_per_s:
                continue  # a server row no rate of which kept under the bound
            current = best.get(row.cell)
            if current is None or (row.samples_per_s or 0) > (current.samples_per_s or 0):
                best[row.cell] = row
        for row in self.rows:
            row.recommended = False
        for row in best.values():
            row.recommended = True


def load_run(path: str | Path) -> BenchRun:
    """Read a ``zoo bench --json`` file (schema ``zoo-bench/2``, or ``zoo-bench/1``: its rows
    are single-stream rows whose stability was not recorded)."""
    path = Path(path)
    try:
        data = json.loads(js.read_text(path, str(path), MAX_RUN_BYTES))
    except FileNotFoundError:
        raise UsageError(f"{path}: no such benchmark file") from None
    except OSError as exc:
        raise UsageError(f"{path}: not a zoo bench JSON file ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise UsageError(f"{path}: not a zoo bench JSON file ({exc})") from None
    if not isinstance(data, dict) or data.get("schema") not in READS:
        found = data.get("schema") if isinstance(data, dict) else None
        raise UsageError(
            f"{path}: schema is {found!r}, expected one of {', '.join(READS)} (a zoo bench --json)"
        )
    try:
        return _run_of(data)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        what = f"lacks {exc}" if isinstance(exc, KeyError) else one_line(exc)
        raise UsageError(f"{path}: not a zoo bench JSON file ({what})") from None


#: zoo bench files are a few MB at most; a baseline is not read beyond this.
MAX_RUN_BYTES = 256 * 2**20


def _run_of(data: dict[str, Any]) -> BenchRun:
    """The run ``data`` holds; KeyError/TypeError/ValueError for what --compare would trip on
    after the benchmark (a row without its fields, a p50 that is not a number)."""
    run = BenchRun(
        environment=data["environment"],
        settings=data["settings"],
        ceiling_gflops=data["ceiling_gflops"],
        ceiling_detail=data.get("ceiling_detail", {}),
        flops_per_sample=data["flops_per_sample"],
        rows=[
            Row.from_dict(r) if data["schema"] == SCHEMA else Row.from_v1(r)
            for r in data["results"]
        ],
        harness_overhead_ns=data.get("harness_overhead_ns"),
        created=data.get("created", ""),
        # What zoo 0.1 wrote without saying so.
        reference=data.get("reference_runtime", "eager"),
        peers=data.get("peers", {"onnxruntime": "onnxruntime-default"}),
        peer_notes=data.get("peer_notes", {}),
        precision_ceilings=data.get("precision_ceilings", {}),
    )
    for row in run.rows:
        hash(row.key)
        if row.scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {row.scenario!r:.40}")
        latency = row.batch_latency_ms
        if latency is not None and not math.isfinite(js.number(latency.p50, "p50")):
            raise ValueError(f"a p50 of {row.runtime!r:.40} is not finite")
        if row.samples_per_s is not None and not math.isfinite(
            js.number(row.samples_per_s, "samples_per_s")
        ):
            raise ValueError(f"the samples/s of {row.runtime!r:.40} is not finite")
    return run
