"""Training tasks: the interface a task plugin implements.

A :class:`Task` is what the trainer asks about everything that depends on what a model does:
its loss, its metrics (and which one to monitor, higher or lower being better), the builder
options a dataset decides (a classifier's class count), how training batches are augmented,
how an epoch is logged and what a run writes at its end (a confusion matrix, a grid of
reconstructions...). The trainer keeps only the loop. A model names its task
(``ModelSpec.task``); zoo's classification tasks are plugins (``zoo/plugins/``), the VAE's
lives in the VAE's plugin, and a plugin adds one with the ``zoo_register_tasks`` hook::

    @zoo.hookimpl
    def zoo_register_tasks(registry):
        registry.register(Regression)       # the class: one instance is made per run

A task's options are its ``__init__``'s keyword arguments (``zoo train --task-arg K=V``),
checked like a model builder's.

zoo 0.1's ``zoo.Task`` was an enum of task names; its members still read as the names they
became (``zoo.Task.CLASSIFICATION`` is ``"classification"``), with a ``DeprecationWarning``,
until zoo 0.3 (:class:`zoo.registry.LegacyTask`).

Importing this module does not import torch.
"""

from __future__ import annotations

import inspect
import warnings
from abc import ABC, ABCMeta, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from zoo.errors import InvalidSpecError, UnknownTaskError, UsageError
from zoo.registry import LegacyTask, ModelSpec, Registry, check_options

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn
    from torch.utils.data import Dataset

    from zoo.datasets import DatasetInfo, DataSplits

__all__ = ["EpochLogger", "Metrics", "Task", "TaskRegistry", "TaskRun"]


class Metrics(Protocol):
    """Accumulates a task's metrics over batches."""

    def update(self, outputs: Any, x: Tensor, y: Tensor, loss: Tensor) -> None:
        """Add one batch: the model's outputs, its input and target, and the batch's loss."""

    def compute(self) -> dict[str, Any]:
        """The metrics over every batch so far: JSON values; numbers are what is logged."""

    # Optional: ``merge(self, other)`` adds the batches another accumulator of the same task
    # has seen. In a data-parallel run (torchrun) each process accumulates its share and the
    # shares are merged, so the metrics are those of every sample. An accumulator without it
    # still trains data-parallel: its training metrics are rank 0's share, and validation
    # and test run on rank 0 alone.


class EpochLogger(Protocol):
    """Where a task may log more than the trainer's scalars (TensorBoard)."""

    def scalars(self, values: Mapping[str, float], step: int) -> None: ...

    def images(
        self, tag: str, images: Tensor, step: int, value_range: tuple[float, float]
    ) -> None: ...


@dataclass(frozen=True)
class TaskRun:
    """What a task knows of the run it serves."""

    spec: ModelSpec
    info: DatasetInfo
    #: Where the run writes: a task's end-of-run files go here.
    run_dir: Path
    device: torch.device
    seed: int
    #: The run's ``--augment`` choice (``shift`` or ``none``).
    augment: str
    #: ``sample(split, n)``: n inputs of a split on the run's device, the same n every call.
    sample: Callable[[Dataset[Any], int], Tensor]


#: zoo 0.1's ``zoo.Task`` enum members -> the task names they became, each read as
#: ``zoo.Task.MEMBER`` with a DeprecationWarning until zoo 0.3 (docs/plugins.md, Deprecations).
DEPRECATED_NAMES: Mapping[str, str] = MappingProxyType({m.name: m.value for m in LegacyTask})


def _deprecated(what: str, member: LegacyTask) -> None:
    warnings.warn(
        f'{what} is deprecated since zoo 0.2 and will be removed in 0.3: use task="{member.value}"',
        DeprecationWarning,
        stacklevel=3,
    )


class _TaskMeta(ABCMeta):
    """Task's metaclass: ABCMeta, plus zoo 0.1's enum members read as attributes of ``Task``
    itself (``zoo.Task.CLASSIFICATION``), each a :class:`~zoo.registry.LegacyTask` member.

    Not 0.1's lookup by value (``zoo.Task("classification")``): a ``__call__`` here would
    hide every task class's ``__init__`` from ``inspect.signature``, which checks task
    options."""

    # Hidden from type checkers, which keep refusing attributes Task does not have: the
    # aliases are for 0.1 plugins at run time only.
    if not TYPE_CHECKING:

        def __getattr__(cls, attr: str) -> LegacyTask:
            # Called only when normal lookup fails, so Task's own attributes (and a subclass's)
            # are untouched; only Task itself has the aliases, not its subclasses.
            member = LegacyTask.__members__.get(attr) if cls is globals().get("Task") else None
            if member is None:  # what type's own lookup says, "Did you mean" included
                raise AttributeError(
                    f"type object {cls.__name__!r} has no attribute {attr!r}", name=attr, obj=cls
                )
            _deprecated(f"zoo.Task.{attr}", member)
            return member


