"""The conformance kit: deliberately non-conforming plugins fail it with the right messages,
conforming ones pass, and ``zoo export``/``zoo train`` refuse a model whose real outputs differ
from its spec before doing any work."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from tests.conformance.conftest import SEVEN
from tests.conftest import MakeDist
from tests.helpers import run_zoo
from zoo.capabilities import recorded
from zoo.conformance.kit import FAIL, PASS, SKIP, Report, check_plugin

#: One module per deliberately broken plugin; each breaks one rule and the kit must say which.
BROKEN = {
    "zoo_test_seven": SEVEN,
    "zoo_test_dict_out": """
        import zoo
        from torch import nn

        class Net(nn.Module):
            def __init__(self, num_classes=3):
                super().__init__()
                self.fc = nn.Linear(4, num_classes)

            def forward(self, x):
                return {"logits": self.fc(x)}

        @zoo.hookimpl
        def zoo_register_models(registry):
            registry.register(zoo.ModelSpec(
                name="dict_out", builder=Net, task="classification", input=zoo.InputSpec((4,)),
                outputs=(zoo.OutputSpec("logits", (3,)),), num_classes=3,
                summary="returns a dict"))
    """,
    "zoo_test_random_eval": """
        import torch
        import zoo
        from torch import nn

        class Net(nn.Module):
            def __init__(self, num_classes=3):
                super().__init__()
                self.fc = nn.Linear(4, num_classes)

            def forward(self, x):  # dropout even in eval mode
                return self.fc(nn.functional.dropout(x, 0.5, training=True))

        @zoo.hookimpl
        def zoo_register_models(registry):
            registry.register(zoo.ModelSpec(
                name="random_eval", builder=Net, task="classification",
                input=zoo.InputSpec((4,)), outputs=(zoo.OutputSpec("logits", (3,)),),
                num_classes=3, summary="random in eval mode"))
    """,
    "zoo_test_bad_spec": """
        import zoo
        from torch import nn

        def build(width, num_classes=3):
            return nn.Sequential(nn.Flatten(), nn.Linear(4, num_classes))

        @zoo.hookimpl
        def zoo_register_models(registry):
            registry.register(zoo.ModelSpec(
                name="bad_spec", builder=build, task="no_such_task", input=zoo.InputSpec((4,)),
                outputs=(zoo.OutputSpec("logits", (3,)),), num_classes=5, summary=""))
    """,
    "zoo_test_bad_tasks": """
        import zoo
        from torch import nn

        class Metrics:
            def update(self, outputs, x, y, loss):
                pass

            def compute(self):
                return {"loss": 0.0}  # not the monitored "score"

        class NanTask(zoo.Task):
            name = "nantask"
            metrics = {"score": True, "loss": False}
            monitor = "score"

            def default_data(self, spec):
                return "mnist5k"

            def loss(self, outputs, x, y):
                return outputs.sum() * float("nan")

            def new_metrics(self, run):
                return Metrics()

        class NoMonitor(NanTask):
            name = "nomonitor"

            def loss(self, outputs, x, y):
                return nn.functional.cross_entropy(outputs, y)

        class Unused(NanTask):
            name = "unused"

        def build(num_classes=10):
            return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, num_classes))

        def spec(name, task):
            return zoo.ModelSpec(
                name=name, builder=build, task=task,
                input=zoo.InputSpec.image((1, 28, 28), mean=(0.5,), std=(0.5,)),
                outputs=(zoo.OutputSpec("logits", (10,)),), num_classes=10, summary=name)

        @zoo.hookimpl
        def zoo_register_tasks(registry):
            for task in (NanTask, NoMonitor, Unused):
                registry.register(task)

        @zoo.hookimpl
        def zoo_register_models(registry):
            registry.register(spec("nan_model", "nantask"))
            registry.register(spec("nomonitor_model", "nomonitor"))
    """,
    "zoo_test_wrong_runtime": """
        import torch
        import zoo

        class Wrong(zoo.Runtime):
            name = "wrong"
            description = "adds one to every output"
            devices = ("cpu",)

            def load(self, source, device, threads):
                module = source.module()
                return zoo.Session(prepare=lambda x: x, run=lambda x: module(x) + 1)

        @zoo.hookimpl
        def zoo_register_runtimes(registry):
            registry.register(Wrong())
    """,
    "zoo_test_empty_data": """
        import torch
        import zoo
        from torch.utils.data import TensorDataset
        from zoo.datasets import DatasetInfo, DataSplits

        def load(request):
            info = DatasetInfo(name=request.name, kind="image", num_classes=2,
                               class_names=("a", "b"), description="empty", source="nowhere",
                               channels=1)
            none = TensorDataset(torch.zeros(0, 1, 28, 28), torch.zeros(0, dtype=torch.long))
            some = TensorDataset(torch.zeros(4, 1, 28, 28), torch.zeros(4, dtype=torch.long))
            return DataSplits(none, some, some, info)

        @zoo.hookimpl
        def zoo_register_datasets(registry):
            registry.register("emptytrain", load, "no training samples", kind="image",
                              channels=1)
    """,
    "zoo_test_no_hooks": """
        import zoo

        def zoo_register_models(registry):  # no @zoo.hookimpl: registers nothing
            pass
    """,
}


@pytest.fixture
def broken(make_dist: MakeDist, on_path: Callable[[Path], None], fresh_plugins: None) -> Path:
    site = make_dist(
        "zoo-test-broken",
        "1.0",
        {name: source for name, source in BROKEN.items()},
        {name.removeprefix("zoo_test_"): name for name in BROKEN},
    )
    on_path(site)
    return site


def _results(report: Report) -> dict[tuple[str, str], tuple[str, str]]:
    return {(r.subject, r.check): (r.status, r.detail) for r in report.results}


def test_a_model_returning_other_shapes_than_its_spec_fails_with_the_mismatch(
    broken: Path, tmp_path: Path
) -> None:
    report = check_plugin("seven", formats=["torchscript"], workdir=tmp_path)
    status, detail = _results(report)[("model seven", "outputs")]
    assert status == FAIL
    assert "output 'logits' is [B, 7], its spec says [B, 10]" in detail
    assert not report.ok
    # Nothing is exported from a model whose outputs are wrong.
    assert not any(r.check.startswith("export") for r in report.results)


@pytest.mark.parametrize(
    ("plugin", "subject", "check", "message"),
    [
        ("dict_out", "model dict_out", "outputs", "returns dict; zoo needs a tensor or a tuple"),
        ("random_eval", "model random_eval", "eval-deterministic", "two eval passes"),
        ("bad_tasks", "task nantask", "train-step nan_model", "gave loss tensor(nan"),
        (
            "bad_tasks",
            "task nomonitor",
            "train-step nomonitor_model",
            "monitors 'score' but its metrics computed ['loss']",
        ),
        ("wrong_runtime", "runtime wrong", "run lenet", "differs from eager"),
        ("empty_data", "dataset emptytrain", "train-step lenet", "its train split is empty"),
        ("no_hooks", "plugin no_hooks", "load", "registered nothing"),
    ],
)
def test_non_conforming_plugins_fail_the_check_that_they_break(
    broken: Path, tmp_path: Path, plugin: str, subject: str, check: str, message: str
) -> None:
    report = check_plugin(plugin, formats=["torchscript"], workdir=tmp_path)
    status, detail = _results(report)[(subject, check)]
    assert status == FAIL, detail
    assert message in detail
    assert not report.ok


def test_a_task_no_model_can_train_is_reported_as_skipped_with_the_reason(
    broken: Path, tmp_path: Path
) -> None:
    report = check_plugin("bad_tasks", formats=["torchscript"], workdir=tmp_path)
    results = _results(report)
    assert results[("task unused", "options")][0] == PASS
    status, detail = results[("task unused", "train-step")]
    assert status == SKIP
    assert "no registered model names it and no built-in model fits it" in detail


def test_an_inconsistent_spec_fails_with_every_problem_named(broken: Path, tmp_path: Path) -> None:
    report = check_plugin("bad_spec", workdir=tmp_path)
    status, detail = _results(report)[("model bad_spec", "spec")]
    assert status == FAIL
    for problem in (
        "summary is empty",
        "builder option(s) width have no default",
        "num_classes is 5 but output 'logits' is [3]",
        "task 'no_such_task' is not registered",
    ):
        assert problem in detail
    assert [r.check for r in report.results if r.subject == "model bad_spec"] == ["spec"]


def test_the_command_reports_each_check_and_exits_1_on_failure(broken: Path) -> None:
    result = run_zoo("check-plugin", "seven", "--format", "torchscript", path=broken)
    assert result.returncode == 1, result.stderr
    assert "FAIL  model seven / outputs: model 'seven': output 'logits' is [B, 7]" in result.stdout
    assert "seven does NOT conform: 2 passed, 1 failed, 0 skipped" in result.stdout
    result = run_zoo("check-plugin", "zoo-test-brokn", path=broken)
    assert result.returncode == 2
    assert "no plugin or distribution named 'zoo-test-brokn'" in result.stderr


def test_export_and_train_refuse_a_model_whose_outputs_differ_from_its_spec(
    broken: Path, tmp_path: Path
) -> None:
    out = tmp_path / "export"
    result = run_zoo("export", "seven", "--out", str(out), path=broken)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (  # after the warning of the empty test plugin
        "zoo: error: model 'seven': output 'logits' is [B, 7], its spec says [B, 10]; "
        "fix the spec's outputs or the model"
    )
    assert not out.exists()
    run = tmp_path / "run"
    result = run_zoo("train", "seven", "--epochs", "1", "--out", str(run), path=broken)
    assert result.returncode == 1
    # The dataset decides the class count (mnist5k: 10), which the model ignores.
    assert "output 'logits' is [B, 7], its spec says [B, 10]" in result.stderr
    assert "IndexError" not in result.stderr
    assert not (run / "checkpoints").exists()


def test_the_example_plugins_conform_and_their_record_is_what_zoo_list_shows(
    examples_site: Path, tmp_path: Path
) -> None:
    record = tmp_path / "capabilities.json"
    # Every format for the image model (pt2 and aoti compile: the slow ones); the table model
    # and the OpenVINO plugin (no model) with fewer, to keep the suite's time down.
    formats = {
        "zoo-plugin-example": None,
        "zoo-regression": "torchscript,openvino",
        "zoo-openvino": "onnx",
    }
    for dist, chosen in formats.items():
        narrowed = ["--format", chosen] if chosen else []
        result = run_zoo(
            "check-plugin", dist, *narrowed, "--json", "--record", str(record), path=examples_site
        )
        assert result.returncode == 0, result.stdout + result.stderr
        report = json.loads(result.stdout)
        assert report["ok"] and report["counts"]["fail"] == 0
        # Everything passes, but for what needs a GPU (aoti-cuda compiles for one) and the
        # operators of what zoo cannot list: a compiled library's, a plugin format's that
        # does not say (OpenVINO's IR).
        skipped = {c["check"]: c["detail"] for c in report["checks"] if c["status"] != PASS}
        for check, detail in skipped.items():
            if check.startswith("export aoti-cuda"):
                assert "CUDA" in detail
            elif check == "operators aoti":
                assert detail.startswith("an AOTInductor package is native code")
            else:
                assert check == "operators openvino", (check, detail)
                assert detail.startswith("the format does not say what its artifacts call")
        operators = {c["check"]: c for c in report["checks"] if c["check"].startswith("oper")}
        if dist == "zoo-plugin-example":  # every format: the rule held for each program
            for fmt in ("torchscript", "onnx", "pt2"):
                assert operators[f"operators {fmt}"]["status"] == PASS
    checks = {(c["subject"], c["check"]) for c in report["checks"]}
    assert ("runtime openvino", "run lstm") in checks  # the last report: zoo-openvino's
    caps = recorded("tiny_mlp", record)
    assert caps.works("onnx") and caps.works("openvino") and caps.dynamic_batch
    assert caps.measured.startswith("zoo check-plugin (zoo ")
    assert recorded("diabetes_mlp", record).works("torchscript")


def test_the_train_step_batch_spans_the_classes_of_a_class_sorted_dataset() -> None:
    """mnist5k is stored sorted by class: the first samples are all zeros, and a step on them
    made every model report accuracy 1.0 at chance loss. The kit's batch is a seeded random
    one, the same at every call."""
    from zoo.conformance.kit import TRAIN_STEP_SAMPLES, _first_batch
    from zoo.data import load_dataset
    from zoo.registry import InputSpec

    splits = load_dataset("mnist5k", InputSpec((1, 28, 28)), seed=0)
    first_stored = {int(splits.train[i][1]) for i in range(TRAIN_STEP_SAMPLES)}
    assert len(first_stored) == 1  # why the first samples would not do
    x, y = _first_batch(splits, TRAIN_STEP_SAMPLES)
    assert len(x) == TRAIN_STEP_SAMPLES and len(set(y.tolist())) >= 5
    assert torch.equal(_first_batch(splits, TRAIN_STEP_SAMPLES)[1], y)  # seeded
