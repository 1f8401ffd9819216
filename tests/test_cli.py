from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import zoo
from tests.helpers import ALL_MODELS
from zoo.cli import cli


def run(*args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, list(args), env=env, prog_name="zoo")


def test_list_shows_every_model_with_capability_columns() -> None:
    result = run("list")
    assert result.exit_code == 0, result.output
    header, *rows = result.output.strip().splitlines()
    assert header.split()[:11] == [
        *("NAME", "TASK", "INPUT", "CLASSES"),
        *("ONNX", "PT2", "AOTI", "AOTI-CUDA", "TS", "TRITON", "DYN"),  # one per fp32 format
    ]
    # Compiled for a GPU, measured on none: not measured (?) for every model here.
    at = header.index(" AOTI-CUDA ") + 1
    assert {row[at:].split()[0] for row in rows} == {"?"}
    assert [row.split()[0] for row in rows] == ALL_MODELS


def test_list_pattern_and_task_filters() -> None:
    result = run("list", "resnet*", "--exclude", "resnet5?")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0].split()[:2] == ["NAME", "TASK"]
    assert [r.split()[0] for r in result.output.splitlines()[1:]] == [
        "resnet",
        "resnet18",
        "resnet34",
    ]
    result = run("list", "--task", "vae")
    assert result.exit_code == 0, result.output
    assert [r.split()[0] for r in result.output.splitlines()[1:]] == ["vae"]
    result = run("list", "resnet*", "--task", "vae")  # nothing matches both: said, exit 1
    assert result.exit_code == 1 and result.stdout == ""
    assert "zoo: no model matches 'resnet*' with these filters" in result.stderr


def test_list_json_is_the_spec_description() -> None:
    result = run("list", "--json", "--tag", "rnn")
    data = json.loads(result.output)
    assert [d["name"] for d in data] == ["gru", "lstm"]
    assert data[1]["input"] == {
        "name": "tokens",
        "shape": [16],
        "dtype": "int64",
        "value_range": [1, 127],
        "dynamic_axes": {"0": "batch", "1": "time"},
        "mean": None,
        "std": None,
    }
    assert data[1]["capabilities"]["formats"]["onnx"] == {"status": "ok"}
    assert data[1]["capabilities"]["dynamic_batch"] is True


def test_list_without_match_suggests_and_fails() -> None:
    result = run("list", "lenett")
    assert result.exit_code == 1
    assert "no model matches 'lenett'" in result.stderr and "did you mean lenet" in result.stderr


def test_info_prints_the_card() -> None:
    result = run("info", "lenet")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("lenet: LeNet-5")
    assert "61,706 (61,706 trainable)" in result.output
    assert "833.04 KFLOPs per sample (416.52 KMACs)" in result.output
    assert "plugin      lenet (zoo " in result.output
    assert "input_size=28" in result.output


def test_info_says_which_precisions_each_format_can_write() -> None:
    lenet = run("info", "lenet").output
    line = next(x for x in lenet.splitlines() if x.startswith("  precisions"))
    assert line.split(None, 1)[1] == (
        "onnx fp32/int8, pt2 fp32/bf16/fp16, aoti fp32/int8, torchscript fp32, triton fp32 "
        "(reduced precision: from a checkpoint, gated on held-out accuracy)"
    )
    # A building block's task measures no accuracy: no reduced precision, and why.
    bam = json.loads(run("info", "bam", "--json").output)
    assert set(map(tuple, bam["precisions"].values())) == {("fp32",)}
    assert bam["reduced_precision"] == (
        "task 'block' measures no accuracy to gate reduced precision on"
    )
    # A format the model does not export to (its capability record) has no variants either.
    assert "aoti" not in json.loads(run("info", "gru", "--json").output)["precisions"]


