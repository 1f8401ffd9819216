"""What the rest of the machine was doing while a benchmark worker ran.

The load average cannot say it on its own: it also counts this benchmark's own workers. What
says whether a figure was disturbed is the share of the CPUs that *other* processes used while
the worker ran: system-wide busy time (hypervisor steal included: a virtual CPU the host gave
to another guest is as lost as one another process took) less this process's and its reaped
children's CPU time. Measured on these 2-core machines: with one other busy process, PyTorch's
OpenMP threads stall for whole scheduler slices and a worker runs 10 to 300 times slower, so a
figure measured beside one is noise, however well its rounds agree.

A server measured over the wire (``zoo bench --serve``) is part of the measurement, not
another process: its CPU time counts as the round's own (``Others(also=...)``,
:func:`process_tree_cpu`), so a server busy with the benchmark's requests does not mark the
round disturbed.

Used by ``zoo bench`` (each worker's round, and the stability rule) and ``zoo bench-train``.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass

import psutil

__all__ = [
    "BUSY_SHARE",
    "Others",
    "OthersShare",
    "load_average",
    "process_tree_cpu",
    "wait_for_quiet",
]

#: Other processes using more than this share of the CPUs during a round disturb it.
BUSY_SHARE = 0.10


def _cpu_seconds() -> tuple[float, float, float]:
    """(every CPU's busy seconds, hypervisor steal included; the steal seconds alone; this
    process's and its reaped children's CPU seconds)."""
    t = psutil.cpu_times()
    steal = float(getattr(t, "steal", 0.0))
    busy = t.user + t.nice + t.system + steal
    busy += sum(getattr(t, name, 0.0) for name in ("irq", "softirq"))
    own = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        own += usage.ru_utime + usage.ru_stime
    return busy, steal, own


@dataclass(frozen=True)
class OthersShare:
    """What other processes (and the hypervisor) took of the CPUs over ``wall_s`` seconds."""

    #: The share of all CPUs other processes used, steal included (0 to 1).
    share: float
    #: The share of all CPUs the hypervisor gave to other guests (0 to 1).
    steal: float
    wall_s: float


def process_tree_cpu(pid: int) -> Callable[[], float]:
    """A clock of the CPU seconds process ``pid`` and its descendants have used (their reaped
    children's included): the server a benchmark measures, and the workers it started. A
    process gone between two readings takes its seconds with it, so a reading may go down."""

    def clock() -> float:
        try:
            root = psutil.Process(pid)
            tree = [root, *root.children(recursive=True)]
        except psutil.Error:
            return 0.0
        total = 0.0
        for process in tree:
            try:
                t = process.cpu_times()
            except psutil.Error:
                continue
            total += t.user + t.system + t.children_user + t.children_system
        return total

    return clock


class Others:
    """The share of all CPUs other processes use between :meth:`start` and :meth:`share`.
    Workers count as this process's own once they are reaped, so read it after ``wait``.
    ``also``: a clock of more CPU seconds to count as this process's own (a server the
    benchmark measures, :func:`process_tree_cpu`)."""

    def __init__(self, also: Callable[[], float] | None = None) -> None:
        self.also = also

    def _readings(self) -> tuple[float, float, float]:
        busy, steal, own = _cpu_seconds()
        return busy, steal, own + (self.also() if self.also is not None else 0.0)

    def start(self) -> None:
        self.busy, self.steal, self.own = self._readings()
        self.started = time.perf_counter()

    def measure(self) -> OthersShare:
        busy, steal, own = self._readings()
        wall = time.perf_counter() - self.started
        capacity = wall * (psutil.cpu_count() or 1)
        if capacity <= 0:
            return OthersShare(0.0, 0.0, wall)
        used = max(0.0, (busy - self.busy) - (own - self.own))
        return OthersShare(
            min(1.0, used / capacity), min(1.0, max(0.0, steal - self.steal) / capacity), wall
        )

    def share(self) -> tuple[float, float]:
        """(the others' share, the seconds since :meth:`start`)."""
        measured = self.measure()
        return measured.share, measured.wall_s


def load_average() -> list[float]:
    """The 1-, 5- and 15-minute load averages, rounded."""
    return [round(x, 2) for x in os.getloadavg()]


def wait_for_quiet(limit_s: float, also: Callable[[], float] | None = None) -> float:
    """Wait (up to ``limit_s``) until other processes use under :data:`BUSY_SHARE` of the
    CPUs over a second; the seconds waited. ``also``: as :class:`Others`'."""
    waited = 0.0
    others = Others(also)
    while waited < limit_s:
        others.start()
        time.sleep(min(1.0, max(0.05, limit_s - waited)))
        share, wall = others.share()
        if share < BUSY_SHARE:
            break
        waited += wall
    return waited
