"""benchmarks/names_baselines.py: the baselines a sequence model has to beat on names."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest
import torch

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "names_baselines.py"


@pytest.fixture(scope="module")
def baselines() -> ModuleType:
    spec = importlib.util.spec_from_file_location("names_baselines", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_majority_answers_the_commonest_training_class(baselines: ModuleType) -> None:
    """Not the test split's commonest class (1 here): a classifier cannot know it."""
    data = SimpleNamespace(
        train=SimpleNamespace(labels=torch.tensor([0, 0, 0, 1, 2])),
        test=SimpleNamespace(labels=torch.tensor([1, 1, 1, 0, 2])),
    )
    assert baselines.majority_accuracy(data) == pytest.approx(1 / 5)


def test_the_script_measures_the_baselines_and_trains_a_config(
    baselines: ModuleType, tmp_path: Path
) -> None:
    config = tmp_path / "tiny.toml"
    config.write_text('model = "gru"\nepochs = 1\n[model_args]\nembed_dim = 4\nhidden_size = 8\n')
    out = tmp_path / "names.json"
    assert baselines.main(["--seeds", "1", "--train", str(config), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    rows = report["rows"]

    data = baselines.splits(1)
    commonest = int(torch.bincount(data.train.labels).argmax())
    frequency = float((data.test.labels == commonest).sum()) / len(data.test)
    assert rows["majority"] == [{"seed": 1, "accuracy": pytest.approx(frequency)}]
    for name in ("naive_bayes", "naive_bayes_train_val"):
        # A real classifier of 12 languages: far above the majority, short of perfect.
        assert frequency + 0.3 < rows[name][0]["accuracy"] < 1.0, name
    (run,) = rows[str(config)]
    assert run["seed"] == 1 and run["epochs"] == 1 and run["seconds"] > 0
    assert 0.0 <= run["accuracy"] <= 1.0
    assert report["environment"]["versions"]["scikit-learn"]
