"""The rows of one (model, device) from the rounds of its entries: single-stream per batch
size, offline (the best samples/s over batch sizes and thread splits), server (the highest QPS
under the latency bound), and the rows of entries that were skipped or failed."""

from __future__ import annotations

import numpy as np

from zoo.bench.results import OFFLINE, SERVER, SINGLE_STREAM, Latency, Row
from zoo.bench.settings import BenchSettings
from zoo.bench.stability import Entry, Round, assess, best_round, figures

__all__ = ["offline_row", "server_row", "single_stream_row", "unmeasured_rows"]


def single_stream_row(
    model: str,
    entry: Entry,
    device: str,
    batch: int,
    rounds: list[Round],
    settings: BenchSettings,
    stopped_by_time: bool,
) -> Row:
    """One single-stream row from every round of a runtime at one batch size."""
    medians = [float(np.median(r.result.batches[batch].times_ns)) / 1e6 for r in rounds]
    spread = None
    if len(rounds) > 1:
        spread = (max(medians) - min(medians)) / float(np.median(medians))
    best = best_round(rounds, lambda r: float(np.median(r.result.batches[batch].times_ns)))
    timed = best.result.batches[batch]
    latency = Latency.from_ns(timed.times_ns)
    tail = latency.p90 / latency.p50 if latency.p50 > 0 else None
    return Row(
        model,
        entry.runtime,
        device,
        batch,
        "ok",
        batch_latency_ms=latency,
        iterations=len(timed.times_ns),
        cold_start_ms=float(np.median([r.result.cold_start_ms for r in rounds])),
        peak_rss_mb=max(r.result.peak_rss_mb for r in rounds),
        rss_growth_mb=max(r.result.rss_growth_mb for r in rounds),
        cuda_max_allocated_mb=timed.cuda_max_allocated_mb,
        # Over every round: a runtime whose allocator churns in some processes and not in
        # others is flagged even when its fastest round was lucky.
        faults_per_call=float(np.median([r.result.batches[batch].faults_per_call for r in rounds])),
        round_spread=spread,
        round_p50_ms=medians,
        threads=entry.threads,
        stability=assess(entry, rounds, str(batch), settings, stopped_by_time, tail),
    )


def offline_row(
    model: str,
    device: str,
    entries: list[Entry],
    rounds: dict[Entry, list[Round]],
    settings: BenchSettings,
    stopped_by_time: bool,
) -> Row:
    """A runtime's best samples/s over batch sizes and thread splits; every point in
    ``detail``."""
    points = []
    for entry in entries:
        for batch in settings.batches:
            key = str(batch)
            best = best_round(rounds[entry], lambda r: figures(entry, r.result)[key])  # noqa: B023
            point = best.result.scenario[key]
            points.append((entry, batch, best, point))
    entry, batch, best, point = max(points, key=lambda p: p[3]["samples_per_s"])
    row = Row(
        model,
        entry.runtime,
        device,
        batch,
        "ok",
        batch_latency_ms=Latency(**point["batch_latency_ms"]),
        iterations=int(point["calls"]),
        samples_per_s=float(point["samples_per_s"]),
        ms_per_sample=1e3 / float(point["samples_per_s"]),
        cold_start_ms=best.result.cold_start_ms,
        peak_rss_mb=best.result.peak_rss_mb,
        rss_growth_mb=best.result.rss_growth_mb,
        scenario=OFFLINE,
        sessions=entry.sessions,
        threads=entry.threads,
        stability=assess(entry, rounds[entry], str(batch), settings, stopped_by_time, None),
        detail={
            "points": [
                {
                    "sessions": e.sessions,
                    "threads": e.threads,
                    "batch": b,
                    "samples_per_s": p["samples_per_s"],
                    "batch_p50_ms": p["batch_latency_ms"]["p50"],
                    "calls": p["calls"],
                }
                for e, b, _, p in points
            ]
        },
    )
    return row


def server_row(
    model: str,
    device: str,
    entries: list[Entry],
    rounds: dict[Entry, list[Round]],
    settings: BenchSettings,
    stopped_by_time: bool,
) -> Row:
    """A runtime's highest QPS under the latency bound over thread splits; every split's
    search (its latency-vs-QPS curve) in ``detail``."""
    searches = []
    for entry in entries:
        best = best_round(rounds[entry], lambda r: figures(entry, r.result)["max"])  # noqa: B023
        searches.append((entry, best, best.result.scenario))
    entry, best, search = max(searches, key=lambda s: (s[2]["best"] or {}).get("achieved_qps", 0.0))
    level = search["best"]
    latency = Latency(**(level or search["levels"][0])["latency_ms"])
    row = Row(
        model,
        entry.runtime,
        device,
        1,
        "ok",
        batch_latency_ms=latency,
        iterations=int((level or search["levels"][0])["requests"]),
        samples_per_s=float(level["achieved_qps"]) if level else 0.0,
        cold_start_ms=best.result.cold_start_ms,
        peak_rss_mb=best.result.peak_rss_mb,
        rss_growth_mb=best.result.rss_growth_mb,
        scenario=SERVER,
        sessions=entry.sessions,
        threads=entry.threads,
        stability=assess(
            entry, rounds[entry], "max", settings, stopped_by_time, None, search.get("note", "")
        ),
        detail={
            "latency_bound_ms": settings.latency_bound_ms,
            "splits": [
                {
                    "sessions": e.sessions,
                    "threads": e.threads,
                    "max_qps": (s["best"] or {}).get("achieved_qps", 0.0),
                    "alone_ms": s["alone_ms"],
                    "levels": s["levels"],
                    "repeat": s["repeat"],
                    "note": s["note"],
                    "skipped": s.get("skipped", ""),
                }
                for e, _, s in searches
            ],
        },
    )
    return row


def unmeasured_rows(
    model: str, entry: Entry, device: str, settings: BenchSettings, status: str, reason: str
) -> list[Row]:
    """The rows of an entry that was skipped (it cannot run here) or whose every worker
    failed: one per batch size (single-stream) or one (offline, server), saying why."""
    batches = settings.batches if entry.scenario == SINGLE_STREAM else (1,)
    rows = []
    for batch in batches:
        row = Row(model, entry.runtime, device, batch, status, reason=reason)
        row.precision, row.accuracy, row.scenario = entry.precision, entry.accuracy, entry.scenario
        rows.append(row)
    return rows
