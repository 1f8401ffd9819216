"""Data-parallel training on PyTorch's own engine: torch.distributed, launched by torchrun.

A process started by ``torchrun`` (or by ``zoo train --nproc N``, which runs torchrun for
the user) finds ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` in its environment; the trainer
then joins the process group (NCCL on CUDA, gloo on CPU), wraps the model in
``DistributedDataParallel``, and gives each process its share of every epoch's order, as
``torch.utils.data.DistributedSampler`` does. Only rank 0 writes: the log, TensorBoard,
checkpoints and metrics. Without those variables everything here is a no-op, so the one
loop serves both.

What the ranks must agree on is agreed through collectives: the set-up's outcome (rank 0
decides and says), whether to stop (a Ctrl-C or a non-finite loss on any rank stops all at
the same step), the metrics (each rank's accumulator, merged), the RNG states a checkpoint
holds (every rank's). A rank that fails makes torchrun stop the others: see :func:`launch`.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from zoo.errors import UsageError, ZooError

__all__ = [
    "BACKENDS",
    "Distributed",
    "PeerFailed",
    "launch",
    "record_error",
    "shard",
]

#: ``auto``: NCCL on CUDA, gloo on CPU.
BACKENDS = ("auto", "gloo", "nccl")
#: Seconds a collective may wait for a rank that neither answers nor dies (a rank that dies
#: stops the job within seconds: torchrun notices). ``ZOO_DIST_TIMEOUT`` sets it.
DEFAULT_TIMEOUT = 600.0
#: Seconds a process that stops because another failed waits before it ends.
PEER_GRACE = 2.0


class PeerFailed(ZooError):
    """This rank stops because another one failed or stopped answering (the other's error
    is the one to read)."""


def shard(order: torch.Tensor, start: int, rank: int, world: int) -> torch.Tensor:
    """Rank ``rank``'s share of ``order`` from position ``start`` on: ``order`` padded by
    wrapping around to a multiple of ``world``, then every ``world``-th position from
    ``rank``, which is what ``DistributedSampler`` yields for a dataset in that order.

    Each rank gets the same number of positions (ranks that ran different numbers of steps
    would wait on each other forever). A run resumed at ``start`` with the same ``world``
    continues exactly where it stopped; with another ``world``, the rest of the epoch is
    padded again for the new world size."""
    if world == 1:
        return order[start:]
    rest = _padded(_padded(order, world)[start:], world)
    return rest[rank::world]


def _padded(order: torch.Tensor, world: int) -> torch.Tensor:
    missing = -len(order) % world
    if missing == 0 or len(order) == 0:
        return order
    repeats = (missing + len(order) - 1) // len(order)
    return torch.cat([order, order.repeat(repeats)[:missing]])


@dataclass
class Distributed:
    """This process's place in a data-parallel job: ``world == 1`` is a plain run, unless
    torchrun started it (``launched``): a job of one process joins a process group and trains
    through DistributedDataParallel as a larger one does (a one-GPU smoke run of the engine)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str = ""
    launched: bool = False
    #: The device every collective of the job runs on (set by :meth:`start`): NCCL reduces
    #: only CUDA tensors of the process's own GPU, gloo takes CPU tensors.
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def enabled(self) -> bool:
        return self.world > 1 or self.launched

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_local_main(self) -> bool:
        """The first process on its machine (it downloads what all of them read)."""
        return self.local_rank == 0

    @classmethod
    def from_env(cls) -> Distributed:
        """The job torchrun started this process in, or a plain run."""
        try:
            world = int(os.environ.get("WORLD_SIZE", "1"))
            rank = int(os.environ.get("RANK", "0"))
            local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        except ValueError:
            raise UsageError(
                "WORLD_SIZE, RANK and LOCAL_RANK must be integers (torchrun sets them); "
                "unset them to train in one process"
            ) from None
        if world < 1 or not 0 <= rank < world:
            raise UsageError(
                f"RANK={rank} does not fit WORLD_SIZE={world}; launch with torchrun or "
                "`zoo train --nproc N`"
            )
        # torchrun (and `zoo train --nproc`, through its launcher) names the job in every
        # process it starts; WORLD_SIZE alone may be left over from elsewhere.
        launched = "TORCHELASTIC_RUN_ID" in os.environ and "WORLD_SIZE" in os.environ
        return cls(rank=rank, world=world, local_rank=local_rank, launched=launched)

    # -- joining and leaving --------------------------------------------------------------

    def device_for(self, wanted: str) -> torch.device:
        """The device of this rank for ``--device wanted`` (``auto``, ``cpu``, ``cuda``)."""
        cuda = torch.cuda.is_available()
        if wanted == "cuda" and not cuda:
            raise UsageError("--device cuda: no CUDA device is available here; use --device cpu")
        kind = "cuda" if wanted == "cuda" or (wanted == "auto" and cuda) else "cpu"
        if kind == "cpu" or not self.enabled:
            return torch.device(kind)
        count = torch.cuda.device_count()
        if self.local_rank >= count:
            raise UsageError(
                f"local rank {self.local_rank} has no GPU of its own ({count} here): start at "
                f"most {count} processes per machine, or train with --device cpu"
            )
        torch.cuda.set_device(self.local_rank)
        return torch.device("cuda", self.local_rank)

    def start(self, device: torch.device, backend: str = "auto") -> None:
        """Join the process group: ``backend`` ``auto`` is NCCL on CUDA, gloo on CPU."""
        if not self.enabled:
            return
        import torch.distributed as dist

        if not dist.is_available():
            raise UsageError(
                "this torch build has no torch.distributed: train in one process, or install "
                "a torch build with it (the PyPI wheels have it)"
            )
        if backend == "auto":
            backend = "nccl" if device.type == "cuda" else "gloo"
        check_backend(backend, device.type)
        available = {"nccl": dist.is_nccl_available(), "gloo": dist.is_gloo_available()}
        if not available.get(backend, False):
            other = [b for b, ok in available.items() if ok]
            raise UsageError(
                f"this torch build has no {backend} backend; use "
                + (f"--backend {other[0]}" if other else "a torch build with gloo or nccl")
            )
        self.backend = backend
        self.device = device
        dist.init_process_group(
            backend,
            timeout=datetime.timedelta(seconds=_timeout()),
            device_id=device if device.type == "cuda" else None,
        )

    def close(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()

    def wrap(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """``model`` as DistributedDataParallel (gradients averaged over the processes at
        each backward; rank 0's weights broadcast to all first); ``model`` itself alone."""
        if not self.enabled:
            return model
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    # -- agreeing ----------------------------------------------------------------------------

    def barrier(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            self._use_device()
            if self.device.type == "cuda":
                dist.barrier(device_ids=[self._index()])
            else:
                dist.barrier()

    def any(self, *flags: bool) -> tuple[bool, ...]:
        """Each flag true on some rank (one all-reduce for all of them)."""
        if not self.enabled:
            return tuple(flags)
        import torch.distributed as dist

        values = torch.tensor([float(f) for f in flags], device=self.device)
        dist.all_reduce(values, op=dist.ReduceOp.MAX)
        return tuple(bool(v) for v in values.tolist())

    def total(self, value: float) -> float:
        """The sum of ``value`` over the ranks."""
        if not self.enabled:
            return value
        import torch.distributed as dist

        summed = torch.tensor([float(value)], dtype=torch.float64, device=self.device)
        dist.all_reduce(summed)
        return float(summed.item())

    def from_main(self, value: Any, *, objects: bool = False) -> Any:
        """Rank 0's ``value`` on every rank: plain values and tensors, or any object the
        job's own processes made (``objects``)."""
        if not self.enabled:
            return value
        import torch.distributed as dist

        box: list[Any] = [_packed(value) if self.is_main else None]
        self._use_device()
        dist.broadcast_object_list(box, src=0, device=self.device)
        return _unpacked(box[0], objects)

    def gathered(self, value: Any, *, objects: bool = False) -> list[Any]:
        """Every rank's ``value``, in rank order, on every rank (see :meth:`from_main`)."""
        if not self.enabled:
            return [value]
        import torch.distributed as dist

        values: list[Any] = [None] * self.world
        # all_gather_object has no device argument: NCCL's goes through the current GPU.
        self._use_device()
        dist.all_gather_object(values, _packed(value))
        return [_unpacked(v, objects) for v in values]

    def _use_device(self) -> None:
        """Make the job's GPU the current one: NCCL's object collectives and barrier move
        their bytes through ``torch.cuda.current_device()``, which is GPU 0 unless set."""
        if self.device.type == "cuda":
            torch.cuda.set_device(self._index())

    def _index(self) -> int:
        return self.device.index if self.device.index is not None else self.local_rank

    def broadcast_weights(self, module: torch.nn.Module) -> None:
        """Rank 0's parameters and buffers into every rank's ``module`` (through the job's
        device: a tensor elsewhere is sent from a copy there)."""
        if not self.enabled:
            return
        import torch.distributed as dist

        for tensor in module.state_dict().values():
            if tensor.device == self.device:
                dist.broadcast(tensor, src=0)
                continue
            staged = tensor.to(self.device)
            dist.broadcast(staged, src=0)
            tensor.copy_(staged)

    def merged(self, metrics: Any) -> Any:
        """``metrics`` (a task's accumulator) merged over the ranks, the same on every rank,
        where the accumulator has ``merge(other)``; else None (the caller decides)."""
        if not self.enabled:
            return metrics
        if not callable(getattr(metrics, "merge", None)):
            return None
        parts = self.gathered(metrics, objects=True)
        total = parts[0]
        for other in parts[1:]:
            total.merge(other)
        return total


def _packed(value: Any) -> bytes:
    """``value`` as torch.save's bytes: torch 2.14's collectives of objects cannot unpickle
    the tensors they pickle themselves (``UntypedStorage has no attribute 'dtype'``)."""
    import io

    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


def _unpacked(data: bytes, objects: bool) -> Any:
    """What :func:`_packed` made; plain values and tensors only unless ``objects`` (values
    this job's processes made, such as a task's metric accumulators)."""
    import io

    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=not objects)


def _timeout() -> float:
    raw = os.environ.get("ZOO_DIST_TIMEOUT", "")
    if not raw:
        return DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise UsageError(f"ZOO_DIST_TIMEOUT={raw!r} must be a positive number of seconds")
    return value


# -- failures --------------------------------------------------------------------------------

#: What gloo and NCCL say when the other end of a collective is gone.
_GONE = ("connection closed by peer", "connection reset by peer", "communicator was aborted")
_COLLECTIVE = ("gloo", "nccl", "c10d", "distributed")


def is_peer_failure(exc: BaseException) -> bool:
    """Whether ``exc`` came from a collective whose peer is gone or silent (not this rank's
    own fault)."""
    if isinstance(exc, PeerFailed):
        return True
    if not isinstance(exc, RuntimeError):
        return False
    text = str(exc).lower()
    from_collective = type(exc).__name__.startswith("Dist") or any(
        word in text for word in _COLLECTIVE
    )
    return from_collective and (any(sign in text for sign in _GONE) or "timed out" in text)


def peer_failure(exc: BaseException) -> PeerFailed | None:
    """``exc`` in one line, where a collective failed because another process did."""
    if not is_peer_failure(exc) or isinstance(exc, PeerFailed):
        return None
    if "timed out" in str(exc).lower():
        return PeerFailed(
            f"another process did not answer for {_timeout():.0f} s (ZOO_DIST_TIMEOUT): it "
            "hangs, or one of its steps takes longer than that"
        )
    return PeerFailed("lost another process of the job: it failed (its error says why)")


def record_error(message: str, *, peer: bool = False) -> None:
    """Leave this rank's one-line error where torchrun reads it (``TORCHELASTIC_ERROR_FILE``):
    torchrun shows it as the rank's failure, and ``zoo train --nproc`` picks the first rank
    that failed on its own (``peer``: this rank stopped because another failed)."""
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if not path:
        return
    record = {
        "message": message,
        "timestamp": int(time.time()),
        "zoo": {"time": time.time(), "peer": peer, "rank": os.environ.get("RANK", "")},
    }
    try:
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(record, handle)
    except OSError:
        pass  # the rank's stderr still says it
    if peer:
        # The process that failed on its own should end first: torchrun stops the others
        # as soon as one ends, and one it stopped cannot say why it failed.
        time.sleep(PEER_GRACE)


# -- launching -------------------------------------------------------------------------------


def check_port(port: int) -> None:
    """UsageError if ``port`` is taken on this machine."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("", port))
        except OSError:
            raise UsageError(
                f"--port {port} is already in use on this machine: choose another, or leave "
                "--port out to use a free one"
            ) from None


def check_backend(backend: str, device: str) -> None:
    """UsageError for a backend the device cannot use (``device``: auto, cpu or cuda)."""
    on_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if backend == "nccl" and not on_cuda:
        raise UsageError("--backend nccl needs CUDA devices; on CPU use --backend gloo")


def check_nproc(nproc: int, device: str) -> None:
    """UsageError where ``nproc`` processes make no sense on this machine."""
    if nproc < 1:
        raise UsageError(f"--nproc {nproc}: give at least 1 process")
    cuda = torch.cuda.is_available() and device != "cpu"
    if cuda:
        count = torch.cuda.device_count()
        if nproc > count:
            raise UsageError(
                f"--nproc {nproc} is more than the {count} GPUs here: use --nproc {count} or "
                "fewer (one process per GPU), or --device cpu"
            )
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = cores or 1
    if nproc > cores:
        raise UsageError(
            f"--nproc {nproc} is more than the {cores} CPU cores this process may use: "
            f"use --nproc {cores} or fewer (each process needs a core of its own)"
        )


@dataclass
class LaunchResult:
    #: 0, 130 (interrupted), or the exit status of the first rank that failed on its own.
    code: int
    #: That rank's one-line error ("" when all ended well).
    message: str = ""


def launch(
    argv: Sequence[str], nproc: int, *, port: int | None = None, threads: int | None = None
) -> LaunchResult:
    """Run ``python -m zoo ARGV`` in ``nproc`` processes on this machine through torchrun's
    launcher (``torchrun --standalone``: a rendezvous on a free local port, or ``port``).

    A rank that fails makes the launcher stop the others (SIGTERM, then SIGKILL after 30 s)
    and this returns its exit status and its one-line error; a Ctrl-C reaches every rank,
    which stop together at the next step and save a checkpoint."""
    import logging
    import shutil
    import sys
    import tempfile
    import uuid

    from torch.distributed.elastic.multiprocessing.api import DefaultLogsSpecs, SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    endpoint = f"localhost:{port if port is not None else 0}"
    # Where the ranks leave their error files; removed after (torchrun would leave it in /tmp).
    logs = tempfile.mkdtemp(prefix="zoo-torchrun-")
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=f"zoo-{uuid.uuid4().hex[:8]}",
        rdzv_backend="c10d",
        rdzv_endpoint=endpoint,
        max_restarts=0,
        monitor_interval=0.1,
        logs_specs=DefaultLogsSpecs(log_dir=logs),
    )
    # torchrun's own default: one thread per process unless the user set OMP_NUM_THREADS.
    os.environ.setdefault("OMP_NUM_THREADS", str(threads or 1))
    # The launcher's own records (which ranks it starts and stops) are not the user's news.
    # (a failure comes back as ChildFailedError, said in one line by the caller).
    for name in ("torch.distributed.elastic", "torch.distributed.launcher"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        elastic_launch(config, sys.executable)("-m", "zoo", *argv)
    except ChildFailedError as exc:
        return _first_failure(exc)
    except SignalException:
        return LaunchResult(130, "interrupted")
    finally:
        shutil.rmtree(logs, ignore_errors=True)
    return LaunchResult(0)


def _first_failure(exc: Any) -> LaunchResult:
    """The rank that failed on its own first: its error file's message where zoo wrote one,
    else how it ended. Ranks stopped by the launcher (signals) or by a lost peer come last."""
    candidates = []
    for rank, failure in exc.failures.items():
        data: dict[str, Any] = (
            failure.error_file_data if isinstance(failure.error_file_data, dict) else {}
        )
        info: dict[str, Any] = data["zoo"] if isinstance(data.get("zoo"), dict) else {}
        own = failure.exitcode > 0 and not info.get("peer", False)
        interrupted = failure.exitcode == 130
        when = info.get("time", failure.timestamp)
        message = data.get("message") if isinstance(data.get("message"), str) else ""
        if not message:
            if failure.exitcode < 0:
                message = f"killed by signal {-failure.exitcode}"
            else:
                message = f"exit status {failure.exitcode} (its output above says why)"
        candidates.append((not interrupted, own, -float(when), rank, failure.exitcode, message))
    # Interrupted ranks (130) first when every rank was interrupted; else the first own failure.
    if all(not c[0] for c in candidates):
        return LaunchResult(130, "interrupted")
    _, _, _, rank, code, message = max((c for c in candidates if c[0]), key=lambda c: (c[1], c[2]))
    return LaunchResult(code if code > 0 else 1, f"rank {rank} failed: {message}")
