"""One training variant, in a process of its own: ``zoo bench-train``'s worker.

``python -m zoo.bench.train_worker`` reads a :class:`TrainJob` as JSON on stdin and prints a
:class:`TrainJobResult` as one JSON line: the samples per second of each timed epoch, after
the warm-up epochs (which absorb compilation, allocator growth and first-touch costs). The
parent sets the thread count in the environment before this process imports torch, as for
``zoo bench``'s workers (``zoo.bench.worker``); torch is imported inside the functions that
run here, so the parent imports this module for the records alone.

A variant is either a hand-written loop as in PyTorch's tutorials (a DataLoader over the
training split, ``zero_grad``, forward, ``CrossEntropyLoss``, ``backward``, ``step``: Adam at
1e-3, as the trainer's defaults) or zoo's :class:`~zoo.train.Trainer` with its defaults and the
variant's options. Both train the same model (built as the trainer builds it) on the same split with
the same batch size. The trainer runs with ``augment="none"``, the one default that adds
work the hand loop does not do (random shifts of every batch); its figure is the throughput
it reports per epoch (the training batches, not evaluation or checkpoints).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from zoo import _json as js

__all__ = ["HAND", "TrainJob", "TrainJobResult", "run_train_job"]

#: The variant name of the hand-written loop.
HAND = "hand"


@dataclass(frozen=True)
class TrainJob:
    """Train ``model`` on ``data`` for ``warmup_epochs`` then ``epochs`` timed epochs."""

    variant: str
    model: str
    data: str
    batch_size: int
    epochs: int
    warmup_epochs: int
    threads: int
    device: str
    #: Where a trainer variant writes its run directory (one per process).
    workdir: str
    seed: int = 0
    #: The trainer's options (``precision``, ``channels_last``, ``compile``); None for the
    #: hand loop.
    options: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["options"] = dict(self.options) if self.options is not None else None
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainJob:
        options = data.get("options")
        return cls(
            variant=js.string(data.get("variant"), "variant"),
            model=js.string(data.get("model"), "model"),
            data=js.string(data.get("data"), "data"),
            batch_size=js.integer(data.get("batch_size"), "batch_size"),
            epochs=js.integer(data.get("epochs"), "epochs"),
            warmup_epochs=js.integer(data.get("warmup_epochs"), "warmup_epochs"),
            threads=js.integer(data.get("threads"), "threads"),
            device=js.string(data.get("device"), "device"),
            workdir=js.string(data.get("workdir"), "workdir"),
            seed=js.integer(data.get("seed", 0), "seed"),
            options=None if options is None else dict(js.obj(options, "options")),
        )


@dataclass(frozen=True)
class TrainJobResult:
    """What a :class:`TrainJob` measured, or why it failed (``status`` ``failed``)."""

    status: str
    reason: str = ""
    #: The worker's process id: every variant of every round runs in a process of its own.
    pid: int = 0
    #: Samples per second of each timed epoch, in order.
    samples_per_s: tuple[float, ...] = field(default_factory=tuple)
    #: Seconds of the first epoch (compilation included).
    first_epoch_s: float = 0.0
    #: The training loss at the end: a variant that diverged is no speed-up.
    final_loss: float = 0.0

    @classmethod
    def failure(cls, reason: str) -> TrainJobResult:
        return cls("failed", reason, pid=os.getpid())

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["samples_per_s"] = list(self.samples_per_s)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainJobResult:
        if js.string(data.get("status"), "status") != "ok":
            return cls("failed", js.string(data.get("reason", "no reason given"), "reason"))
        rates = js.seq(data.get("samples_per_s"), "samples_per_s")
        return cls(
            status="ok",
            pid=js.integer(data.get("pid"), "pid"),
            samples_per_s=tuple(js.number(r, "samples_per_s") for r in rates),
            first_epoch_s=js.number(data.get("first_epoch_s"), "first_epoch_s"),
            final_loss=js.number(data.get("final_loss"), "final_loss"),
        )


def _hand_loop(job: TrainJob) -> TrainJobResult:
    """The hand-written loop: nothing but what training a classifier needs."""
    import torch
    from torch import nn
    from torch.utils.data import DataLoader

    from zoo._pluginmanager import get_plugins
    from zoo.data import load_dataset

    plugins = get_plugins()
    spec = plugins.models.get(job.model)
    task = plugins.tasks.create(spec.task, {})
    torch.manual_seed(job.seed)
    splits = load_dataset(job.data, spec.input, seed=job.seed)
    device = torch.device(job.device)
    model = spec.build(**task.model_args(spec, splits.info, {})).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    criterion = nn.CrossEntropyLoss()
    loader = DataLoader(
        splits.train, batch_size=job.batch_size, shuffle=True, collate_fn=splits.collate_fn
    )
    rates: list[float] = []
    first = 0.0
    loss = torch.zeros(())
    for epoch in range(job.warmup_epochs + job.epochs):
        started = time.perf_counter()
        samples = 0
        for inputs, targets in loader:
            inputs, targets = inputs.to(device), targets.to(device)
            optimizer.zero_grad()
            loss = criterion(model(inputs), targets)
            loss.backward()
            optimizer.step()
            samples += len(inputs)
        if device.type == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - started
        first = first or elapsed
        if epoch >= job.warmup_epochs:
            rates.append(samples / elapsed)
    return TrainJobResult(
        "ok",
        pid=os.getpid(),
        samples_per_s=tuple(rates),
        first_epoch_s=first,
        final_loss=float(loss.item()),
    )


def _trainer(job: TrainJob) -> TrainJobResult:
    """zoo's trainer with its defaults and the variant's options."""
    from zoo.train import TrainConfig, Trainer

    config = TrainConfig(
        job.model,
        data=job.data,
        epochs=job.warmup_epochs + job.epochs,
        batch_size=job.batch_size,
        device=job.device,
        seed=job.seed,
        augment="none",
        progress=False,
        out=str(Path(job.workdir) / f"{job.variant}-{os.getpid()}"),
        **dict(job.options or {}),
    )
    history = Trainer(config, echo=lambda _: None).fit().metrics["history"]
    return TrainJobResult(
        "ok",
        pid=os.getpid(),
        samples_per_s=tuple(float(h["samples_per_second"]) for h in history[job.warmup_epochs :]),
        first_epoch_s=float(history[0]["seconds"]),
        final_loss=float(history[-1]["train"]["loss"]),
    )


def run_train_job(job: TrainJob) -> TrainJobResult:
    import torch

    torch.set_num_threads(job.threads)
    return _hand_loop(job) if job.options is None else _trainer(job)


def main() -> None:
    try:
        output = run_train_job(TrainJob.from_dict(json.loads(sys.stdin.read())))
    except Exception as exc:  # reported as a failed variant, not a crash of zoo bench-train
        from zoo.errors import one_line

        output = TrainJobResult.failure(one_line(exc))
    sys.stdout.write(json.dumps(output.to_dict()) + "\n")


if __name__ == "__main__":
    main()
