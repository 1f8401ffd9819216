"""The stability rule of docs/benchmarks.md (Stability), on the rounds of one entry: rounds
run until the best two quiet rounds agree within ``--stability`` (``settled``), a row's figures
are those of its fastest quiet round (``best_round``), and ``assess`` says whether the row can be
trusted, with the reasons where not."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from zoo.bench.load import BUSY_SHARE, OthersShare
from zoo.bench.results import OFFLINE, SERVER, SINGLE_STREAM, Stability
from zoo.bench.settings import BenchSettings
from zoo.bench.worker import JobResult

__all__ = [
    "Entry",
    "Round",
    "agreement",
    "assess",
    "best_round",
    "figures",
    "least_rounds",
    "settled",
    "wanted_rounds",
]


@dataclass(frozen=True, eq=False)  # one per worker series: identity is its key
class Entry:
    """What one worker per round runs: a runtime on its format's artifact, or (``variant``)
    on a reduced-precision variant of that format, in one scenario with one thread split;
    its rows carry the precision and the accuracy the artifact scored at export."""

    runtime: str
    variant: str | None = None
    precision: str = "fp32"
    accuracy: dict[str, Any] | None = None
    #: Why it cannot run here (its rows are skipped), or None.
    why: str | None = None
    scenario: str = SINGLE_STREAM
    sessions: int = 1
    threads: int = 1
    #: Over the wire: the v2 server (``HOST:PORT``) and the model's name there; the sessions
    #: are its clients (``zoo.bench.wire``).
    endpoint: str | None = None
    endpoint_model: str | None = None

    @property
    def label(self) -> str:
        name = self.runtime if self.variant is None else f"{self.runtime} {self.precision}"
        if self.endpoint is not None:
            return f"{name} {self.scenario} over http://{self.endpoint} ({self.sessions} clients)"
        if self.scenario == SINGLE_STREAM:
            return name
        return f"{name} {self.scenario} {self.sessions}x{self.threads}"

    @property
    def series(self) -> tuple[str, str | None, str]:
        """The entries one row is made from (the thread splits of a runtime in a scenario)."""
        return (self.runtime, self.variant, self.scenario)


@dataclass
class Round:
    """One worker of an entry: what it measured and what the machine did meanwhile."""

    result: JobResult
    others: OthersShare
    load_avg: float

    @property
    def quiet(self) -> bool:
        return self.others.share <= BUSY_SHARE


def figures(entry: Entry, result: JobResult) -> dict[str, float]:
    """What the rounds of an entry must agree on, each lower-is-better: the p50 per batch
    (single-stream), seconds per sample per batch (offline), per max QPS (server)."""
    if entry.scenario == SINGLE_STREAM:
        return {str(b): float(np.median(t.times_ns)) for b, t in result.batches.items()}
    if entry.scenario == OFFLINE:
        return {b: 1.0 / max(p["samples_per_s"], 1e-12) for b, p in result.scenario.items()}
    best = result.scenario.get("best")
    return {"max": 1.0 / best["achieved_qps"] if best else math.inf}


def agreement(rounds: list[Round], entry: Entry, key: str) -> float | None:
    """How far apart the best two quiet rounds are on ``key``, relative to the best."""
    values = sorted(figures(entry, r.result)[key] for r in rounds if r.quiet)
    if len(values) < 2 or not math.isfinite(values[1]):
        return None
    return (values[1] - values[0]) / values[0] if values[0] > 0 else math.inf


def wanted_rounds(entry: Entry, settings: BenchSettings) -> int:
    """Quiet rounds that must agree: one for the server scenario (each worker measures its
    best rate twice) and with ``--max-rounds 1``, else two."""
    return 1 if entry.scenario == SERVER or settings.max_rounds == 1 else 2


def least_rounds(entry: Entry, settings: BenchSettings) -> int:
    """Rounds an entry runs even past ``--max-time``: one for server, else ``--rounds``."""
    return 1 if entry.scenario == SERVER else settings.rounds


def settled(entry: Entry, rounds: list[Round], settings: BenchSettings) -> bool:
    """Enough quiet rounds, and every figure of the best two within ``--stability``."""
    quiet = [r for r in rounds if r.quiet]
    if len(rounds) < least_rounds(entry, settings) or len(quiet) < wanted_rounds(entry, settings):
        return False
    if entry.scenario == SERVER:
        return any(not r.result.scenario.get("note") for r in quiet)
    if wanted_rounds(entry, settings) == 1:
        return True
    keys = figures(entry, rounds[0].result)
    return all(
        (gap := agreement(rounds, entry, key)) is not None and gap <= settings.stability
        for key in keys
    )


def best_round(rounds: list[Round], figure: Callable[[Round], float]) -> Round:
    """The round with the lowest ``figure`` among the quiet ones (all, if none was quiet):
    interference from outside only ever slows a process down (measured here: whole workers
    2.3x slower for tens of seconds), so the fastest quiet round is the runtime's own cost,
    as timeit takes the best of its repeats."""
    return min([r for r in rounds if r.quiet] or rounds, key=figure)


def assess(
    entry: Entry,
    rounds: list[Round],
    key: str,
    settings: BenchSettings,
    stopped_by_time: bool,
    tail_ratio: float | None,
    note: str = "",
) -> Stability:
    """The rule of docs/benchmarks.md (Stability): enough quiet rounds, the best two within
    ``--stability``, p90/p50 within ``--tail-bound``; the reasons where not."""
    reasons = []
    quiet = [r for r in rounds if r.quiet]
    wanted = wanted_rounds(entry, settings)
    if len(quiet) < wanted:
        worst = max(rounds, key=lambda r: r.others.share)
        reasons.append(
            f"other processes used {worst.others.share:.0%} of the CPUs (steal "
            f"{worst.others.steal:.0%}, load average {worst.load_avg:g}) during "
            f"{len(rounds) - len(quiet)} of {len(rounds)} rounds"
        )
    gap = agreement(rounds, entry, key) if wanted > 1 else None
    if gap is not None and gap > settings.stability:
        what = "p50s" if entry.scenario == SINGLE_STREAM else "samples/s"
        reasons.append(
            f"the best two quiet rounds' {what} differ by {gap:.0%} (over "
            f"{settings.stability:.0%}) after {len(rounds)} rounds"
            + (" (--max-time reached)" if stopped_by_time else "")
        )
    if tail_ratio is not None and tail_ratio > settings.tail_bound:
        reasons.append(f"p90 is {tail_ratio:.1f}x p50 (over {settings.tail_bound:g}x)")
    if note:
        reasons.append(note)
    return Stability(
        stable=not reasons,
        reasons=reasons,
        rounds=len(rounds),
        quiet_rounds=len(quiet),
        others_cpu_share=[round(r.others.share, 3) for r in rounds],
        steal_share=[round(r.others.steal, 3) for r in rounds],
        load_avg=[r.load_avg for r in rounds],
        agreement=gap,
        tail_ratio=tail_ratio,
    )
