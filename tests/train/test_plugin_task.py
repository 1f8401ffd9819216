"""A task zoo does not ship: ``examples/zoo-regression`` registers regression, a dataset for it
(scikit-learn's diabetes table) and a model, and ``zoo train`` trains it end to end with no
change to zoo."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.helpers import install_example, run_zoo


@pytest.fixture(scope="module")
def regression_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``examples/zoo-regression``, installed for real."""
    return install_example("zoo-regression", tmp_path_factory.mktemp("site"))


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