class Task(ABC, metaclass=_TaskMeta):
    """How models of one kind are trained and evaluated. Subclass it, set the class
    attributes, implement :meth:`loss` and :meth:`new_metrics`; override the rest as needed.
    """

    #: The name models give as ``ModelSpec.task``.
    name: ClassVar[str]
    #: One line for ``zoo tasks``.
    description: ClassVar[str] = ""
    #: The metrics ``--monitor val_NAME`` may name, each mapped to whether higher is better.
    metrics: ClassVar[Mapping[str, bool]]
    #: The metric monitored by default (a key of :attr:`metrics`).
    monitor: ClassVar[str]

    #: What ``zoo export``'s accuracy gate measures on held-out data, and whether higher is
    #: better (``("accuracy", True)``); None: this task's exports have no accuracy gate, and
    #: only fp32 (tensor parity) is exported for them.
    gate_metric: ClassVar[tuple[str, bool] | None] = None
    #: Whether the model's one output is class logits ``[B, classes]`` trained with
    #: cross-entropy on integer labels: what ``zoo bench-train``'s hand-written loop trains
    #: (it compares the trainer with that loop only for such tasks).
    classifies: ClassVar[bool] = False

    def gate_targets(self, model_inputs: Tensor, targets: Tensor) -> Tensor:
        """What :meth:`gate_scores` compares the outputs with, saved with the export so that
        ``zoo export --check`` needs no dataset: the dataset's targets (default), or the
        model's own input for a task without labels (a reconstruction). ``model_inputs`` are
        what the model saw: the exported module's input after its preprocessing."""
        return targets

    def gate_scores(self, outputs: Sequence[Tensor], targets: Tensor, postprocess: str) -> Tensor:
        """One float per sample whose mean is :attr:`gate_metric`, from the exported module's
        ``outputs`` (after ``postprocess``: ``none``, ``softmax`` or ``topk``)."""
        raise NotImplementedError(f"task {self.name!r} has no gate_scores")

    def gate_predictions(self, outputs: Sequence[Tensor], postprocess: str) -> Tensor | None:
        """The predicted class of each sample (int64), for the rate at which an artifact
        agrees with eager PyTorch; None for tasks that do not predict classes."""
        return None

    def check_model(self, spec: ModelSpec) -> None:
        """Raise :class:`~zoo.errors.UsageError` if ``spec``'s model cannot be trained for this
        task (its outputs do not fit, it is only a building block...)."""
        return None  # optional: nothing to do unless a subclass says so

    def default_data(self, spec: ModelSpec) -> str:
        """The dataset used when ``--data`` is not given."""
        raise UsageError(f"task {self.name!r} has no default dataset: pass --data")

    def model_args(
        self, spec: ModelSpec, info: DatasetInfo, given: Mapping[str, Any]
    ) -> dict[str, Any]:
        """The builder options to train with: ``given`` plus what the dataset decides."""
        return dict(given)

    def augment(self, x: Tensor, run: TaskRun) -> Tensor:
        """A training batch's input as the model should see it (default: unchanged)."""
        return x

    @abstractmethod
    def loss(self, outputs: Any, x: Tensor, y: Tensor) -> Tensor:
        """The batch's mean loss from the model's ``outputs`` on ``x`` and the target ``y``."""

    @abstractmethod
    def new_metrics(self, run: TaskRun) -> Metrics:
        """A fresh accumulator of this task's metrics."""

    def summary(self, values: Mapping[str, Any]) -> str:
        """A few of ``values`` (computed metrics) for the epoch line: ``loss 0.1234``."""
        loss = values.get("loss")
        return f"loss {loss:.4f}" if isinstance(loss, float) else ""

    def log_epoch(
        self,
        logger: EpochLogger,
        model: nn.Module,
        val: Dataset[Any],
        run: TaskRun,
        epoch: int,
    ) -> None:
        """Log more than the epoch's scalars (which the trainer logs), e.g. images."""
        return None  # optional: nothing to do unless a subclass says so

    def finish(
        self, model: nn.Module, test: Mapping[str, Any], splits: DataSplits, run: TaskRun
    ) -> dict[str, Any]:
        """Called once after the best checkpoint was evaluated on the test split (``test``):
        write the run's figures into ``run.run_dir``; return metrics to add to
        ``metrics.json``."""
        return {}


class TaskRegistry(Registry[type[Task]]):
    """Task names -> :class:`Task` classes (instantiated per run with the run's options)."""

    def __init__(self) -> None:
        super().__init__("task", unknown=UnknownTaskError)

    def check(self, obj: type[Task]) -> str:
        if not (inspect.isclass(obj) and issubclass(obj, Task)):
            raise InvalidSpecError(
                f"expected a zoo.Task subclass (the class, not an instance), got "
                f"{type(obj).__name__}: {obj!r:.80}"
            )
        name = super().check(obj)
        if inspect.isabstract(obj):
            missing = ", ".join(sorted(getattr(obj, "__abstractmethods__", ())))
            raise InvalidSpecError(f"task {name!r} does not implement {missing}")
        metrics = getattr(obj, "metrics", None)
        if not isinstance(metrics, Mapping) or getattr(obj, "monitor", None) not in metrics:
            raise InvalidSpecError(
                f"task {name!r}: monitor {getattr(obj, 'monitor', None)!r} must be one of its "
                f"metrics {list(metrics or ())}"
            )
        return name

    def create(self, name: str, options: Mapping[str, Any]) -> Task:
        """An instance of task ``name`` with ``options`` (checked like a builder's)."""
        cls = self.get(name)
        check_options(cls, options, f"task {name!r}")
        return cls(**options)
