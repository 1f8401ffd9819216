"""Reduced-precision artifacts (int8 ONNX, int8 AOTInductor, bf16 .pt2) and the accuracy gate on
held-out data:
recorded in the manifest, re-run by ``--check`` from the saved data, failing artifacts
removed, and the bad input refused in one line before anything is written."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from zoo._pluginmanager import get_plugins
from zoo.bench.worker import source_of
from zoo.checkpoint import load_checkpoint
from zoo.cli import cli
from zoo.errors import UsageError, ZooError
from zoo.export.accuracy import EVAL_FILE, EvalData, load_eval_data, measure
from zoo.export.exporter import check_accuracy, check_export, export_model
from zoo.export.manifest import read_manifest
from zoo.formats import ExportRequest, Runner
from zoo.plugins.classification import Classification
from zoo.plugins.pt2 import AotiInt8Format, AotiRuntime, Pt2Format
from zoo.plugins.vae import VAETask
from zoo.train import train


@pytest.fixture(scope="module")
def lenet_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """LeNet trained briefly on digits (its test split: 179 held-out images)."""
    out = tmp_path_factory.mktemp("runs") / "lenet"
    train("lenet", "digits", epochs=2, out=str(out), progress=False, tensorboard=False)
    return out


@pytest.fixture(scope="module")
def reduced(lenet_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("exports") / "lenet"
    # A variant named in --format is written as it is, beside the fp32 formats.
    report = export_model("lenet", out, formats=["onnx", "pt2", "onnx-int8"], checkpoint=lenet_run)
    assert report.ok, report.manifest.failures()
    return out


def test_int8_onnx_is_calibrated_gated_on_the_run_s_test_split_and_recorded(
    reduced: Path, lenet_run: Path
) -> None:
    manifest = json.loads((reduced / "manifest.json").read_text())
    formats = manifest["formats"]
    assert set(formats) == {"onnx", "pt2", "onnx-int8"}
    int8 = formats["onnx-int8"]
    assert int8["precision"] == "int8" and int8["files"] == ["model.int8.onnx"]
    assert int8["calibration"] == {"dataset": "digits", "split": "train", "samples": 256}
    assert "avx512_vnni" in int8["cpu_features"]
    assert int8["details"]["quant_format"] == "QDQ"
    test_accuracy = json.loads((lenet_run / "metrics.json").read_text())["test"]["accuracy"]
    for name in ("onnx", "pt2", "onnx-int8"):
        gate = formats[name]["accuracy"]
        assert gate["dataset"] == "digits" and gate["samples"] == 179
        # eager on the held-out split is exactly what the run measured on its test split
        assert gate["eager"] == pytest.approx(test_accuracy, abs=1e-6)
        assert gate["passed"] is True and gate["drop"] <= 0.5
    assert formats["onnx"]["accuracy"]["agreement"] == 1.0
    # int8 really is quantized: its outputs differ from eager's, its parity is only recorded
    assert formats["onnx-int8"]["accuracy"]["max_abs_diff"] > 1e-3
    assert formats["onnx-int8"]["parity"]["passed"] is False
    assert EVAL_FILE in manifest["files"]


def test_the_int8_model_runs_in_plain_onnxruntime_and_holds_int8_weights(reduced: Path) -> None:
    code = (
        "import sys, numpy as np, onnx, onnxruntime as ort;"
        "m = onnx.load(sys.argv[1]);"
        "print(sum(1 for n in m.graph.node if n.op_type == 'QuantizeLinear'));"
        "s = ort.InferenceSession(sys.argv[1], providers=['CPUExecutionProvider']);"
        "x = np.zeros((2, 28, 28, 1), np.uint8);"
        "print(s.run(None, {s.get_inputs()[0].name: x})[0].shape)"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", code, str(reduced / "model.int8.onnx")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    assert int(out[0]) > 0 and out[1] == "(2, 10)"


def test_int8_keeps_narrow_convolutions_in_fp32_and_says_which(reduced: Path) -> None:
    import onnx

    # LeNet's first convolution reads one channel: ONNX Runtime's int8 kernel is slow there.
    graph = onnx.load(str(reduced / "model.int8.onnx")).graph
    producer = {out: node for node in graph.node for out in node.output}
    weights = {t.name: t for t in graph.initializer}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert len(convs) == 2

    def channels(conv: onnx.NodeProto) -> int:
        weight = conv.input[1]
        if weight in producer:  # int8: DequantizeLinear(int8 initializer)
            weight = producer[weight].input[0]
        return weights[weight].dims[1]

    narrow, wide = sorted(convs, key=channels)
    assert channels(narrow) == 1 and channels(wide) == 6
    assert narrow.input[1] in weights  # fp32 weights, read as they are
    assert producer[wide.input[1]].op_type == "DequantizeLinear"
    manifest = json.loads((reduced / "manifest.json").read_text())
    assert manifest["formats"]["onnx-int8"]["details"]["kept_fp32"] == [narrow.name]


def test_check_reruns_the_accuracy_gates_from_the_saved_data(reduced: Path) -> None:
    parity = check_export(reduced)
    assert set(parity) == {"onnx", "pt2"}  # int8's parity is not a gate
    accuracy = check_accuracy(reduced)
    assert set(accuracy) == {"onnx", "pt2", "onnx-int8"}
    recorded = json.loads((reduced / "manifest.json").read_text())["formats"]
    for name, result in accuracy.items():
        assert result.passed
        assert result.value == pytest.approx(recorded[name]["accuracy"]["value"])
    said = CliRunner().invoke(cli, ["export", "--check", str(reduced)])
    assert said.exit_code == 0, said.output
    assert "parity and the accuracy gates hold" in said.output
    assert "onnx-int8  int8" in said.output


def test_bf16_pt2_keeps_an_fp32_interface_and_passes_its_gate(
    lenet_run: Path, tmp_path: Path
) -> None:
    report = export_model(
        "lenet", tmp_path / "e", formats=["pt2"], precisions=["bf16"], checkpoint=lenet_run
    )
    assert report.ok, report.manifest.failures()
    record = report.manifest.formats["pt2-bf16"]
    assert record.precision == "bf16" and record.accuracy is not None
    assert record.accuracy.passed and record.accuracy.agreement is not None
    program = torch.export.load(str(tmp_path / "e" / "model.bf16.pt2"))
    out = program.module()(torch.zeros(2, 28, 28, 1, dtype=torch.uint8))
    assert out.dtype == torch.float32 and out.shape == (2, 10)
    dtypes = {k: v.dtype for k, v in program.state_dict.items()}
    model = [d for k, d in dtypes.items() if k.startswith("model.")]
    assert model and set(model) == {torch.bfloat16}, dtypes  # the preprocessing stays fp32


@pytest.fixture(scope="module")
def aoti_int8(lenet_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """LeNet's int8 AOTInductor package (a compile: about a minute)."""
    out = tmp_path_factory.mktemp("exports") / "lenet-aoti-int8"
    report = export_model("lenet", out, formats=["aoti"], precisions=["int8"], checkpoint=lenet_run)
    assert report.ok, report.manifest.failures()
    return out


