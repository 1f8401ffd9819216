"""The training loop: any registered model, any dataset that fits it, resumable exactly.

PyTorch's training routine, as its tutorials teach it: seed,
``model.train()`` / ``model.eval()``, optimizer and scheduler, evaluation under
``torch.no_grad()``, checkpoints holding everything needed to continue, metrics and
TensorBoard. Everything that depends on what the model does (its loss, metrics, what the run
writes at its end) is asked of the model's task (``zoo.tasks.Task``, registered by a plugin):
the loop never looks at a task's name. See ``TrainConfig`` for the options.

Started by torchrun (or ``zoo train --nproc N``), the same loop trains data-parallel: see
:mod:`zoo.train.distributed`. Rank 0 owns the run directory; every rank trains its share.
"""

from __future__ import annotations

import functools
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Subset

from zoo._interrupts import StopRequest
from zoo._io import atomic_write_json, is_no_space, no_space_message
from zoo._lock import DirectoryLock, lock_directory
from zoo._pluginmanager import get_plugins
from zoo._version import __version__
from zoo.checkpoint import (
    Checkpoint,
    CheckpointError,
    find_checkpoint,
    is_valid_checkpoint,
    load_checkpoint,
    newest_checkpoint,
    save_checkpoint,
)
from zoo.data import load_dataset
from zoo.datasets import DatasetInfo, DataSplits
from zoo.errors import NoSpaceError, UnknownTaskError, UsageError, ZooError
from zoo.registry import ModelSpec, freeze_first
from zoo.spec_check import check_outputs
from zoo.tasks import Task, TaskRun
from zoo.train.batches import Batches
from zoo.train.config import TrainConfig, check_checkpoint_config
from zoo.train.distributed import Distributed, PeerFailed, peer_failure
from zoo.train.loggers import TensorBoardLogger, progress_bar
from zoo.train.optim import Warmup, build_optimizer, build_scheduler, extend_schedule
from zoo.train.reproducibility import (
    deterministic_algorithms,
    get_rng_state,
    seed_everything,
    set_rng_state,
)
from zoo.train.speed import Speed, check_speed_options, given_speed_options

__all__ = ["Progress", "TrainResult", "Trainer", "TrainingError", "train"]

#: Options a resumed run may change; everything else comes from the checkpoint's config. The
#: speed options (precision, channels_last, compile: zoo.train.speed) may change too, but only
#: where the command gives them: otherwise the run keeps its own.
RESUMABLE_OVERRIDES = (
    "epochs",
    "device",
    "num_workers",
    "tensorboard",
    "progress",
    "out",
    "resume",
    "backend",
)


class TrainingError(ZooError):
    """Training cannot go on (e.g. the loss became NaN); the last good checkpoint is kept."""


@dataclass
class TrainResult:
    run_dir: Path
    #: The content of ``metrics.json``.
    metrics: dict[str, Any]
    #: ``completed``, ``early_stopping`` or ``interrupted``.
    status: str


def train(model: str, data: str = "", **options: Any) -> TrainResult:
    """Train ``model`` on ``data`` with ``TrainConfig`` options; see ``zoo train --help``."""
    return Trainer(TrainConfig(model=model, data=data, **options)).fit()


@dataclass
class Progress:
    """Where a run is: what each checkpoint's meta.json keeps under ``progress``, and what a
    resumed run continues from."""

    #: Epochs finished.
    epoch: int = 0
    #: Steps of the current epoch this process has taken (shown on resume).
    batch: int = 0
    #: Optimizer steps in all.
    step: int = 0
    #: The best monitored figure so far, and the epoch (from 1) that reached it.
    best: float | None = None
    best_epoch: int | None = None
    #: Epochs since the best (early stopping counts them).
    bad_epochs: int = 0
    #: Each finished epoch's record (metrics.json ``history``).
    history: list[dict[str, Any]] = field(default_factory=list)
    #: Samples of the current epoch's order that every process together has trained.
    position: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def restore(self, saved: dict[str, Any]) -> None:
        """Take a checkpoint's progress (checked by ``zoo.checkpoint``); a field it lacks
        (``position``, before zoo 0.2) keeps its value here."""
        for name in self.__dataclass_fields__:
            if name in saved:
                setattr(self, name, saved[name])

    def end_epoch(self, current: float, maximize: bool) -> bool:
        """The epoch is finished with ``current`` as its monitored figure: whether it
        improved on the best (then the best), else one more epoch without improvement."""
        best = self.best
        improved = best is None or (current > best if maximize else current < best)
        self.epoch, self.batch, self.position = self.epoch + 1, 0, 0
        if improved:
            self.best, self.best_epoch, self.bad_epochs = current, self.epoch, 0
        else:
            self.bad_epochs += 1
        return improved


