"""Regression for zoo: a task, a dataset and a model, none of which zoo ships.

- task ``regression``: mean squared error on one number per sample; MAE and R^2; writes the
  test split's predictions to ``test_predictions.csv``;
- dataset ``diabetes``: scikit-learn's 442 patients, 10 features -> disease progression (the
  target standardised), split at random with the run's seed;
- model ``diabetes_mlp``: a one-hidden-layer MLP.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.utils.data import TensorDataset

import zoo
from zoo.datasets import DatasetInfo, DataSplits, LoadRequest
from zoo.hookspecs import DatasetRegistrar, ModelRegistrar, TaskRegistrar


class Moments:
    """MSE, MAE and R^2 over batches, from running sums (the task's ``Metrics``)."""

    def __init__(self) -> None:
        self.samples = 0
        self.sums = dict.fromkeys(("se", "ae", "y", "yy", "loss"), 0.0)

    def update(self, outputs: Tensor, x: Tensor, y: Tensor, loss: Tensor) -> None:
        pred, y = outputs.detach().squeeze(-1).double(), y.double()
        self.samples += len(y)
        self.sums["se"] += float(((pred - y) ** 2).sum())
        self.sums["ae"] += float((pred - y).abs().sum())
        self.sums["y"] += float(y.sum())
        self.sums["yy"] += float((y * y).sum())
        self.sums["loss"] += float(loss) * len(y)

    def merge(self, other: Moments) -> None:
        """Add another process's sums (a data-parallel run)."""
        self.samples += other.samples
        for key, value in other.sums.items():
            self.sums[key] += value

    def compute(self) -> dict[str, Any]:
        n, sums = self.samples, self.sums
        mse = sums["se"] / n
        variance = sums["yy"] / n - (sums["y"] / n) ** 2
        return {
            "samples": n,
            "loss": sums["loss"] / n,
            "mse": mse,
            "mae": sums["ae"] / n,
            "r2": 1 - mse / variance if variance > 0 else math.nan,
        }


class Regression(zoo.Task):
    """One number per sample, a float target."""

    name = "regression"
    description = "mean squared error on one number per sample; MAE, R^2, test predictions CSV"
    metrics: ClassVar[Mapping[str, bool]] = {"mse": False, "mae": False, "r2": True, "loss": False}
    monitor = "mse"

    def check_model(self, spec: zoo.ModelSpec) -> None:
        if [o.shape for o in spec.outputs] != [(1,)]:
            raise zoo.UsageError(f"model {spec.name!r} must output one number per sample")

    def default_data(self, spec: zoo.ModelSpec) -> str:
        return "diabetes"

    def loss(self, outputs: Tensor, x: Tensor, y: Tensor) -> Tensor:
        return nn.functional.mse_loss(outputs.squeeze(-1), y)

    def new_metrics(self, run: zoo.TaskRun) -> Moments:
        return Moments()

    def summary(self, values: Mapping[str, Any]) -> str:
        return f"mse {values['mse']:.4f} r2 {values['r2']:.3f}"

    def finish(
        self, model: nn.Module, test: Mapping[str, Any], splits: DataSplits, run: zoo.TaskRun
    ) -> dict[str, Any]:
        x, y = splits.test.tensors  # type: ignore[attr-defined]
        with torch.no_grad():
            predictions = model.eval()(x.to(run.device)).squeeze(-1).cpu()
        with open(run.run_dir / "test_predictions.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["target", "prediction"])
            writer.writerows(zip(y.tolist(), predictions.tolist(), strict=True))
        # What predicting the mean would score: the number to beat.
        return {"baseline_mse": float(((y - y.mean()) ** 2).mean())}


def load_diabetes(request: LoadRequest) -> DataSplits:
    from sklearn.datasets import load_diabetes as sklearn_diabetes  # with the first load only

    info = DatasetInfo(
        name=request.name,
        kind="table",  # a kind of this plugin's own: zoo checks image and token kinds only
        num_classes=0,
        class_names=(),
        description="442 patients, 10 features -> disease progression (standardised)",
        source="scikit-learn (Efron et al. 2004)",
    )
    request.check(info)
    features, target = sklearn_diabetes(return_X_y=True)
    x = torch.tensor(features, dtype=torch.float32)
    y = torch.tensor(target, dtype=torch.float32)
    y = (y - y.mean()) / y.std()
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(request.seed))
    n_val, n_test = round(len(y) * request.val_fraction), round(len(y) * request.test_fraction)
    parts = order[n_val + n_test :], order[:n_val], order[n_val : n_val + n_test]
    train, val, test = (TensorDataset(x[i], y[i]) for i in parts)
    return DataSplits(train, val, test, info)


class Mlp(nn.Module):
    def __init__(self, hidden: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(10, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


@zoo.hookimpl
def zoo_register_tasks(registry: TaskRegistrar) -> None:
    registry.register(Regression)  # the class: zoo makes one per run, with --task-arg options


@zoo.hookimpl
def zoo_register_datasets(registry: DatasetRegistrar) -> None:
    registry.register("diabetes", load_diabetes, "scikit-learn's diabetes table", kind="table")


@zoo.hookimpl
def zoo_register_models(registry: ModelRegistrar) -> None:
    registry.register(
        zoo.ModelSpec(
            name="diabetes_mlp",
            builder=Mlp,
            task="regression",
            input=zoo.InputSpec((10,), value_range=(-0.2, 0.2)),
            outputs=(zoo.OutputSpec("progression", (1,)),),
            summary="a one-hidden-layer MLP for scikit-learn's diabetes table",
        )
    )
