"""Classification metrics accumulated over batches.

The accumulator keeps exact integer counts (or float64 sums) on the CPU, so feeding the
same data in many small batches or in one big batch gives the same result, and ``compute``
returns plain Python numbers that ``json.dumps`` accepts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["ClassificationMetrics", "as_confusion_matrix", "cohen_kappa"]

#: Batches are checked as they come but counted in together, once their logits hold this many
#: values (and before any result is read): one vectorised pass instead of a dozen small tensor
#: operations per batch, which cost LeNet about 5% of its training speed on 2 CPU cores.
FLUSH_VALUES = 1 << 20


def as_confusion_matrix(confusion: Tensor | Sequence[Sequence[int]] | np.ndarray) -> Tensor:
    """``confusion`` as a CPU int64 tensor, after the one check of a confusion matrix that
    zoo makes (for Cohen's kappa and for the figure of :mod:`zoo.plots`): ValueError unless
    it is square with at least one class and holds integer counts, none negative.

    Takes a tensor, a NumPy array or nested sequences of ints; a tensor is not changed.
    """
    if isinstance(confusion, Tensor):
        tensor = confusion.detach().to("cpu")
        shape, dtype = tuple(tensor.shape), str(tensor.dtype)
        integer = not (
            tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool
        )
        # NumPy has every integer dtype of torch (and no bfloat16, which is no count).
        matrix = tensor.numpy() if integer else None
    else:
        matrix = np.asarray(confusion)
        shape, dtype = matrix.shape, str(matrix.dtype)
        integer = np.issubdtype(matrix.dtype, np.integer)  # not bool, not object
    if len(shape) != 2 or shape[0] != shape[1]:
        raise ValueError(f"a confusion matrix must be square, got shape {shape}")
    if shape[0] == 0:
        raise ValueError(f"a confusion matrix needs at least one class, got shape {shape}")
    if not integer or matrix is None:
        raise ValueError(f"a confusion matrix holds integer counts, got dtype {dtype}")
    if bool((matrix < 0).any()):
        raise ValueError("a confusion matrix cannot hold negative counts")
    if bool((matrix > np.iinfo(np.int64).max).any()):  # uint64
        raise ValueError("a confusion matrix holds counts below 2**63 only")
    return torch.from_numpy(matrix.astype(np.int64))


def cohen_kappa(confusion: Tensor | Sequence[Sequence[int]] | np.ndarray) -> float:
    """Cohen's kappa (p_o - p_e) / (1 - p_e) of a square confusion matrix of counts.

    Computed in exact integer arithmetic. The degenerate case p_e == 1 happens only when
    every sample is one class and was predicted as that class (then p_o == 1 as well):
    agreement is perfect, so kappa is defined as 1.0 there (scikit-learn returns NaN, which
    is not valid JSON). Raises ValueError for an empty matrix (no samples).
    """
    matrix = as_confusion_matrix(confusion)
    total = int(matrix.sum())
    if total == 0:
        raise ValueError("Cohen's kappa is undefined without samples (the confusion matrix is 0)")
    trace = int(matrix.trace())
    rows, columns = matrix.sum(dim=1).tolist(), matrix.sum(dim=0).tolist()
    chance = sum(r * c for r, c in zip(rows, columns, strict=True))
    # kappa = (trace/n - chance/n^2) / (1 - chance/n^2), multiplied through by n^2
    denominator = total * total - chance
    if denominator == 0:
        return 1.0
    return (total * trace - chance) / denominator


def _batch_loss(loss: float | Tensor) -> float:
    if isinstance(loss, Tensor):
        if loss.numel() != 1:
            raise ValueError(f"loss must be the batch's mean (one value), got {loss.numel()}")
        return float(loss.detach().item())
    return float(loss)


class ClassificationMetrics:
    """Accumulates over batches; everything on CPU, the confusion matrix as int64.

    ``update`` takes logits ``[B, C]`` and integer targets ``[B]``; the prediction is the
    arg-max (the first maximal class on ties). ``compute`` returns "samples", "loss",
    "accuracy", "top{k}_accuracy" (each k > 1 in ``topk`` with k < C), "per_class_accuracy",
    "confusion_matrix" (rows = true class, columns = predicted), "oa", "aa" and "kappa".
    """

    def __init__(
        self,
        num_classes: int,
        class_names: Sequence[str] | None = None,
        topk: Sequence[int] = (1, 5),
    ) -> None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        names = [str(i) for i in range(num_classes)] if class_names is None else list(class_names)
        if len(names) != num_classes:
            raise ValueError(f"got {len(names)} class names for {num_classes} classes")
        if len(set(names)) != len(names):
            raise ValueError(f"class names must be unique, got {names}")
        for k in topk:
            if isinstance(k, bool) or not isinstance(k, int) or k < 1:
                raise ValueError(f"topk values must be positive ints, got {k!r}")
        self.num_classes = num_classes
        self.class_names: tuple[str, ...] = tuple(names)
        #: the k whose top-k accuracy is reported: k = 1 is "accuracy", k >= C is always 1
        self.topk: tuple[int, ...] = tuple(sorted({k for k in topk if 1 < k < num_classes}))
        self.reset()

    def reset(self) -> None:
        """Forget every batch seen so far."""
        self._confusion = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64)
        self._topk_correct = dict.fromkeys(self.topk, 0)
        self._samples = 0
        self._loss_sum = 0.0
        self._loss_samples = 0
        #: Checked batches not counted in yet: (logits, int64 targets, mean loss or None).
        self._pending: list[tuple[Tensor, Tensor, float | None]] = []
        self._pending_values = 0

    def update(self, logits: Tensor, targets: Tensor, loss: float | Tensor | None = None) -> None:
        """Add one batch. ``loss`` is the batch's mean loss; it is weighted by the batch size.

        The reported loss is the mean over the samples of the batches that gave one.
        """
        logits = logits.detach()
        targets = targets.detach()
        if logits.ndim != 2 or logits.shape[1] != self.num_classes:
            raise ValueError(
                f"logits must be [batch, {self.num_classes}], got {tuple(logits.shape)}"
            )
        if targets.ndim != 1 or targets.shape[0] != logits.shape[0]:
            raise ValueError(
                f"targets must be [{logits.shape[0]}] to match the logits, "
                f"got {tuple(targets.shape)}"
            )
        if targets.is_floating_point() or targets.is_complex() or targets.dtype == torch.bool:
            raise ValueError(f"targets must be integer class indices, got dtype {targets.dtype}")
        targets = targets.to(torch.int64)
        batch = int(targets.shape[0])
        if batch:
            low, high = (int(v) for v in torch.aminmax(targets))
            if low < 0 or high >= self.num_classes:
                raise ValueError(
                    f"targets must lie in [0, {self.num_classes}), got values from {low} to {high}"
                )
        batch_loss = None if loss is None else _batch_loss(loss)
        if batch == 0:
            return
        self._pending.append((logits.float(), targets, batch_loss))
        self._pending_values += logits.numel()
        if self._pending_values >= FLUSH_VALUES:
            self._flush()

    def _flush(self) -> None:
        """Count in the pending batches: the same counts and float sums, in the same order,
        as counting each batch when it came."""
        if not self._pending:
            return
        pending, self._pending, self._pending_values = self._pending, [], 0
        logits = torch.cat([p[0] for p in pending]).to("cpu")
        targets = torch.cat([p[1] for p in pending]).to("cpu")
        c = self.num_classes
        predictions = logits.argmax(dim=1)
        self._confusion += torch.bincount(targets * c + predictions, minlength=c * c).view(c, c)
        if self.topk:
            top = logits.topk(max(self.topk), dim=1).indices
            hits = top == targets.unsqueeze(1)
            for k in self.topk:
                self._topk_correct[k] += int(hits[:, :k].any(dim=1).sum())
        for _, batch_targets, batch_loss in pending:
            batch = int(batch_targets.shape[0])
            self._samples += batch
            if batch_loss is not None:
                self._loss_sum += batch_loss * batch
                self._loss_samples += batch

    def merge(self, other: ClassificationMetrics) -> None:
        """Add the batches ``other`` has seen (another process's share of a data-parallel
        run): the result is what one accumulator of every batch computes."""
        if other.num_classes != self.num_classes or other.topk != self.topk:
            raise ValueError(
                f"cannot merge metrics of {other.num_classes} classes (top-k {other.topk}) "
                f"into {self.num_classes} (top-k {self.topk})"
            )
        self._flush()
        other._flush()
        self._confusion += other._confusion
        for k in self.topk:
            self._topk_correct[k] += other._topk_correct[k]
        self._samples += other._samples
        self._loss_sum += other._loss_sum
        self._loss_samples += other._loss_samples

    @property
    def confusion_matrix(self) -> Tensor:
        """A copy of the int64 ``[C, C]`` counts: rows = true class, columns = predicted."""
        self._flush()
        return self._confusion.clone()

    def compute(self) -> dict[str, Any]:
        """The metrics over every sample so far (see the class docstring for the keys).

        Per-class accuracy is the recall of each class, None for a class without samples;
        "aa" averages it over the classes that have samples. Raises ValueError before any
        sample was seen.
        """
        self._flush()
        if self._samples == 0:
            raise ValueError("no samples: call update() with at least one batch before compute()")
        total = self._samples
        correct = int(self._confusion.trace())
        support = self._confusion.sum(dim=1).tolist()
        diagonal = self._confusion.diagonal().tolist()
        recalls: list[float | None] = [
            hit / n if n else None for hit, n in zip(diagonal, support, strict=True)
        ]
        present = [r for r in recalls if r is not None]
        result: dict[str, Any] = {
            "samples": total,
            "loss": self._loss_sum / self._loss_samples if self._loss_samples else None,
            "accuracy": correct / total,
        }
        for k in self.topk:
            result[f"top{k}_accuracy"] = self._topk_correct[k] / total
        result["per_class_accuracy"] = dict(zip(self.class_names, recalls, strict=True))
        result["confusion_matrix"] = self._confusion.tolist()
        result["oa"] = correct / total
        result["aa"] = sum(present) / len(present)
        result["kappa"] = cohen_kappa(self._confusion)
        return result
