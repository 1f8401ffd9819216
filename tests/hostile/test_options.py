"""Options from a config file are checked against the same declared schema as the command
line (same types, ranges and words, exit 2); non-finite floats are refused in every float
option of every command; ``zoo`` alone and ``--format ''`` are not errors of zoo's making.

Each is refused as zoo reads its options, before anything else runs: most run zoo's command
line in this process (``zoo_here``); the real ``zoo`` runs what could hang or run for days
if the check were missing (a FIFO or a device read, a benchmark of 10^26 iterations) and one
case of each kind of refusal, to show the program says the same."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.hostile.conftest import Zoo, one_error_line, snapshot, zoo
from zoo.train.config import TrainConfig, load_config_file


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('tensorboard = "no"', "tensorboard: must be true or false, got 'no'"),
        ("epochs = inf", "epochs: must be an integer >= 1, got inf"),
        ("epochs = 1.5", "epochs: must be an integer >= 1, got 1.5"),
        ("epochs = true", "epochs: must be an integer >= 1, got True"),
        ("lr = nan", "lr: must be a finite number > 0, got nan"),
        ('batch-size = "64"', "batch_size: must be an integer >= 1, got '64'"),
        ("milestones = [2, 0]", "milestones: must be a list of integers each >= 1, got [2, 0]"),
        ('milestones = "2,4"', "milestones: must be a list of integers each >= 1, got '2,4'"),
        ("gamma = 2", "gamma: must be a finite number > 0 and <= 1, got 2"),
        ("model_args = 3", "model_args: must be a table of KEY = VALUE options, got 3"),
        ('optimizer = "rmsprop"', "optimizer: must be one of sgd, adam, adamw, got 'rmsprop'"),
        ("val_fraction = 0.5", "val_fraction: must be a finite number > 0 and < 0.5, got 0.5"),
        ("[data]\nname = 'x'", "data: must be a string, got {'name': 'x'}"),
        ("epoch = 3", "unknown training option 'epoch' (did you mean 'epochs'?)"),
    ],
)
def test_a_config_file_is_checked_like_the_command_line(
    tmp_path: Path, zoo_here: Zoo, text: str, message: str
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(text + "\n")
    out = tmp_path / "run"
    run = zoo if text.startswith("epochs = inf") else zoo_here  # one in the real zoo
    result = run("train", "lenet", "--config", str(config), "--out", str(out))
    assert result.returncode == 2, result.stdout + result.stderr
    assert one_error_line(result) == f"zoo: error: {config}: {message}"
    assert not out.exists()


@pytest.mark.parametrize(
    ("option", "value", "words"),
    [
        ("--epochs", "1.5", "must be an integer >= 1"),
        ("--epochs", "inf", "must be an integer >= 1"),
        ("--lr", "nan", "must be a finite number > 0"),
        ("--gamma", "2", "must be a finite number > 0 and <= 1"),
        ("--milestones", "2,0", "must be a list of integers each >= 1"),
        ("--val-fraction", "0.5", "must be a finite number > 0 and < 0.5"),
    ],
)
def test_the_command_line_says_the_same(
    tmp_path: Path, zoo_here: Zoo, option: str, value: str, words: str
) -> None:
    out = tmp_path / "run"
    run = zoo if value == "inf" else zoo_here  # one in the real zoo
    result = run("train", "lenet", option, value, "--out", str(out))
    assert result.returncode == 2
    line = one_error_line(result)
    assert f"Invalid value for '{option}': {words}, got '{value}'" in line, line
    assert not out.exists()


def test_a_config_file_that_is_no_regular_file_is_not_read(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)  # reading it would wait for a writer forever
    huge = tmp_path / "huge.toml"
    with open(huge, "wb") as handle:
        handle.truncate(2 << 20)  # sparse
    for path, why in [
        ("/dev/zero", "config file /dev/zero is not a regular file"),
        (str(fifo), f"config file {fifo} is not a regular file"),
        (str(huge), f"config file {huge} is 2,097,152 bytes, more than the 1,048,576 zoo reads"),
    ]:
        result = zoo("train", "lenet", "--config", path, "--out", str(tmp_path / "run"))
        assert result.returncode == 2, result.stderr
        line = one_error_line(result)
        assert line == f"zoo: error: {why}", line
    link = tmp_path / "zero.toml"
    link.symlink_to("/dev/zero")
    result = zoo("train", "lenet", "--config", str(link), "--out", str(tmp_path / "run"))
    assert one_error_line(result) == f"zoo: error: config file {link} is not a regular file"
    assert not (tmp_path / "run").exists()


def test_saved_configs_still_load_and_numbers_are_floats(tmp_path: Path) -> None:
    config = TrainConfig.from_dict({"model": "vae", "vae_loss": "notes", "lr": 1})
    assert config.lr == 1.0 and isinstance(config.lr, float)
    assert config.task_args == {"loss": "notes"}
    assert TrainConfig.from_dict(config.to_dict()) == config
    path = tmp_path / "config.json"
    path.write_text('{"model": "lenet", "grad_clip": null, "epochs": 2, "kld-weight": 1.0}')
    assert load_config_file(path) == {"model": "lenet", "grad_clip": None, "epochs": 2}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--warmup", str(10**26)], "--warmup 100000000000000000000000000: at most 100,000"),
        (["--min-time", "1e25"], "--min-time 1e+25: at most 3600 seconds of timed calls"),
        (
            ["--scenario", "server", "--server-requests", str(10**26)],
            "--server-requests 100000000000000000000000000: at most 1,000,000 requests",
        ),
    ],
    ids=["warmup", "min-time", "server-requests"],
)
def test_bench_options_that_would_run_for_days_are_refused_before_anything_runs(
    args: list[str], message: str
) -> None:
    """They escaped --max-time, which bounds the rounds, not what one round does."""
    result = zoo("bench", "lenet", "--device", "cpu", *args, timeout=60)
    assert result.returncode == 2
    assert message in one_error_line(result)


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["bench", "lenet", "--min-time", "nan"], "--min-time"),
        (["bench", "lenet", "--min-time", "inf"], "--min-time"),
        (["bench", "lenet", "--threshold", "nan"], "--threshold"),
        (["bench", "lenet", "--threshold", "-inf"], "--threshold"),
        (["export", "lenet", "--out", "OUT", "--atol", "nan"], "--atol"),
        (["export", "lenet", "--out", "OUT", "--rtol", "inf"], "--rtol"),
        (["train", "lenet", "--out", "OUT", "--momentum", "nan"], "--momentum"),
        (["train", "lenet", "--out", "OUT", "--grad-clip", "inf"], "--grad-clip"),
    ],
)
def test_non_finite_floats_are_refused_everywhere(
    tmp_path: Path, zoo_here: Zoo, args: list[str], option: str
) -> None:
    args = [str(tmp_path / "out") if a == "OUT" else a for a in args]
    run = zoo if option == "--grad-clip" else zoo_here  # one in the real zoo
    result = run(*args)
    assert result.returncode == 2
    line = one_error_line(result)
    assert f"Invalid value for '{option}': must be a finite number" in line, line
    assert not (tmp_path / "out").exists()


def test_zoo_alone_prints_its_help_and_no_error() -> None:
    result = zoo()
    assert result.returncode == 2  # as click (and `git`, with 1): usage, not success
    assert result.stderr.startswith("Usage: zoo [OPTIONS] COMMAND [ARGS]...")
    assert "zoo: error" not in result.stderr and "Error:" not in result.stderr


@pytest.mark.parametrize("formats", ["", ",", " , "])
def test_an_empty_format_list_is_refused(tmp_path: Path, zoo_here: Zoo, formats: str) -> None:
    before = snapshot(tmp_path)
    result = zoo_here("export", "lenet", "--format", formats, "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert one_error_line(result) == (
        "zoo: error: --format: give at least one format (`zoo formats` lists them)"
    )
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    ("baseline", "why"),
    [
        ('{"schema": "zoo-bench/1"}', "not a zoo bench JSON file (lacks 'environment')"),
        ("[]", "schema is None, expected one of zoo-bench/1, zoo-bench/2 (a zoo bench --json)"),
        (
            '{"schema": "zoo-bench/1", "environment": {}, "settings": {}, "ceiling_gflops": {},'
            ' "flops_per_sample": {}, "results": 7}',
            "not a zoo bench JSON file (TypeError: 'int' object is not iterable)",
        ),
        ("/dev/zero", "not a zoo bench JSON file (/dev/zero is not a regular file)"),
    ],
    ids=["no-environment", "a-list", "results-a-number", "a-device"],
)
def test_a_malformed_baseline_is_refused_before_the_benchmark(
    tmp_path: Path, zoo_here: Zoo, baseline: str, why: str
) -> None:
    path = Path(baseline) if baseline.startswith("/") else tmp_path / "base.json"
    if not baseline.startswith("/"):
        path.write_text(baseline)
    run = zoo if baseline.startswith("/") else zoo_here  # a device read for ever: the real zoo
    result = run("bench", "lenet", "--compare", str(path))
    assert result.returncode == 2
    assert one_error_line(result) == f"zoo: error: {path}: {why}"


def test_a_bad_checkpoint_is_refused_before_the_ceiling(tmp_path: Path, zoo_here: Zoo) -> None:
    (tmp_path / "not-a-run").mkdir()
    result = zoo_here("bench", "lenet", "--checkpoint", str(tmp_path / "not-a-run"))
    assert result.returncode in (1, 2)
    one_error_line(result)
    assert "ceiling" not in result.stderr and str(tmp_path / "not-a-run") in result.stderr