@dataclass
class _Setup:
    """What a run trains with, built before the first step."""

    splits: DataSplits
    #: The model itself (evaluated and saved); a data-parallel run trains a wrapper of it.
    model: nn.Module
    model_args: dict[str, Any]
    optimizer: torch.optim.Optimizer
    scheduler: Any  # a torch LRScheduler or ReduceLROnPlateau; None: a constant rate
    scaler: torch.amp.GradScaler
    batches: Batches
    warmup: Warmup
    run: TaskRun


class _Checkpointer:
    """Saves the run: every rank calls ``save`` (their RNG states are gathered); rank 0
    writes, and a Ctrl-C during the write waits for it to complete."""

    def __init__(
        self,
        run_dir: Path,
        setup: _Setup,
        meta: dict[str, Any],
        dist: Distributed,
        stop: StopRequest,
        echo: Callable[[str], None],
    ) -> None:
        self.run_dir, self.setup, self.meta = run_dir, setup, meta
        self.dist, self.stop, self.echo = dist, stop, echo

    def save(
        self, progress: Progress, tags: tuple[str, ...], metrics: dict[str, Any] | None = None
    ) -> Path:
        dist, setup = self.dist, self.setup
        rngs = dist.gathered(get_rng_state())
        if not dist.is_main:
            return self.run_dir / "last"
        state = {
            "optimizer": setup.optimizer.state_dict(),
            "scheduler": setup.scheduler.state_dict() if setup.scheduler is not None else None,
            "scaler": setup.scaler.state_dict(),  # empty unless fp16
            "rng": rngs[0],
            # Each rank's, in rank order: a run resumed with as many processes continues
            # exactly; with another number, rank 0 and new seeds for the others.
            "rng_ranks": rngs if dist.enabled else [],
        }
        meta = {
            **self.meta,
            "epoch": progress.epoch,
            "step": progress.step,
            "progress": progress.to_dict(),
            "metrics": metrics or {},
        }
        with self.stop.shield():
            path = save_checkpoint(self.run_dir, setup.model, state, meta, tags)
        if self.stop.forced:  # a second Ctrl-C came during the save, which completed
            self.echo(
                f"interrupted during a checkpoint save, which completed: saved {path}; "
                f"continue with --resume {self.run_dir}"
            )
            raise KeyboardInterrupt
        return path


