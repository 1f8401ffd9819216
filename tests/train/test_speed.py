"""Precision, channels-last and compile (zoo.train.speed) in real training runs on CPU."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import zoo
from tests.helpers import assert_identical, weights
from zoo.checkpoint import load_checkpoint
from zoo.train import TrainConfig, Trainer
from zoo.train import speed as speed_module
from zoo.train.speed import Speed

#: A few steps of LeNet on the 8x8 digits: 1,439 training samples, 6 batches of 256.
FAST = {
    "data": "digits",
    "batch_size": 256,
    "tensorboard": False,
    "progress": False,
    "device": "cpu",
}
FP16_ON_CPU = "--precision fp16 needs CUDA (a GradScaler run); on CPU use bf16 or fp32"


def _fit(out: Path, lines: list[str] | None = None, **options: Any) -> Any:
    config = TrainConfig("lenet", out=str(out), **{**FAST, "epochs": 1, **options})
    return Trainer(config, echo=(lines.append if lines is not None else lambda _: None)).fit()


#: A Conv2d or Linear call: (module class, training?, batch size, output dtype).
Call = tuple[str, bool, int, torch.dtype]


@pytest.fixture
def layer_outputs() -> Iterator[list[Call]]:
    """Every Conv2d and Linear call while the test runs."""
    seen: list[Call] = []

    def hook(module: nn.Module, args: Any, output: Any) -> None:
        if isinstance(module, (nn.Conv2d, nn.Linear)) and isinstance(output, torch.Tensor):
            seen.append((type(module).__name__, module.training, len(output), output.dtype))

    handle = nn.modules.module.register_module_forward_hook(hook)
    yield seen
    handle.remove()


@pytest.mark.parametrize(
    "options",
    [{"precision": "fp32"}, {"precision": "bf16"}, {"channels_last": True}],
    ids=["fp32", "bf16", "channels-last"],
)
def test_each_option_trains_with_a_finite_loss_and_fp32_weights(
    tmp_path: Path, options: dict[str, Any]
) -> None:
    result = _fit(tmp_path, **options)
    history = result.metrics["history"]
    assert history and all(math.isfinite(h["train"]["loss"]) for h in history)
    assert math.isfinite(result.metrics["test"]["loss"])
    saved = weights(tmp_path)
    assert all(t.dtype == torch.float32 and t.is_contiguous() for t in saved.values())
    assert json.loads((tmp_path / "config.json").read_text())["precision"] == options.get(
        "precision", "auto"
    )


def test_bf16_autocast_computes_the_layers_in_bf16(
    tmp_path: Path, layer_outputs: list[Call]
) -> None:
    _fit(tmp_path / "fp32", precision="fp32")
    assert {dtype for *_, dtype in layer_outputs} == {torch.float32}
    layer_outputs.clear()
    _fit(tmp_path / "bf16", precision="bf16")
    training = {(name, dtype) for name, train, _, dtype in layer_outputs if train}
    evaluation = {(name, dtype) for name, train, n, dtype in layer_outputs if not train and n > 2}
    assert training == evaluation == {("Conv2d", torch.bfloat16), ("Linear", torch.bfloat16)}
    # Only the check of the model against its spec, on a batch of 2, runs without autocast:
    # the spec declares the outputs the model itself returns (float32).
    fp32 = {n for _, _, n, dtype in layer_outputs if dtype == torch.float32}
    assert fp32 == {2}


def test_bf16_without_cpu_instructions_says_it_will_be_slow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(speed_module, "native_bf16", lambda: False)
    lines: list[str] = []
    _fit(tmp_path, lines, precision="bf16")
    notes = [line for line in lines if "no bf16 instructions" in line]
    assert len(notes) == 1 and "slower than fp32" in notes[0]


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() if p.is_file() else b"<dir>"
        for p in sorted(directory.rglob("*"))
    }


def test_fp16_on_cpu_is_refused_before_the_run_directory_is_touched(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    with pytest.raises(zoo.UsageError) as refused:
        Trainer(TrainConfig("lenet", out=str(fresh), precision="fp16", **FAST))
    assert str(refused.value) == FP16_ON_CPU
    assert not fresh.exists()

    run = tmp_path / "run"
    _fit(run)
    before = _snapshot(run)
    with pytest.raises(zoo.UsageError, match=r"^--precision fp16 needs CUDA"):
        Trainer(TrainConfig("lenet", out=str(run), resume="auto", precision="fp16", **FAST))
    assert _snapshot(run) == before


def test_fp16_on_cpu_from_the_command_line_is_one_line(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from zoo.cli import cli

    out = tmp_path / "run"
    result = CliRunner().invoke(
        cli, ["train", "lenet", "--device", "cpu", "--precision", "fp16", "--out", str(out)]
    )
    assert result.exit_code == 2
    assert result.output == f"zoo: error: {FP16_ON_CPU}\n"
    assert not out.exists()


def test_channels_last_makes_the_weights_nhwc_and_matches_contiguous() -> None:
    model = zoo.create_model("resnet").eval()
    x = torch.randn(8, 1, 28, 28)
    with torch.no_grad():
        expected = model(x)
    speed = Speed(channels_last=True)
    speed.prepare(model)
    four_d = [p for p in model.parameters() if p.dim() == 4]
    assert four_d and all(p.is_contiguous(memory_format=torch.channels_last) for p in four_d)
    assert all(not p.is_contiguous() for p in four_d if p.shape[1] > 1)
    inputs = speed.inputs(x)
    assert inputs.is_contiguous(memory_format=torch.channels_last) and torch.equal(inputs, x)
    assert speed.inputs(torch.zeros(2, 5, dtype=torch.long)).is_contiguous()  # not images
    with torch.no_grad():
        torch.testing.assert_close(model(inputs), expected, rtol=1e-4, atol=1e-5)


def test_a_channels_last_run_learns_what_a_contiguous_one_does(tmp_path: Path) -> None:
    plain = _fit(tmp_path / "plain", optimizer="sgd", lr=0.05)
    nhwc = _fit(tmp_path / "nhwc", optimizer="sgd", lr=0.05, channels_last=True)
    a, b = weights(plain.run_dir), weights(nhwc.run_dir)
    assert a.keys() == b.keys()
    for key in a:  # other kernels sum in another order: close, not equal
        torch.testing.assert_close(b[key], a[key], rtol=1e-3, atol=1e-4)
    assert nhwc.metrics["test"]["loss"] == pytest.approx(plain.metrics["test"]["loss"], rel=1e-3)


def test_compile_runs_and_saves_the_plain_models_keys_which_export(tmp_path: Path) -> None:
    from zoo.export.exporter import export_model

    # Compiling costs seconds on a CPU: one short run (3 steps of 512), with every option.
    options = {"compile": True, "precision": "bf16", "channels_last": True}
    lines: list[str] = []
    result = _fit(tmp_path / "run", lines, batch_size=512, tensorboard=True, **options)
    assert result.status == "completed"
    assert not [line for line in lines if "graph not logged" in line]  # traced uncompiled
    assert math.isfinite(result.metrics["history"][0]["train"]["loss"])
    saved = weights(tmp_path / "run")
    assert sorted(saved) == sorted(zoo.create_model("lenet", num_classes=10).state_dict())
    # The checkpoint holds plain fp32 weights: it exports as any run's does.
    report = export_model(
        "lenet", tmp_path / "export", checkpoint=tmp_path / "run", formats=["onnx"]
    )
    assert report.ok


def test_a_bf16_run_resumes_bit_exactly_and_keeps_its_precision(tmp_path: Path) -> None:
    options = {"optimizer": "sgd", "lr": 0.05, "precision": "bf16", "channels_last": True}
    straight = _fit(tmp_path / "a", epochs=3, **options)
    _fit(tmp_path / "b", epochs=1, **options)
    # Resumed without the speed options: the run keeps its own (bf16, channels-last).
    resumed = _fit(tmp_path / "b", epochs=3, optimizer="sgd", lr=0.05, resume="auto")
    assert_identical(weights(straight.run_dir), weights(resumed.run_dir))
    assert resumed.metrics["test"] == straight.metrics["test"]
    config = load_checkpoint(resumed.run_dir).meta["config"]
    assert (config["precision"], config["channels_last"]) == ("bf16", True)


def test_a_resumed_run_may_change_its_speed_options(tmp_path: Path) -> None:
    _fit(tmp_path, precision="bf16", channels_last=True)
    _fit(tmp_path, epochs=2, resume="auto", precision="fp32", channels_last=False)
    config = json.loads((tmp_path / "config.json").read_text())
    assert (config["precision"], config["channels_last"]) == ("fp32", False)


def test_a_checkpoint_of_zoo_0_1_with_amp_resumes(tmp_path: Path) -> None:
    """zoo 0.1 saved ``amp`` (no precision): off is fp32, on is auto, and the run resumes."""
    _fit(tmp_path, optimizer="sgd", lr=0.05)
    meta_path = tmp_path / "last" / "meta.json"
    meta = json.loads(meta_path.read_text())
    for name in ("precision", "channels_last", "compile"):
        del meta["config"][name]
    meta["config"]["amp"] = False
    meta_path.write_text(json.dumps(meta))
    resumed = _fit(tmp_path, epochs=2, optimizer="sgd", lr=0.05, resume="auto")
    assert resumed.status == "completed" and len(resumed.metrics["history"]) == 2
    assert json.loads((tmp_path / "config.json").read_text())["precision"] == "fp32"


@pytest.mark.parametrize(
    ("legacy", "precision"),
    [
        ({"amp": True}, "auto"),
        ({"amp": False}, "fp32"),
        ({"amp": False, "precision": "bf16"}, "bf16"),
    ],
)
def test_the_legacy_amp_key_migrates(legacy: dict[str, Any], precision: str) -> None:
    config = TrainConfig.from_dict({"model": "lenet", **legacy})
    assert config.precision == precision and "amp" not in config.to_dict()


def test_a_legacy_amp_that_is_not_a_boolean_is_refused_in_one_line() -> None:
    with pytest.raises(zoo.InvalidArgumentsError, match=r"^amp: must be true or false, got 'yes'"):
        TrainConfig.from_dict({"model": "lenet", "amp": "yes"})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fp16_on_cuda_scales_the_loss_and_saves_the_scaler(tmp_path: Path) -> None:
    _fit(tmp_path, precision="fp16", device="cuda")
    state = load_checkpoint(tmp_path).state
    assert state["scaler"] and state["scaler"]["scale"] > 0


def test_zoo_0_1s_no_amp_flag_is_fp32_with_a_note(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from zoo.cli import cli
    from zoo.train.trainer import TrainResult

    seen: list[TrainConfig] = []

    def fit(self: Trainer) -> TrainResult:
        seen.append(self.config)
        self.lock.release()
        return TrainResult(self.run_dir, {}, "completed")

    monkeypatch.setattr(Trainer, "fit", fit)
    result = CliRunner().invoke(cli, ["train", "lenet", "--no-amp", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert [c.precision for c in seen] == ["fp32"]
    assert "note: --no-amp is zoo 0.1's; use --precision fp32" in result.output