def test_int8_aoti_is_quantized_by_torchao_calibrated_gated_and_recorded(aoti_int8: Path) -> None:
    import torch._inductor.config as inductor_config

    manifest = json.loads((aoti_int8 / "manifest.json").read_text())
    assert set(manifest["formats"]) == {"aoti-int8"}  # --precision int8 alone: no fp32 aoti
    record = manifest["formats"]["aoti-int8"]
    assert record["precision"] == "int8" and record["files"] == ["model.int8.aoti.pt2"]
    assert record["calibration"] == {"dataset": "digits", "split": "train", "samples": 256}
    assert "avx512_vnni" in record["cpu_features"]
    details = record["details"]
    assert "X86InductorQuantizer" in details["quantizer"] and "PT2E" in details["method"]
    assert details["weights"].startswith("int8, per channel")
    assert details["activations"].startswith("uint8, per tensor")
    assert details["quantized"].startswith("model")  # the preprocessing stays fp32
    # LeNet's first convolution reads one grey channel: left in fp32 (an Inductor miscompile)
    assert details["fp32_layers"] == ["model.features.0"]
    assert details["inductor"] == {"freezing": True}
    assert details["torchao"] == manifest["versions"]["torchao"] == metadata.version("torchao")
    gate = record["accuracy"]
    assert gate["dataset"] == "digits" and gate["samples"] == 179
    assert gate["passed"] is True and gate["drop"] <= 0.5 and gate["agreement"] >= 0.95
    assert record["parity"]["passed"] is False  # int8 differs from eager: recorded, not required
    # Freezing and torchao's Inductor pass were set for that compile only.
    assert inductor_config.freezing is False and inductor_config.pre_grad_custom_pass is None


