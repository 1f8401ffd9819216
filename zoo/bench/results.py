"""What a benchmark run produces, and its JSON form (schema ``zoo-bench/1``).

One :class:`Row` per (model, runtime, device, batch). Rows of runtimes that could not run
carry ``status="skipped"`` (unavailable here) or ``"failed"`` and a reason, never numbers.
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
from zoo.bench.outputs import write_output
from zoo.errors import UsageError

__all__ = ["SCHEMA", "BenchRun", "Latency", "Row", "load_run"]

SCHEMA = "zoo-bench/1"


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
class Row:
    model: str
    runtime: str
    device: str
    batch: int
    #: ``ok``, ``skipped`` (the runtime is unavailable here) or ``failed``.
    status: str
    reason: str = ""
    latency_ms: Latency | None = None
    #: Timed calls behind ``latency_ms``: with several rounds, those of the fastest round
    #: (lowest p50), the one least disturbed by the rest of the machine.
    iterations: int = 0
    #: Samples per second at the median latency: ``batch / p50``.
    throughput: float | None = None
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
    #: The reference runtime's (eager's) p50 divided by this row's p50 (same model, device
    #: and batch).
    speedup_vs_eager: float | None = None
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

    @property
    def key(self) -> tuple[str, str, str, int, str]:
        return (self.model, self.runtime, self.device, self.batch, self.precision)

    @property
    def label(self) -> str:
        """The runtime, and the precision where it is not fp32: ``onnxruntime int8``."""
        return self.runtime if self.precision == "fp32" else f"{self.runtime} {self.precision}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Row:
        data = dict(data)
        latency = data.pop("latency_ms", None)
        return cls(**data, latency_ms=Latency(**latency) if latency else None)


@dataclass
class BenchRun:
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
            "precision_ceilings": self.precision_ceilings,
            "results": [r.to_dict() for r in self.rows],
            "recommendations": [
                {
                    "model": r.model,
                    "device": r.device,
                    "batch": r.batch,
                    "runtime": r.runtime,
                    "precision": r.precision,
                }
                for r in self.rows
                if r.recommended
            ],
        }

    def save(self, path: str | Path) -> Path:
        """Write the JSON document (through, to a character device or FIFO; see outputs)."""
        text = json.dumps(self.to_dict(), indent=2, sort_keys=True, default=str) + "\n"
        write_output(Path(path), lambda tmp: tmp.write_text(text, encoding="utf-8"))
        return Path(path)

    def finish(self) -> None:
        """Fill speed-ups, GFLOP/s, ceiling shares and the recommended runtime of each cell."""
        ok = [r for r in self.rows if r.status == "ok" and r.latency_ms is not None]
        eager = {
            (r.model, r.device, r.batch): r
            for r in ok
            if r.runtime == self.reference and r.precision == "fp32"
        }
        best: dict[tuple[str, str, int], Row] = {}
        for row in ok:
            assert row.latency_ms is not None
            p50_s = row.latency_ms.p50 / 1e3
            row.throughput = row.batch / p50_s if p50_s > 0 else None
            base = eager.get((row.model, row.device, row.batch))
            if base is not None and base.latency_ms is not None and row.latency_ms.p50 > 0:
                row.speedup_vs_eager = base.latency_ms.p50 / row.latency_ms.p50
            flops = self.flops_per_sample.get(row.model)
            if flops and p50_s > 0:
                row.gflops = flops * row.batch / p50_s / 1e9
                ceiling = (
                    self.ceiling_gflops.get(row.device)
                    if row.precision == "fp32"
                    else self.precision_ceilings.get(row.device, {}).get(row.precision)
                )
                if ceiling:
                    row.ceiling_share = row.gflops / ceiling
            if row.precision != "fp32" and not (row.accuracy or {}).get("passed", False):
                continue  # never recommend what did not pass its accuracy gate
            cell = (row.model, row.device, row.batch)
            current = best.get(cell)
            if current is None or (
                current.latency_ms is not None and row.latency_ms.p50 < current.latency_ms.p50
            ):
                best[cell] = row
        for row in self.rows:
            row.recommended = False
        for row in best.values():
            row.recommended = True


def load_run(path: str | Path) -> BenchRun:
    """Read a ``zoo bench --json`` file (schema ``zoo-bench/1``)."""
    path = Path(path)
    try:
        data = json.loads(js.read_text(path, str(path), MAX_RUN_BYTES))
    except FileNotFoundError:
        raise UsageError(f"{path}: no such benchmark file") from None
    except OSError as exc:
        raise UsageError(f"{path}: not a zoo bench JSON file ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise UsageError(f"{path}: not a zoo bench JSON file ({exc})") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        found = data.get("schema") if isinstance(data, dict) else None
        raise UsageError(f"{path}: schema is {found!r}, expected {SCHEMA!r} (a zoo bench --json)")
    try:
        return _run_of(data)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        what = f"lacks {exc}" if isinstance(exc, KeyError) else f"{type(exc).__name__}: {exc}"
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
        rows=[Row.from_dict(r) for r in data["results"]],
        harness_overhead_ns=data.get("harness_overhead_ns"),
        created=data.get("created", ""),
        # What zoo 0.1 wrote without saying so.
        reference=data.get("reference_runtime", "eager"),
        peers=data.get("peers", {"onnxruntime": "onnxruntime-default"}),
        precision_ceilings=data.get("precision_ceilings", {}),
    )
    for row in run.rows:
        hash(row.key)
        if row.latency_ms is not None and not math.isfinite(js.number(row.latency_ms.p50, "p50")):
            raise ValueError(f"a p50 of {row.runtime!r:.40} is not finite")
    return run