class Trainer:
    """Trains one model as ``config`` says; ``fit()`` returns the run's metrics.

    It holds the run directory's lock from construction to the end of ``fit()``: a second
    trainer of the same directory is refused with the first one's pid."""

    def __init__(self, config: TrainConfig, echo: Callable[[str], None] = print) -> None:
        self.dist = Distributed.from_env()
        self.echo = echo if self.dist.is_main else _quiet  # rank 0 speaks for the job
        self.stop = StopRequest()
        self.config = config
        self.speed = Speed()
        plugins = get_plugins()
        self.spec = plugins.models.get(config.model)
        self.task = self._task(self.config)
        self.data_name = config.data or self.task.default_data(self.spec)
        if config.resume is None:
            self._check_monitor()  # before the run directory is made
            check_speed_options(config)
        self.device = self.dist.device_for(config.device)
        self.dist.start(self.device, config.backend)
        try:
            self._own_run_dir()
        except BaseException:
            self.dist.close()
            raise

    def _own_run_dir(self) -> None:
        """Rank 0 makes, locks and reads the run directory and tells the others the outcome
        (the resolved configuration and the checkpoint to resume); they touch no file."""
        if not self.dist.is_main:
            outcome, payload = self.dist.from_main(None)
            if outcome == "failed":
                raise PeerFailed(f"rank 0 could not set up the run: {payload}")
            self.lock: DirectoryLock | _NoLock = _NoLock()
            run_dir, config, resume_from, checkpoint = payload
            self.run_dir = Path(run_dir)
            self.resume_from = Path(resume_from) if resume_from is not None else None
            if checkpoint is not None:
                self.checkpoint = Checkpoint(Path(checkpoint["path"]), **checkpoint["parts"])
            self.config = TrainConfig.from_dict(config)
            self.task = self._task(self.config)
            return
        try:
            self.run_dir = self._run_dir()
            try:  # creating the lock file also proves the directory writable
                self.lock = lock_directory(self.run_dir)
            except OSError as exc:
                raise self._unwritable(self.run_dir, exc) from None
            try:
                self._set_up()
            except BaseException:
                self.lock.release()
                raise
        except BaseException as exc:
            if self.dist.enabled:
                self.dist.from_main(("failed", str(exc) or type(exc).__name__))
            raise
        if self.dist.enabled:
            checkpoint = None
            if self.resume_from is not None:
                ckpt = self.checkpoint
                parts = {"weights": ckpt.weights, "state": ckpt.state, "meta": ckpt.meta}
                checkpoint = {"path": str(ckpt.path), "parts": parts}
            resume = str(self.resume_from) if self.resume_from is not None else None
            self.dist.from_main(
                ("ok", (str(self.run_dir), self.config.to_dict(), resume, checkpoint))
            )

    def _set_up(self) -> None:
        """Under the lock: find what to resume, refuse to overwrite, clear leftovers."""
        self.resume_from = self._resume_source()
        if self.resume_from is None and (
            find_checkpoint(self.run_dir) is not None or newest_checkpoint(self.run_dir) is not None
        ):
            raise UsageError(
                f"{self.run_dir} already holds a checkpoint: pass --resume auto to continue it, "
                "or choose another --out (nothing was overwritten)"
            )
        if self.resume_from is not None:
            self.checkpoint = load_checkpoint(self.resume_from)
            stored = check_checkpoint_config(self.checkpoint.path, self.checkpoint.meta)
            overrides = {k: getattr(self.config, k) for k in RESUMABLE_OVERRIDES}
            overrides |= given_speed_options(self.config)
            self.config = TrainConfig.from_dict({**stored, **overrides})
            self.task = self._task(self.config)
            self._check_monitor()
            check_speed_options(self.config)
        _remove_leftovers(self.run_dir)

    def _check_monitor(self) -> None:
        monitors = [f"val_{m}" for m in self.task.metrics]
        if self.config.monitor and self.config.monitor not in monitors:
            raise UsageError(
                f"--monitor {self.config.monitor!r} is not one of {', '.join(monitors)} "
                f"(for task {self.task.name!r})"
            )

    # -- set-up ----------------------------------------------------------------------------

    def _task(self, config: TrainConfig) -> Task:
        """The model's task with the run's options, after it has accepted the model."""
        try:
            task = get_plugins().tasks.create(self.spec.task, config.task_args)
        except UnknownTaskError as exc:
            hint = (
                f"did you mean {', '.join(map(repr, exc.suggestions))}?" if exc.suggestions else ""
            )
            raise UsageError(
                f"model {self.spec.name!r} names task {self.spec.task!r}, which no installed "
                f"plugin registers; {hint or 'run `zoo tasks` to see the tasks'}"
            ) from None
        task.check_model(self.spec)
        return task

    def _resume_source(self) -> Path | None:
        """The checkpoint to resume: ``--resume auto`` reads the run directory's ``last``,
        or, where ``last`` is dangling or broken, its newest valid checkpoint (said in a
        line); it never starts afresh beside a valid checkpoint."""
        resume = self.config.resume
        if resume is None:
            return None
        where = self.run_dir if resume == "auto" else Path(resume)
        found = find_checkpoint(where)
        if found is not None and is_valid_checkpoint(found):
            return found
        newest = newest_checkpoint(where)
        if newest is not None:
            self.echo(
                f"note: {where / 'last'} is missing or broken; resuming from the newest valid "
                f"checkpoint, {newest}"
            )
            return newest
        if found is None and resume != "auto":
            raise CheckpointError(f"--resume {resume}: no checkpoint there")
        return found  # None: nothing to resume; or a broken one, which load_checkpoint names

    def _default_out(self) -> Path:
        data = self.data_name.replace(":", "-").replace("/", "_")
        return Path("runs") / f"{self.config.model}-{data}"

    def _run_dir(self) -> Path:
        """The run directory, made and checked writable (before it is locked)."""
        resume = self.config.resume
        if self.config.out:
            run_dir = Path(self.config.out)
        elif resume not in (None, "auto"):
            found = find_checkpoint(resume)
            if found is None:
                if newest_checkpoint(resume) is None:
                    raise CheckpointError(f"--resume {resume}: no checkpoint there")
                run_dir = Path(resume)
            else:
                run_dir = found.parent.parent  # <run>/checkpoints/<dir>
        else:
            run_dir = self._default_out()
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._unwritable(run_dir, exc) from exc
        return run_dir

    @staticmethod
    def _unwritable(run_dir: Path, exc: OSError) -> ZooError:
        if is_no_space(exc):
            return NoSpaceError(no_space_message(run_dir, 1))
        return UsageError(f"cannot write to run directory {run_dir}: {exc.strerror or exc}")

    def _model_args(self, spec: ModelSpec, info: DatasetInfo) -> dict[str, Any]:
        args = self.task.model_args(spec, info, self.config.model_args)
        if self.config.freeze and "freeze" in spec.builder_parameters():
            args["freeze"] = self.config.freeze
        return args

    # -- the loop ----------------------------------------------------------------------------

    def fit(self) -> TrainResult:
        """Train, evaluate the best checkpoint on the test split, write metrics.json."""
        try:
            with deterministic_algorithms(self.config.deterministic):
                result = self._fit()
            # Every process leaves together: one that tears its process group down while a
            # peer still works (rank 0 writing the run's figures) can abort in gloo's threads
            # ("terminate called without an active exception", seen once in the suite).
            self.dist.barrier()
            return result
        except OSError as exc:
            if is_no_space(exc):  # metrics.json, a figure, TensorBoard...
                raise NoSpaceError(no_space_message(self.run_dir, 1 << 20)) from None
            raise
        except RuntimeError as exc:
            if self.dist.enabled and "finished reduction in the prior iteration" in str(exc):
                raise UsageError(
                    f"model {self.spec.name!r} has trainable parameters its loss does not "
                    "use, which DistributedDataParallel cannot average: freeze them (--freeze) "
                    "or train in one process"
                ) from exc
            lost = peer_failure(exc) if self.dist.enabled else None
            if lost is None:
                raise
            raise lost from exc
        finally:
            self.lock.release()
            self.dist.close()

    def _fit(self) -> TrainResult:
        """Set up, resume where asked, train epoch by epoch, then test the best checkpoint."""
        seed_everything(self.config.seed)
        setup = self._build()
        progress = Progress()
        if self.resume_from is not None:
            self._resume(setup, progress)
        net = self.dist.wrap(setup.model, self.device)  # trains; setup.model evaluates, is saved
        if self.resume_from is not None:
            self._resume_rng(self.checkpoint)
        elif self.dist.rank > 0:  # other augmentations and dropout masks than rank 0's
            seed_everything((self.config.seed + 7919 * self.dist.rank) % 2**32)
        logger = self._open_logger(setup, progress)
        checkpointer = self._checkpointer(setup)
        self._announce(setup.splits)
        try:
            with self.stop.installed():
                status = self._epochs(net, setup, progress, checkpointer, logger)
        finally:
            if logger is not None:
                logger.close()
        if status == "interrupted":
            return TrainResult(self.run_dir, {}, status)
        metrics = self._finish(setup.model, setup.splits, setup.run, progress)
        metrics["status"] = status
        if self.dist.is_main:
            atomic_write_json(self.run_dir / "metrics.json", metrics)
        return TrainResult(self.run_dir, metrics, status)

    def _build(self) -> _Setup:
        """The data, the model (its outputs checked against its spec), the optimizer, the
        scheduler and the batches: everything a step needs, before the first one."""
        cfg, spec, dist, device = self.config, self.spec, self.dist, self.device
        if not dist.is_local_main:  # one download per machine: local rank 0's
            dist.barrier()
        splits = load_dataset(
            self.data_name,
            spec.input,
            data_dir=cfg.data_dir,
            seed=cfg.seed,
            val_fraction=cfg.val_fraction,
            test_fraction=cfg.test_fraction,
        )
        if dist.is_local_main:
            dist.barrier()
        model_args = self._model_args(spec, splits.info)
        model = spec.build(**model_args)
        if cfg.freeze and "freeze" not in spec.builder_parameters():
            freeze_first(model, cfg.freeze)
        model.to(device)
        self.speed = Speed.of(cfg, device, self.echo)
        self.speed.prepare(model, self.echo)
        # Before any work, the model's real outputs against its spec: a model that returns
        # [B, 7] under a spec of 10 classes would otherwise fail deep inside the loss.
        x = self._val_batch(splits)
        # A batch of another length on a dynamic axis may give outputs of other lengths.
        check_outputs(spec, model, model_args, x, exact=tuple(x.shape[1:]) == spec.input.shape)
        optimizer = build_optimizer(model, cfg)
        batches = Batches(
            splits.train,
            cfg.batch_size,
            shuffle=True,
            seed=cfg.seed,
            collate_fn=splits.collate_fn,
            num_workers=cfg.num_workers,
            rank=dist.rank,
            world=dist.world,
            pin_memory=device.type == "cuda",
        )
        return _Setup(
            splits=splits,
            model=model,
            model_args=model_args,
            optimizer=optimizer,
            scheduler=build_scheduler(optimizer, replace(cfg, monitor=self._monitor())),
            scaler=self.speed.grad_scaler(),
            batches=batches,
            warmup=Warmup(optimizer, cfg.warmup_epochs * len(batches)),
            run=TaskRun(
                spec=spec,
                info=splits.info,
                run_dir=self.run_dir,
                device=device,
                seed=cfg.seed,
                augment=cfg.augment,
                sample=lambda dataset, n: self._sample(dataset, n, splits, device),
            ),
        )

    def _val_batch(self, splits: DataSplits) -> torch.Tensor:
        """Two real inputs (the first of the validation split), on the device."""
        probe = Batches(splits.val, 2, shuffle=False, collate_fn=splits.collate_fn)
        x: torch.Tensor = next(iter(probe.epoch(0)))[0]
        return x.to(self.device)

    def _resume(self, setup: _Setup, progress: Progress) -> None:
        """The checkpoint's weights, optimizer, scheduler (extended to more epochs where
        asked), gradient scaler and progress, and where in its epoch it stopped."""
        ckpt, cfg = self.checkpoint, self.config
        ckpt.load_into(setup.model, cfg.model)
        state = ckpt.state
        setup.optimizer.load_state_dict(state["optimizer"])
        if setup.scheduler is not None and state.get("scheduler") is not None:
            setup.scheduler.load_state_dict(state["scheduler"])
            planned = int(ckpt.meta["config"].get("epochs", cfg.epochs))
            changed = extend_schedule(setup.scheduler, setup.optimizer, cfg, planned)
            if changed:
                self.echo(f"note: {changed}")
        if state.get("scaler"):
            setup.scaler.load_state_dict(state["scaler"])
        progress.restore(ckpt.meta["progress"])
        self._resume_position(ckpt, progress, setup.batches)
        self.echo(
            f"resuming {cfg.model} from {ckpt.path} at epoch {progress.epoch + 1}"
            + (f", batch {progress.batch}" if progress.batch else "")
        )

    def _open_logger(self, setup: _Setup, progress: Progress) -> TensorBoardLogger | None:
        """Rank 0's TensorBoard writer where asked, with the model graph on a fresh run."""
        if not (self.config.tensorboard and self.dist.is_main):
            return None
        logger = TensorBoardLogger(self.run_dir / "tensorboard")
        if progress.step == 0:
            # A real batch: the spec's example may not fit the dataset's vocabulary.
            why = logger.graph(setup.model.eval(), self._val_batch(setup.splits))
            if why:
                self.echo(f"note: model graph not logged ({why})")
        return logger

    def _checkpointer(self, setup: _Setup) -> _Checkpointer:
        """What saves the run (config.json is written now, by rank 0)."""
        cfg, dist = self.config, self.dist
        if dist.is_main:
            atomic_write_json(self.run_dir / "config.json", cfg.to_dict())
        meta = {
            "model": cfg.model,
            "model_args": setup.model_args,
            "dataset": setup.splits.info.to_dict(),
            "config": cfg.to_dict(),
            "versions": {"zoo": __version__, "torch": torch.__version__},
            "distributed": {"world_size": dist.world, "backend": dist.backend or None},
        }
        return _Checkpointer(self.run_dir, setup, meta, dist, self.stop, self.echo)

    def _announce(self, splits: DataSplits) -> None:
        cfg, dist = self.config, self.dist
        where = (
            f"{dist.world} process{'es' if dist.world > 1 else ''} ({dist.backend}, {self.device})"
            if dist.enabled
            else ""
        )
        sizes = [len(part) for part in (splits.train, splits.val, splits.test)]  # type: ignore[arg-type]
        self.echo(
            f"training {cfg.model} on {splits.info.name} ({sizes[0]} train, {sizes[1]} val, "
            f"{sizes[2]} test) on {where or self.device}; run dir {self.run_dir}"
        )
        if dist.world > 1:
            self.echo(
                f"each step trains {cfg.batch_size} samples per process, "
                f"{cfg.batch_size * dist.world} in all"
            )

    def _epochs(
        self,
        net: nn.Module,
        setup: _Setup,
        progress: Progress,
        checkpointer: _Checkpointer,
        logger: TensorBoardLogger | None,
    ) -> str:
        """Epochs until the last, early stopping or a stop request: how the run ended."""
        cfg = self.config
        monitor = self._monitor()
        while progress.epoch < cfg.epochs:
            started = time.perf_counter()
            train_metrics, samples, stopped = self._train_epoch(net, setup, progress, logger)
            if stopped:
                path = checkpointer.save(progress, ("last",))
                self.echo(
                    f"interrupted at epoch {progress.epoch + 1}, batch {progress.batch}: "
                    f"saved {path}; continue with --resume {self.run_dir}"
                )
                return "interrupted"
            elapsed = time.perf_counter() - started
            lr = setup.optimizer.param_groups[0]["lr"]  # the rate this epoch trained with
            splits = setup.splits
            val_metrics = self.evaluate(
                setup.model, splits.val, splits.collate_fn, self.device, setup.run
            )
            improved = self._end_epoch(setup, progress, val_metrics[monitor.removeprefix("val_")])
            record = {
                "epoch": progress.epoch,
                "lr": lr,
                "seconds": round(elapsed, 3),
                "samples_per_second": round(samples / elapsed, 1) if elapsed else None,
                "train": _scalars(train_metrics),
                "val": _scalars(val_metrics),
            }
            progress.history.append(record)
            checkpointer.save(progress, ("last", "best") if improved else ("last",), record)
            self._report(record, improved, monitor)
            if logger is not None:  # rank 0's only
                self._log_epoch(logger, setup.model, splits.val, setup.run, record)
            if cfg.early_stopping and progress.bad_epochs >= cfg.early_stopping:
                self.echo(
                    f"early stopping: {monitor} did not improve for "
                    f"{cfg.early_stopping} epochs (best {progress.best:.4f} "
                    f"at epoch {progress.best_epoch})"
                )
                return "early_stopping"
        return "completed"

    def _end_epoch(self, setup: _Setup, progress: Progress, current: float) -> bool:
        """Step the scheduler on the epoch's monitored figure (after the warm-up) and move
        the progress on; whether the figure improved on the best."""
        scheduler = setup.scheduler
        if scheduler is not None and not setup.warmup.active(progress.step):
            if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                scheduler.step(current)
            else:
                scheduler.step()
        maximize = self.task.metrics[self._monitor().removeprefix("val_")]
        return progress.end_epoch(current, maximize)

    def _resume_position(self, ckpt: Any, progress: Progress, batches: Batches) -> None:
        """Where in its epoch the checkpoint stopped, in samples of the epoch's order; with
        another number of processes than it was trained with, said in a note."""
        recorded = ckpt.meta.get("distributed")
        old_world = recorded.get("world_size") if isinstance(recorded, dict) else 1
        if isinstance(old_world, bool) or not isinstance(old_world, int) or old_world < 1:
            raise CheckpointError(
                f"checkpoint {ckpt.path / 'meta.json'}: 'distributed' must give a world_size "
                "of at least 1"
            )
        position = ckpt.meta["progress"].get("position")
        if position is None:  # written by zoo 0.1, one process
            position = progress.batch * self.config.batch_size * old_world
        if (
            isinstance(position, bool)
            or not isinstance(position, int)
            or not (0 <= position <= batches.size)
        ):
            raise CheckpointError(
                f"checkpoint {ckpt.path / 'meta.json'}: progress 'position' must be a count "
                f"of at most {batches.size} samples"
            )
        progress.position = position
        world = self.dist.world
        if old_world != world:
            self.echo(
                f"note: the run trained with {old_world} process(es) and resumes with {world}: "
                f"each step now trains {batches.step_size} samples (--batch-size "
                f"{self.config.batch_size} per process); it continues at sample {position} of "
                f"epoch {progress.epoch + 1}, not bit for bit as it would have"
            )
            progress.batch = position // batches.step_size  # for the progress shown

    def _resume_rng(self, ckpt: Any) -> None:
        """Each rank's RNG state where the checkpoint has it (as many processes as now);
        else rank 0 takes the saved one and the others new seeds of their own."""
        state, dist = ckpt.state, self.dist
        ranks = state.get("rng_ranks")
        if dist.enabled and isinstance(ranks, list) and len(ranks) == dist.world:
            set_rng_state(ranks[dist.rank])
        elif dist.rank == 0:
            set_rng_state(state["rng"])
        else:
            epoch = int(ckpt.meta["progress"]["epoch"])
            seed_everything((self.config.seed + 7919 * dist.rank + 104_729 * epoch) % 2**32)

    def _monitor(self) -> str:
        return self.config.monitor or f"val_{self.task.monitor}"

    def _sample(
        self, dataset: Any, n: int, splits: DataSplits, device: torch.device
    ) -> torch.Tensor:
        """``n`` inputs of ``dataset``: a seeded shuffle, so several classes rather than the
        first few samples, and the same ``n`` every time."""
        sample = Batches(
            dataset, n, shuffle=True, seed=self.config.seed, collate_fn=splits.collate_fn
        )
        x: torch.Tensor = next(iter(sample.epoch(0)))[0]
        return x.to(device)

    def _train_epoch(
        self, model: nn.Module, setup: _Setup, progress: Progress, logger: TensorBoardLogger | None
    ) -> tuple[dict[str, Any], int, bool]:
        """One epoch (the rest of one, when resumed): the training metrics (merged over the
        processes), the samples trained (by all), and whether a stop was asked for."""
        cfg, dist, batches = self.config, self.dist, setup.batches
        model.train()
        metrics = self.task.new_metrics(setup.run)
        samples = 0
        stopped = False
        iterator, set_postfix, close = progress_bar(
            batches.epoch(progress.epoch, progress.position),
            batches.remaining(progress.position),
            f"epoch {progress.epoch + 1}/{cfg.epochs}",
            cfg.progress and dist.is_main,
        )
        started = time.perf_counter()
        try:
            for batch in iterator:
                x, y = (
                    batch[0].to(self.device, non_blocking=True),
                    batch[1].to(self.device, non_blocking=True),
                )
                x = self.speed.inputs(self.task.augment(x, setup.run))
                outputs, loss, stopped = self._step(model, setup, progress, x, y)
                progress.step += 1
                progress.batch += 1
                progress.position += batches.step_size
                samples += x.shape[0]
                metrics.update(outputs, x, y, loss.detach())
                lr = setup.optimizer.param_groups[0]["lr"]
                if logger is not None and progress.step % 10 == 0:
                    logger.scalars({"step/loss": loss.item(), "step/lr": lr}, progress.step)
                set_postfix(functools.partial(_postfix, loss, setup.optimizer, samples, started))
                if stopped:
                    break
        finally:
            close()
        samples = int(dist.total(samples))
        return self._reduced(metrics, samples), samples, stopped

    def _step(
        self, model: nn.Module, setup: _Setup, progress: Progress, x: torch.Tensor, y: Any
    ) -> tuple[Any, torch.Tensor, bool]:
        """One optimizer step on a batch: the outputs, the loss, and whether any process
        was asked to stop (all then stop after this step)."""
        optimizer, scaler, clip = setup.optimizer, setup.scaler, self.config.grad_clip
        setup.warmup.apply(progress.step)
        with self.speed.autocast():
            outputs = model(x)
            loss = self.task.loss(outputs, x, y)
        # Every process stops at the same step: one whose loss is not finite, or a Ctrl-C
        # reaching one, stops them all (before the gradients are exchanged).
        finite = bool(torch.isfinite(loss))
        diverged, stopped = self.dist.any(not finite, self.stop.requested)
        if diverged:
            when = f"at epoch {progress.epoch + 1}, step {progress.step + 1}"
            if finite:  # another process's loss: its error is the job's
                raise PeerFailed(f"another process's loss was not finite {when}")
            raise TrainingError(
                f"the loss became {loss.item()} {when}; stopped. The last good "
                f"checkpoint is {self.run_dir / 'last'}. Lower --lr or set --grad-clip"
            )
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if clip is not None:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), clip)
        scaler.step(optimizer)
        scaler.update()
        return outputs, loss, stopped

    def _reduced(self, metrics: Any, samples: int) -> dict[str, Any]:
        """A training accumulator's metrics over every process (rank 0's share where the
        task's accumulator cannot merge: said once)."""
        merged = self.dist.merged(metrics)
        if merged is None:
            self._warn_unmerged()
            merged = metrics
        try:
            return merged.compute() if samples else {}  # type: ignore[no-any-return]
        except ValueError:  # this process's share was empty (a resumed, nearly done epoch)
            return {}

    def _warn_unmerged(self) -> None:
        if not getattr(self, "_unmerged_said", False):
            self._unmerged_said = True
            self.echo(
                f"note: task {self.task.name!r}'s metrics have no merge(): the training "
                "metrics are rank 0's share; validation and test run on rank 0 alone"
            )

    @torch.no_grad()
    def evaluate(
        self, model: nn.Module, dataset: Any, collate_fn: Any, device: torch.device, run: TaskRun
    ) -> dict[str, Any]:
        """Metrics of ``model`` in eval mode on ``dataset``. In a data-parallel run each
        process evaluates every ``world``-th sample and the accumulators are merged: the
        same metrics on every process, each sample counted once."""
        dist = self.dist
        metrics = self.task.new_metrics(run)
        if not dist.enabled:
            return self._evaluate(model, dataset, collate_fn, device, metrics).compute()
        if not callable(getattr(metrics, "merge", None)):
            self._warn_unmerged()
            values = None
            if dist.is_main:
                values = self._evaluate(model, dataset, collate_fn, device, metrics).compute()
            return dict(dist.from_main(values))
        share = Subset(dataset, range(dist.rank, len(dataset), dist.world))
        self._evaluate(model, share, collate_fn, device, metrics)
        return dist.merged(metrics).compute()  # type: ignore[no-any-return]

    def _evaluate(
        self, model: nn.Module, dataset: Any, collate_fn: Any, device: torch.device, metrics: Any
    ) -> Any:
        model.eval()
        batches = Batches(
            dataset,
            max(self.config.batch_size, 256),
            shuffle=False,
            collate_fn=collate_fn,
            num_workers=self.config.num_workers,
            pin_memory=device.type == "cuda",
        )
        for batch in batches.epoch(0):
            x, y = self.speed.inputs(batch[0].to(device)), batch[1].to(device)
            with self.speed.autocast():  # as in training
                outputs = model(x)
                loss = self.task.loss(outputs, x, y)
            metrics.update(outputs, x, y, loss)
        return metrics

    def _log_epoch(
        self, logger: Any, model: nn.Module, val: Any, run: TaskRun, record: dict[str, Any]
    ) -> None:
        """Epoch scalars (train and val metrics, lr, speed), then whatever the task logs."""
        epoch = record["epoch"]
        values = {f"epoch/val_{k}": v for k, v in record["val"].items() if k != "samples"}
        values |= {f"epoch/train_{k}": v for k, v in record["train"].items() if k != "samples"}
        values |= {
            "epoch/lr": record["lr"],
            "epoch/samples_per_second": record["samples_per_second"] or 0.0,
        }
        logger.scalars(values, epoch)
        self.task.log_epoch(logger, model, val, run, epoch)

    def _report(self, record: dict[str, Any], improved: bool, monitor: str) -> None:
        def part(name: str, values: dict[str, Any]) -> str:
            summary = self.task.summary(values)
            return f"{name} {summary}" if summary else ""

        speed = record["samples_per_second"]
        line = "  ".join(
            p
            for p in (
                f"epoch {record['epoch']}/{self.config.epochs}",
                part("train", record["train"]),
                part("val", record["val"]),
                f"lr {record['lr']:.2e}",
                f"{speed:,.0f} samples/s" if speed else "",
                "*best*" if improved else "",
            )
            if p
        )
        self.echo(line)

    def _finish(
        self, model: nn.Module, splits: DataSplits, run: TaskRun, progress: Progress
    ) -> dict[str, Any]:
        """Evaluate the best checkpoint on the test split; the task writes its figures."""
        if self.dist.is_main:  # the run directory is rank 0's; its weights reach the others
            best = load_checkpoint(self.run_dir, tag="best")
            best.load_into(model, self.config.model)
        model.to(run.device)
        self.dist.broadcast_weights(model)
        test = self.evaluate(model, splits.test, splits.collate_fn, run.device, run)
        metrics: dict[str, Any] = {
            "model": self.config.model,
            "dataset": run.info.name,
            "task": self.task.name,
            "best_epoch": progress.best_epoch,
            "monitor": self._monitor(),
            "best": progress.best,
            "test": test,
            "history": progress.history,
        }
        if self.dist.is_main:  # figures and files: the run directory is rank 0's
            metrics.update(self.task.finish(model, test, splits, run))
        summary = ", ".join(f"{k} {v:.4f}" for k, v in _scalars(test).items() if k != "samples")
        counted = f"{test['samples']} samples, " if "samples" in test else ""
        self.echo(f"test ({counted}best epoch {progress.best_epoch}): {summary}")
        return metrics


