"""A task zoo does not ship: a plugin registers regression, a dataset for it (scikit-learn's
diabetes table) and a model, and ``zoo train`` trains it end to end with no change to zoo."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.helpers import run_zoo

REGRESSION_PLUGIN = '''
    """Regression on scikit-learn's diabetes table: a task, a dataset and a model."""

    import math

    import torch
    from torch import nn
    from torch.utils.data import TensorDataset

    import zoo
    from zoo.datasets import DatasetInfo, DataSplits


    class Moments:
        """MSE, MAE and R^2 over batches, from running sums."""

        def __init__(self):
            self.n = 0
            self.sums = dict.fromkeys(("se", "ae", "y", "yy", "loss"), 0.0)

        def update(self, outputs, x, y, loss):
            pred = outputs.detach().squeeze(-1).double()
            y = y.double()
            self.n += len(y)
            self.sums["se"] += float(((pred - y) ** 2).sum())
            self.sums["ae"] += float((pred - y).abs().sum())
            self.sums["y"] += float(y.sum())
            self.sums["yy"] += float((y * y).sum())
            self.sums["loss"] += float(loss) * len(y)

        def compute(self):
            n, s = self.n, self.sums
            variance = s["yy"] / n - (s["y"] / n) ** 2
            mse = s["se"] / n
            return {
                "samples": n,
                "loss": s["loss"] / n,
                "mse": mse,
                "mae": s["ae"] / n,
                "r2": 1 - mse / variance if variance > 0 else math.nan,
            }


    class Regression(zoo.Task):
        name = "regression"
        description = "mean squared error on one number per sample; MAE and R^2"
        metrics = {"mse": False, "mae": False, "r2": True, "loss": False}
        monitor = "mse"

        def check_model(self, spec):
            if [o.shape for o in spec.outputs] != [(1,)]:
                raise zoo.UsageError(f"{spec.name} must output one number per sample")

        def default_data(self, spec):
            return "diabetes"

        def loss(self, outputs, x, y):
            return nn.functional.mse_loss(outputs.squeeze(-1), y)

        def new_metrics(self, run):
            return Moments()

        def summary(self, values):
            return f"mse {values['mse']:.4f} r2 {values['r2']:.3f}"

        def finish(self, model, test, splits, run):
            x, y = splits.test.tensors
            with torch.no_grad():
                pred = model.eval()(x.to(run.device)).squeeze(-1).cpu()
            with open(run.run_dir / "test_predictions.csv", "w") as handle:
                handle.write("target,prediction\\n")
                for t, p in zip(y.tolist(), pred.tolist()):
                    handle.write(f"{t:.6f},{p:.6f}\\n")
            return {"baseline_mse": float(((y - y.mean()) ** 2).mean())}


    def load_diabetes(request):
        from sklearn.datasets import load_diabetes

        info = DatasetInfo(
            name=request.name,
            kind="table",
            num_classes=0,
            class_names=(),
            description="442 patients, 10 features -> disease progression (standardised)",
            source="scikit-learn",
        )
        request.check(info)
        features, target = load_diabetes(return_X_y=True)
        x = torch.tensor(features, dtype=torch.float32)
        y = torch.tensor(target, dtype=torch.float32)
        y = (y - y.mean()) / y.std()
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(request.seed))
        n_val = round(len(y) * request.val_fraction)
        n_test = round(len(y) * request.test_fraction)
        parts = order[n_val + n_test :], order[:n_val], order[n_val : n_val + n_test]
        train, val, test = (TensorDataset(x[i], y[i]) for i in parts)
        return DataSplits(train, val, test, info)


    class Mlp(nn.Module):
        def __init__(self, hidden: int = 32):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(10, hidden), nn.ReLU(), nn.Linear(hidden, 1))

        def forward(self, x):
            return self.net(x)


    @zoo.hookimpl
    def zoo_register_tasks(registry):
        registry.register(Regression)


    @zoo.hookimpl
    def zoo_register_datasets(registry):
        registry.register("diabetes", load_diabetes, "diabetes progression table", kind="table")


    @zoo.hookimpl
    def zoo_register_models(registry):
        registry.register(zoo.ModelSpec(
            name="diabetes_mlp",
            builder=Mlp,
            task="regression",
            input=zoo.InputSpec((10,), value_range=(-0.2, 0.2)),
            outputs=(zoo.OutputSpec("progression", (1,)),),
            summary="a one-hidden-layer MLP for the diabetes table",
        ))
'''


@pytest.fixture
def regression_site(make_dist) -> Path:  # type: ignore[no-untyped-def]
    return make_dist(
        "zoo-test-regression",
        "1.0",
        {"zoo_test_regression": REGRESSION_PLUGIN},
        {"regression": "zoo_test_regression"},
    )


def test_zoo_trains_a_task_and_a_dataset_from_a_plugin(
    regression_site: Path, tmp_path: Path
) -> None:
    tasks = json.loads(run_zoo("tasks", "--json", path=regression_site).stdout)
    regression = next(t for t in tasks if t["name"] == "regression")
    assert (regression["plugin"], regression["monitor"]) == ("regression", "mse")
    assert "diabetes" in run_zoo("datasets", path=regression_site).stdout

    out = tmp_path / "run"
    done = run_zoo(
        "train",
        "diabetes_mlp",
        "--epochs",
        "40",
        "--lr",
        "0.01",
        "--batch-size",
        "32",
        "--no-tensorboard",
        "--out",
        str(out),
        path=regression_site,
    )
    assert done.returncode == 0, done.stderr
    assert "on diabetes" in done.stdout and "r2" in done.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["task"], metrics["dataset"], metrics["monitor"]) == (
        "regression",
        "diabetes",
        "val_mse",
    )
    history = metrics["history"]
    assert history[-1]["train"]["mse"] < history[0]["train"]["mse"] / 2
    # Better than predicting the mean, on patients it never saw.
    assert metrics["test"]["mse"] < 0.8 * metrics["baseline_mse"]
    assert metrics["test"]["r2"] > 0.2
    with open(out / "test_predictions.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == metrics["test"]["samples"] == 44

    resumed = run_zoo(
        "train",
        "diabetes_mlp",
        "--epochs",
        "41",
        "--out",
        str(out),
        "--resume",
        "auto",
        path=regression_site,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming diabetes_mlp" in resumed.stdout


def test_a_plugin_dataset_of_its_own_kind_is_refused_where_it_cannot_fit(
    regression_site: Path, tmp_path: Path
) -> None:
    done = run_zoo(
        "train",
        "diabetes_mlp",
        "--data",
        "mnist5k",
        "--out",
        str(tmp_path / "r"),
        path=regression_site,
    )
    assert done.returncode == 2
    assert "dataset 'mnist5k' holds [C, H, W] images, but the model takes" in done.stderr
    monitor = run_zoo(
        "train",
        "diabetes_mlp",
        "--monitor",
        "val_accuracy",
        "--out",
        str(tmp_path / "m"),
        path=regression_site,
    )
    assert monitor.returncode == 2
    assert "--monitor 'val_accuracy' is not one of val_mse, val_mae, val_r2, val_loss" in (
        monitor.stderr
    )