def test_the_int8_package_holds_int8_kernels_and_runs_in_the_aoti_runtime(aoti_int8: Path) -> None:
    with zipfile.ZipFile(aoti_int8 / "model.int8.aoti.pt2") as package:
        code = "".join(
            package.read(n).decode() for n in package.namelist() if n.endswith("wrapper.cpp")
        )
    # Frozen weights: oneDNN's int8 convolutions and matrix products, not fp32 ones fed by
    # weights dequantized on every call.
    assert "qconv_pointwise" in code and "qlinear_pointwise" in code
    manifest = read_manifest(aoti_int8)
    session = AotiRuntime().load(source_of(aoti_int8, manifest, "aoti-int8"), "cpu", 1)
    data = load_eval_data(aoti_int8 / EVAL_FILE, ["logits"], "digits")
    agree = 0
    for start in range(0, len(data.inputs), 64):
        x = data.inputs[start : start + 64]
        logits = session.run(session.prepare(x))
        assert logits.dtype == torch.float32 and logits.shape == (len(x), 10)
        agree += int((logits.argmax(1) == data.eager[0][start : start + 64].argmax(1)).sum())
    assert agree / len(data.inputs) >= 0.95


class _OneReluTwice(torch.nn.Module):
    """torchvision's BasicBlock in small: one ReLU module called twice, after a convolution
    and after the residual add."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.relu = torch.nn.ReLU()
        self.head = torch.nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.conv1(x))
        y = self.relu(self.conv2(y) + y)
        return self.head(y.mean((2, 3)))


def test_int8_aoti_quantizes_a_module_called_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A non-strict export makes both calls of the ReLU one partition, which torchao's
    # quantizer refused ("Input partition has more than one output node": resnet18 failed).
    from zoo.plugins import pt2
    from zoo.registry import InputSpec

    compiled: list[torch.export.ExportedProgram] = []
    monkeypatch.setattr(
        pt2, "package_aoti", lambda program, path, configs: compiled.append(program)
    )
    bundle = torch.nn.Sequential()
    bundle.model = _OneReluTwice().eval()  # zoo's bundles hold the model as .model
    spec = InputSpec((3, 12, 12))
    torch.manual_seed(0)
    request = ExportRequest(
        module=bundle,
        example=spec.example(2),
        input=spec,
        output_names=("logits",),
        directory=tmp_path,
        calibration=torch.randn(64, 3, 12, 12),
    )
    details = AotiInt8Format().export(request)
    assert details["quantized"].startswith("model") and details["fp32_layers"] == []
    (program,) = compiled
    ops = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    assert any("quantize_per_tensor" in op for op in ops), ops  # activations quantized
    x = torch.randn(5, 3, 12, 12)
    expected = bundle(x)
    got = program.module()(x)  # the quantized program, run before compiling: close to fp32
    assert got.shape == (5, 4) and torch.allclose(got, expected, atol=0.1), (got - expected).abs()


def test_a_missing_torchao_is_said_in_one_line_and_nothing_is_written(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "torchao", None)  # as if not installed: find_spec -> None
    assert AotiInt8Format().unavailable() == "torchao is not installed: pip install torchao"
    args = ["lenet", "--format", "aoti", "--precision", "int8", "--eval", "digits"]
    said = _refused(args, tmp_path)
    assert said == (
        "zoo: error: format 'aoti-int8' is not available here: torchao is not installed: "
        "pip install torchao"
    )


class _Noisy(Pt2Format):
    """A 'bf16' variant of pt2 whose artifact answers at random: it must fail its gate."""

    name = "pt2-noisy"
    files = ("model.noisy.pt2",)
    precision = "bf16"
    variant_of = "pt2"

    def load(self, directory: Path, variant: str = "") -> Runner:
        generator = torch.Generator().manual_seed(0)

        def run(x: torch.Tensor) -> tuple[np.ndarray, ...]:
            return (torch.randn(len(x), 10, generator=generator).numpy(),)

        return run


def test_an_artifact_that_loses_accuracy_is_removed_and_says_why(
    lenet_run: Path, tmp_path: Path, fresh_plugins: None
) -> None:
    get_plugins().formats.register(_Noisy())
    report = export_model(
        "lenet",
        tmp_path / "e",
        formats=["pt2", "pt2-noisy"],
        precisions=["fp32", "bf16"],
        checkpoint=lenet_run,
    )
    assert not report.ok
    record = report.manifest.formats["pt2-noisy"]
    assert record.status == "failed" and record.files == ()
    assert record.reason.startswith("accuracy gate on digits: accuracy ")
    assert "points worse (at most 0.5)" in record.reason
    assert not (tmp_path / "e" / "model.noisy.pt2").exists()
    assert report.manifest.formats["pt2"].ok  # the others are kept


def _data(eager: torch.Tensor, targets: torch.Tensor) -> EvalData:
    return EvalData("toy", torch.zeros(len(eager), 1), targets, (eager,))


def test_an_fp32_artifact_must_agree_with_eager_on_every_sample() -> None:
    eager = torch.eye(4)  # predicts 0, 1, 2, 3
    off_by_one = eager.clone()
    off_by_one[3] = torch.tensor([0.0, 0.0, 2.0, 1.0])  # predicts 2 for the last sample
    data = _data(eager, torch.tensor([0, 1, 2, 2]))  # ... which is even right
    result = measure(
        Classification(), data, lambda x: (off_by_one[: len(x)].numpy(),),
        postprocess="none", precision="fp32", max_drop=0.5,
    )  # fmt: skip
    assert result.value > result.eager  # more accurate, and still refused
    assert not result.passed and result.agreement == 0.75
    assert "differs on 1 of 4" in result.why()
    reduced = measure(
        Classification(), data, lambda x: (off_by_one[: len(x)].numpy(),),
        postprocess="none", precision="int8", max_drop=0.5,
    )  # fmt: skip
    assert reduced.passed and reduced.drop == pytest.approx(-25.0)


def test_the_vae_is_gated_on_its_reconstruction_error_in_percent_of_eager_s() -> None:
    task = VAETask()
    targets = torch.zeros(4, 3)
    eager = torch.full((4, 3), 0.1)
    data = EvalData("toy", torch.zeros(4, 1), targets, (eager, eager, eager))
    worse = eager * 1.01  # mse 1.0201x eager's: 2.01% worse
    result = measure(
        task, data, lambda x: tuple(worse[: len(x)].numpy() for _ in range(3)),
        postprocess="none", precision="int8", max_drop=0.5,
    )  # fmt: skip
    assert result.metric == "reconstruction_mse" and not result.higher_is_better
    assert result.drop == pytest.approx(2.01, rel=1e-3) and not result.passed
    assert result.agreement is None
    assert "% of eager's worse (at most 0.5)" in result.why()


def _refused(args: list[str], tmp_path: Path) -> str:
    out = tmp_path / "never"
    said = CliRunner().invoke(cli, ["export", *args, "--out", str(out)])
    assert said.exit_code == 2, said.output
    assert not out.exists()
    lines = [line for line in said.output.splitlines() if line.strip()]
    return lines[-1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "onnx,torchscript", "--precision", "bf16"],
         "--precision bf16: none of the formats asked for (onnx, torchscript) has a variant "
         "in bf16; formats with one: pt2"),
        (["--precision", "fp8"], "--precision fp8: choose from fp32, bf16, fp16, int8"),
        (["--format", "onnx", "--precision", "int8"],
         "reduced precision is gated on accuracy over held-out data: give --checkpoint"),
        (["--format", "onnx", "--precision", "int8", "--eval", "digits", "--max-drop", "200"],
         "--max-drop 200.0: give a number of points from 0 to 100"),
        (["--format", "onnx", "--precision", "int8", "--eval", "digits",
          "--calibration-samples", "4"], "--calibration-samples 4: give at least 16"),
        (["--format", "onnx", "--precision", "int8", "--eval", "digits",
          "--calibration-samples", "100000"],
         "the training split of 'digits' has only 1439; give at most 1439"),
        (["--format", "onnx", "--precision", "int8", "--eval", "names"],
         "dataset 'names' cannot feed model 'lenet'"),
        (["--format", "onnx", "--eval", "digits", "--arg", "num_classes=3"],
         "eval dataset 'digits' has 10 classes, the model 3"),
    ],
)  # fmt: skip
def test_bad_input_is_refused_in_one_line_and_nothing_is_written(
    args: list[str], message: str, tmp_path: Path
) -> None:
    assert message in _refused(["lenet", *args], tmp_path)


def test_a_task_without_an_accuracy_metric_exports_fp32_only(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="task 'block' of 'bam' measures none; export fp32"):
        export_model("bam", tmp_path / "e", formats=["onnx"], precisions=["int8"])


def test_fresh_weights_with_eval_data_are_gated_on_agreement(tmp_path: Path) -> None:
    report = export_model(
        "lenet", tmp_path / "e", formats=["onnx"], eval_dataset="digits", eval_samples=50, seed=1
    )
    gate = report.manifest.formats["onnx"].accuracy
    assert gate is not None and gate.samples == 50 and gate.agreement == 1.0
    assert not math.isnan(gate.value)


def _tamper(path: Path, **changes: Any) -> None:
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(path))
    tensors.update(changes)
    save_file(tensors, str(path))


def test_check_refuses_gate_data_that_was_modified(reduced: Path, tmp_path: Path) -> None:
    import shutil

    from zoo.export.manifest import ArtifactError

    copy = tmp_path / "copy"
    shutil.copytree(reduced, copy)
    _tamper(copy / EVAL_FILE, targets=torch.zeros(179, dtype=torch.int64))
    with pytest.raises(ArtifactError, match=r"eval\.safetensors: .* \(modified or corrupt\)"):
        check_accuracy(copy)


def test_a_trained_sequence_model_exports_within_its_vocabulary_and_is_gated(
    tmp_path: Path,
) -> None:
    """names has 111 tokens, the spec's default vocabulary 128: parity inputs must be ids the
    trained embedding has (this export used to fail with an IndexError)."""
    train("gru", "names", epochs=1, out=str(tmp_path / "run"), progress=False, tensorboard=False)
    report = export_model(
        "gru", tmp_path / "e", formats=["onnx", "onnx-int8"], checkpoint=tmp_path / "run"
    )
    assert report.ok, report.manifest.failures()
    test = json.loads((tmp_path / "run" / "metrics.json").read_text())["test"]["accuracy"]
    for name in ("onnx", "onnx-int8"):
        gate = report.manifest.formats[name].accuracy
        assert gate is not None and gate.dataset == "names" and gate.passed
        assert gate.eager == pytest.approx(test, abs=1e-6)
    assert report.manifest.inputs[0].value_range == (1.0, 110.0)
    # The languages name the outputs; the characters, the input ids (zoo predict reads text so).
    info = load_checkpoint(tmp_path / "run").meta["dataset"]
    labels = report.manifest.labels
    assert labels is not None and labels.dataset == "names"
    assert list(labels.classes) == info["class_names"] and "English" in labels.classes
    assert labels.vocabulary is not None and len(labels.vocabulary) == 111
    assert labels.vocabulary[:2] == ("<pad>", "<unk>")
    assert list(labels.vocabulary) == info["vocabulary"]


def test_a_near_tie_that_rounding_flips_does_not_fail_an_fp32_artifact() -> None:
    eager = torch.tensor([[1.0, 0.99999], [0.0, 1.0]])
    flipped = torch.tensor([[0.99999, 1.0], [0.0, 1.0]])  # 1e-5 apart: within parity tolerance
    data = _data(eager, torch.tensor([0, 1]))
    result = measure(
        Classification(), data, lambda x: (flipped[: len(x)].numpy(),),
        postprocess="none", precision="fp32", max_drop=0.5,
    )  # fmt: skip
    assert result.agreement == 0.5 and result.disagreements == 0 and result.passed


def test_a_gate_that_could_not_run_is_written_as_valid_json() -> None:
    data = _data(torch.eye(3), torch.tensor([0, 1, 2]))

    def broken(x: torch.Tensor) -> tuple[np.ndarray, ...]:
        raise RuntimeError("the runtime gave up")

    result = measure(
        Classification(), data, broken, postprocess="none", precision="int8", max_drop=0.5
    )
    assert not result.passed and "RuntimeError: the runtime gave up" in result.why()
    text = json.dumps(result.to_dict(), allow_nan=False)  # no NaN/Infinity literals
    assert json.loads(text)["value"] is None


def _edit_manifest(directory: Path, edit: Any) -> None:
    from zoo.export.manifest import sha256

    path = directory / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    for name in manifest["files"]:
        file = directory / name
        manifest["files"][name] = {"sha256": sha256(file), "bytes": file.stat().st_size}
    path.write_text(json.dumps(manifest))


def test_check_refuses_a_reduced_precision_artifact_without_its_gate(
    reduced: Path, tmp_path: Path
) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(reduced, copy)
    _edit_manifest(copy, lambda m: m["formats"]["onnx-int8"].pop("accuracy"))
    said = CliRunner().invoke(cli, ["export", "--check", str(copy)])
    assert said.exit_code != 0
    assert "int8 artifact listed as ok has no accuracy gate" in said.output


def test_check_of_gate_data_that_does_not_fit_fails_in_one_line(
    reduced: Path, tmp_path: Path
) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(reduced, copy)
    _tamper(copy / EVAL_FILE, targets=torch.zeros(179, 7, dtype=torch.int64))
    _edit_manifest(copy, lambda m: None)  # the hashes vouch for the tampered file
    said = CliRunner().invoke(cli, ["export", "--check", str(copy)])
    assert said.exit_code == 1 and "Traceback" not in said.output
    assert "ERROR RuntimeError" in said.output


def test_a_checkpoint_whose_dataset_is_gone_exports_fp32_with_a_note(
    lenet_run: Path, tmp_path: Path
) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(lenet_run, run, symlinks=True)
    meta = run / "best" / "meta.json"
    data = json.loads(meta.read_text())
    data["config"]["data"] = "imagefolder:" + str(tmp_path / "moved")
    data["dataset"]["name"] = "imagefolder:" + str(tmp_path / "moved")
    meta.unlink()  # best may be a link into checkpoints/: replace the file, not the target
    meta.write_text(json.dumps(data))
    report = export_model("lenet", tmp_path / "e", formats=["onnx"], checkpoint=run)
    assert report.ok and report.manifest.formats["onnx"].accuracy is None
    assert report.notes and "no accuracy gate" in report.notes[0]
    with pytest.raises(ZooError, match="moved"):  # int8 has no gate without it: refused
        export_model(
            "lenet", tmp_path / "e8", formats=["onnx"], precisions=["int8"], checkpoint=run
        )