def test_info_with_arguments_and_json() -> None:
    result = run("info", "resnet18", "--arg", "num_classes=1000", "--json")
    card = json.loads(result.output)
    assert card["measured"]["parameters"] == 11_689_512
    assert card["options_used"] == {"num_classes": 1000}


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["info", "lenett"], 2, "zoo: error: unknown model 'lenett'; did you mean 'lenet',"),
        (
            ["info", "lenet", "--arg", "num_clases=3"],
            2,
            "zoo: error: model 'lenet' does not take 'num_clases' (did you mean 'num_classes'?)",
        ),
        (
            ["info", "resnet18", "--arg", "weights=/nope.pth"],
            1,
            "zoo: error: weights '/nope.pth' is neither an existing file",
        ),
    ],
)
def test_user_errors_are_one_line_without_traceback(
    args: list[str], code: int, message: str
) -> None:
    result = run(*args)
    assert result.exit_code == code
    assert result.stderr.startswith(message)
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_debug_shows_the_exception() -> None:
    result = run("--debug", "info", "lenett")
    assert isinstance(result.exception, zoo.UnknownModelError)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["info", "lenet", "--arg", "oops"], "'oops' is not KEY=VALUE"),
        (["info"], "Missing argument 'NAME'. (see `zoo info --help`)"),
        (["list", "--exclude"], "Option '--exclude' requires an argument"),
        (["trian"], "No such command 'trian'"),
    ],
)
def test_click_usage_errors_are_one_line_too(args: list[str], message: str) -> None:
    result = run(*args)
    assert result.exit_code == 2
    assert result.stderr.startswith("zoo: error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_plugins_json_lists_builtins_with_what_they_register() -> None:
    records = {r["name"]: r for r in json.loads(run("plugins", "--json").output)}
    assert records["lstm"]["models"] == ["gru", "lstm"]
    assert records["lstm"]["distribution"] == "zoo" and records["lstm"]["builtin"] is True
    assert records["vae"]["hooks"] == ["zoo_register_models", "zoo_register_tasks"]
    assert (records["vae"]["models"], records["vae"]["tasks"]) == (["vae"], ["vae"])
    assert records["onnx"]["formats"] == ["onnx", "onnx-int8"]
    assert records["onnx"]["runtimes"] == ["onnxruntime", "onnxruntime-default", "onnxruntime-trt"]
    assert records["classification"]["tasks"] == [
        "classification",
        "sequence_classification",
        "block",
    ]
    assert "mnist5k" in records["datasets"]["datasets"]
    assert all(r["status"] == "loaded" for r in records.values() if r["builtin"])
    table = run("plugins").output
    assert (
        "formats pt2, pt2-bf16, pt2-fp16, aoti, aoti-int8, aoti-cuda, aoti-cuda-bf16, "
        "aoti-cuda-fp16; runtimes pt2, pt2-graphs, aoti, aoti-cuda, aoti-cuda-graphs"
    ) in table


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (
            "formats",
            [
                "onnx",
                "onnx-int8",
                "pt2",
                "pt2-bf16",
                "pt2-fp16",
                "aoti",
                "aoti-int8",
                "aoti-cuda",
                "aoti-cuda-bf16",
                "aoti-cuda-fp16",
                "torchscript",
                "triton",
            ],
        ),
        ("runtimes", ["eager", "compile", "onnxruntime", "onnxruntime-default"]),
        ("tasks", ["classification", "sequence_classification", "block", "vae"]),
        ("datasets", ["cifar10", "digits", "fashion-mnist", "imagefolder:PATH", "mnist"]),
    ],
)
def test_each_kind_of_plugin_object_is_listed_with_its_plugin(
    command: str, expected: list[str]
) -> None:
    entries = json.loads(run(command, "--json").output)
    assert [e["name"] for e in entries][: len(expected)] == expected
    assert all(e["plugin"] and e["description"] for e in entries)
    table = run(command).output.splitlines()
    assert [line.split()[0] for line in table[1 : len(expected) + 1]] == expected


def test_version() -> None:
    result = run("--version")
    assert result.output.strip() == f"zoo, version {zoo.__version__}"


def test_console_script_in_a_real_process(tmp_path: Path) -> None:
    zoo_exe = Path(sys.executable).with_name("zoo")
    env = {**os.environ, "ZOO_DISABLE_PLUGINS": "vgg"}
    out = subprocess.run(
        [str(zoo_exe), "list", "--json"], capture_output=True, text=True, env=env, check=True
    )
    names = [d["name"] for d in json.loads(out.stdout)]
    assert "lenet" in names and "vgg_head" not in names
    bad = subprocess.run([str(zoo_exe), "info", "nosuchmodel"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("zoo: error: unknown model")


def test_train_from_a_config_file_with_command_line_overrides(tmp_path: Path) -> None:
    config = tmp_path / "train.toml"
    config.write_text(
        'model = "lenet"\ndata = "digits"\nepochs = 5\nbatch-size = 128\ntensorboard = false\n'
        "[model_args]\nnum_classes = 10\n"
    )
    out = tmp_path / "run"
    result = run(
        "train", "--config", str(config), "--epochs", "1", "--out", str(out), "--no-progress"
    )
    assert result.exit_code == 0, result.output + result.stderr
    saved = json.loads((out / "config.json").read_text())
    assert (saved["epochs"], saved["batch_size"], saved["data"]) == (1, 128, "digits")
    assert "epoch 1/1" in result.output and f"run directory: {out}" in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["samples"] > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "lenet", "--epochs", "0"], "--epochs': must be an integer >= 1, got '0'"),
        (["train", "lenet", "--batch-size", "-1"], "must be an integer >= 1, got '-1'"),
        (["train", "lenet", "--lr", "0"], "--lr': must be a finite number > 0, got '0'"),
        (["train", "lenett"], "unknown model 'lenett'; did you mean 'lenet'"),
        (
            ["train", "lenet", "--data", "mnist5"],
            "unknown dataset 'mnist5'; did you mean 'mnist5k'",
        ),
        (["train", "lstm", "--data", "digits"], "dataset"),
        (["train"], "give a MODEL"),
    ],
)
def test_train_refuses_bad_input_before_training(
    args: list[str], message: str, tmp_path: Path
) -> None:
    result = run(*args, "--out", str(tmp_path / "run"), "--no-tensorboard")
    assert result.exit_code == 2, result.output + result.stderr
    assert result.stderr.startswith("zoo: error: ") and message in result.stderr
    assert not (tmp_path / "run" / "last").exists()


def test_datasets_lists_the_embedded_ones() -> None:
    result = run("datasets")
    names = [line.split()[0] for line in result.output.splitlines()[1:]]
    assert {"mnist5k", "digits", "names", "mnist", "cifar10"} <= set(names)


@pytest.mark.parametrize("breaks", list("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"))
def test_an_error_quoting_any_line_break_stays_on_one_line(breaks: str) -> None:
    """What str.splitlines breaks at (hypothesis found a record separator, \\x1e, in a value
    click quoted back)."""
    result = run("train", "lenet", "--deterministic", f"a{breaks}b")
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("zoo: error: ")