def _postfix(
    loss: torch.Tensor, optimizer: torch.optim.Optimizer, samples: int, started: float
) -> dict[str, str]:
    """The progress bar's figures (the loss as a float: a device synchronisation)."""
    elapsed = time.perf_counter() - started
    return {
        "loss": f"{loss.item():.4f}",
        "lr": f"{optimizer.param_groups[0]['lr']:.2e}",
        "samples/s": f"{samples / elapsed:,.0f}" if elapsed > 0 else "-",
    }


def _quiet(line: str) -> None:
    """Where the lines of ranks other than 0 go."""


class _NoLock:
    """What ranks other than 0 hold: the run directory's lock is rank 0's."""

    def release(self) -> None:
        return None


def _remove_leftovers(run_dir: Path) -> None:
    """Remove what an earlier process killed mid-write left (temporary files, a partial
    checkpoint): only zoo's own names, and only under the run directory's lock."""
    for entry in run_dir.glob(".*"):
        own = entry.name.endswith(".tmp") or entry.name.endswith(".link-tmp")
        # A link-tmp is a symbolic link (to a checkpoint directory): unlink it, never follow.
        if own and (entry.is_symlink() or entry.is_file()):
            entry.unlink(missing_ok=True)
    checkpoints = run_dir / "checkpoints"
    if checkpoints.is_dir():
        for entry in checkpoints.glob(".*.partial"):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)


def _scalars(values: dict[str, Any]) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in values.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    }
