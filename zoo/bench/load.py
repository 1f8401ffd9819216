"""What the rest of the machine was doing while a benchmark worker ran.

The load average cannot say it on its own: it also counts this benchmark's own workers. What
says whether a figure was disturbed is the share of the CPUs that *other* processes used while
the worker ran: system-wide busy time (hypervisor steal included: a virtual CPU the host gave
to another guest is as lost as one another process took) less this process's and its reaped
children's CPU time. Measured on these 2-core machines: with one other busy process, PyTorch's
OpenMP threads stall for whole scheduler slices and a worker runs 10 to 300 times slower, so a
figure measured beside one is noise, however well its rounds agree.

Used by ``zoo bench`` (each worker's round, and the stability rule) and ``zoo bench-train``.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass

import psutil

__all__ = ["BUSY_SHARE", "Others", "OthersShare", "load_average", "wait_for_quiet"]

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


class Others:
    """The share of all CPUs other processes use between :meth:`start` and :meth:`share`.
    Workers count as this process's own once they are reaped, so read it after ``wait``."""

    def start(self) -> None:
        self.busy, self.steal, self.own = _cpu_seconds()
        self.started = time.perf_counter()

    def measure(self) -> OthersShare:
        busy, steal, own = _cpu_seconds()
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


def wait_for_quiet(limit_s: float) -> float:
    """Wait (up to ``limit_s``) until other processes use under :data:`BUSY_SHARE` of the
    CPUs over a second; the seconds waited."""
    waited = 0.0
    others = Others()
    while waited < limit_s:
        others.start()
        time.sleep(min(1.0, max(0.05, limit_s - waited)))
        share, wall = others.share()
        if share < BUSY_SHARE:
            break
        waited += wall
    return waited
