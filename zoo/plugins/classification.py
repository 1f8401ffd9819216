"""Classification, zoo's built-in task plugin: cross-entropy on class scores, accuracy, top-5,
OA/AA/kappa, a confusion matrix; for images (``classification``) and token sequences
(``sequence_classification``). Also ``block``: what a building block (BAM) names, which
cannot be trained alone."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.datasets import IMAGE, DatasetInfo, DataSplits
from zoo.errors import UsageError
from zoo.hookspecs import TaskRegistrar, hookimpl
from zoo.metrics import ClassificationMetrics
from zoo.plots import save_confusion_matrix_png
from zoo.registry import ModelSpec
from zoo.tasks import Metrics, Task, TaskRun

__all__ = ["Block", "Classification", "SequenceClassification", "random_shift"]


def random_shift(x: Tensor, fraction: float = 0.07) -> Tensor:
    """Translate each image of ``x`` [B, C, H, W] by up to ``fraction`` of its size.

    Whole-pixel shifts, independent per image; edge pixels are repeated into the gap. Small
    random translations are the classic fix for LeNet-sized models trained on a few thousand
    digits: measured here, they are worth about a point of test accuracy on mnist5k. They draw
    from torch's global RNG, which checkpoints save, so resumed runs stay exact.
    """
    b, _, h, w = x.shape
    max_y, max_x = round(fraction * h), round(fraction * w)
    if max_y == 0 and max_x == 0:
        return x
    device = x.device
    dy = torch.randint(-max_y, max_y + 1, (b,), device=device)
    dx = torch.randint(-max_x, max_x + 1, (b,), device=device)
    padded = F.pad(x, (max_x, max_x, max_y, max_y), mode="replicate")
    # Every HxW window of the padded image, as a view: [B, C, 2*max_y+1, 2*max_x+1, H, W].
    windows = padded.unfold(2, h, 1).unfold(3, w, 1)
    # Advanced indices around a slice: the batch axis leads, giving [B, C, H, W].
    return windows[torch.arange(b, device=device), :, max_y - dy, max_x - dx]


class _Accumulator:
    """:class:`~zoo.metrics.ClassificationMetrics` behind the task's ``Metrics`` interface."""

    def __init__(self, info: DatasetInfo) -> None:
        self.metrics = ClassificationMetrics(info.num_classes, class_names=info.class_names)

    def update(self, outputs: Any, x: Tensor, y: Tensor, loss: Tensor) -> None:
        self.metrics.update(outputs.detach(), y, loss.detach())

    def compute(self) -> dict[str, Any]:
        return self.metrics.compute()

    def merge(self, other: _Accumulator) -> None:
        self.metrics.merge(other.metrics)


class Classification(Task):
    """One output of class scores (logits) ``[B, classes]``, integer targets."""

    name = "classification"
    description = "cross-entropy on logits; accuracy, top-5, OA/AA/kappa, confusion matrix PNG"
    metrics: ClassVar[Mapping[str, bool]] = {
        "accuracy": True,
        "loss": False,
        "oa": True,
        "aa": True,
        "kappa": True,
    }
    monitor = "accuracy"
    gate_metric = ("accuracy", True)
    classifies = True

    def gate_predictions(self, outputs: Sequence[Tensor], postprocess: str) -> Tensor | None:
        if postprocess == "topk":  # (scores, indices), best first
            return outputs[1][:, 0].long()
        return outputs[0].argmax(dim=-1)

    def gate_scores(self, outputs: Sequence[Tensor], targets: Tensor, postprocess: str) -> Tensor:
        predicted = self.gate_predictions(outputs, postprocess)
        assert predicted is not None
        return (predicted == targets).float()

    def check_model(self, spec: ModelSpec) -> None:
        if len(spec.outputs) != 1 or len(spec.outputs[0].shape) != 1:
            shapes = ", ".join(f"{o.name} {list(o.shape)}" for o in spec.outputs)
            raise UsageError(
                f"model {spec.name!r} outputs {shapes}; task {self.name!r} needs one output "
                "of class scores [B, classes]"
            )

    def default_data(self, spec: ModelSpec) -> str:
        return "names" if spec.input.is_integer else "mnist5k"

    def model_args(
        self, spec: ModelSpec, info: DatasetInfo, given: Mapping[str, Any]
    ) -> dict[str, Any]:
        """``num_classes`` (and ``vocab_size`` for token datasets) from the dataset, where the
        builder takes them; a model that cannot take the dataset's class count is refused."""
        args = dict(given)
        options = spec.builder_parameters()
        derived = {"num_classes": info.num_classes}
        if info.vocab_size is not None:
            derived["vocab_size"] = info.vocab_size
        for key, value in derived.items():
            if key not in options:
                continue
            if key in args and args[key] != value:
                raise UsageError(
                    f"{key}={args[key]} does not match dataset {info.name!r}, which has {value}"
                )
            args[key] = value
        classes = spec.outputs[0].shape[-1]
        if "num_classes" not in options and classes != info.num_classes:
            raise UsageError(
                f"model {spec.name!r} has {classes} classes and no num_classes option, but "
                f"dataset {info.name!r} has {info.num_classes}"
            )
        return args

    def augment(self, x: Tensor, run: TaskRun) -> Tensor:
        if run.augment == "shift" and run.info.kind == IMAGE:
            return random_shift(x)
        return x

    def loss(self, outputs: Any, x: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(outputs.float(), y)

    def new_metrics(self, run: TaskRun) -> Metrics:
        return _Accumulator(run.info)

    def summary(self, values: Mapping[str, Any]) -> str:
        parts = [super().summary(values)]
        if "accuracy" in values:
            parts.append(f"acc {100 * values['accuracy']:.2f}%")
        return " ".join(p for p in parts if p)

    def finish(
        self, model: nn.Module, test: Mapping[str, Any], splits: DataSplits, run: TaskRun
    ) -> dict[str, Any]:
        """The confusion matrix as a PNG, and the accuracy of always answering the commonest
        class of the test split (what a model has to beat)."""
        confusion = test["confusion_matrix"]
        counts = [sum(row) for row in confusion]
        save_confusion_matrix_png(
            confusion,
            list(run.info.class_names),
            run.run_dir / "confusion_matrix.png",
            title=f"{run.spec.name} on {run.info.name} (test)",
        )
        return {"majority_baseline_accuracy": max(counts) / max(1, sum(counts))}


class SequenceClassification(Classification):
    """Classification of token sequences (names -> language)."""

    name = "sequence_classification"
    description = "classification of token sequences (default data: names)"

    def default_data(self, spec: ModelSpec) -> str:
        return "names"


class Block(Task):
    """What a building block names (BAM): a part of models, not a model to train."""

    name = "block"
    description = "a building block of other models; not trained alone"
    metrics: ClassVar[Mapping[str, bool]] = {"loss": False}
    monitor = "loss"

    def check_model(self, spec: ModelSpec) -> None:
        raise UsageError(
            f"model {spec.name!r} is a building block, not a trainable model; train a model "
            "that contains it (`zoo list --task classification`)"
        )

    def loss(self, outputs: Any, x: Tensor, y: Tensor) -> Tensor:
        raise UsageError("a building block has no loss")

    def new_metrics(self, run: TaskRun) -> Metrics:
        raise UsageError("a building block has no metrics")


@hookimpl
def zoo_register_tasks(registry: TaskRegistrar) -> None:
    registry.register(Classification)
    registry.register(SequenceClassification)
    registry.register(Block)
