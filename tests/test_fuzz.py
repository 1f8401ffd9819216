"""Property-based tests (hypothesis): whatever a user passes on the command line, in a config
file or as builder options, the outcome is success or a one-line error with exit 1 or 2;
never a traceback, never a hang, and never a run started with a value of the wrong type.

The commands run in-process through click's runner. The long work behind them (a training
run, an export, a benchmark) is replaced by a stand-in that checks what it was handed: the
properties are about what reaches that work, which is where a bad value used to hang
(``epochs = inf``) or run with the wrong meaning (``tensorboard = "no"``).

``ZOO_FUZZ_EXAMPLES=N`` runs N examples per property instead of the default (CI's); examples
are derived from the test (``derandomize``), so a run is repeatable.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import zoo
from zoo.cli import cli
from zoo.errors import ZooError
from zoo.train.config import TrainConfig

EXAMPLES = int(os.environ.get("ZOO_FUZZ_EXAMPLES", "60"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

#: Values of every kind a user may type or a file may hold.
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.sampled_from([2**32, 2**64, -(2**70), 10**400]),  # past 32/64-bit and float ranges
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
#: What a user types after an option: numbers, words, nonsense.
WORDS = st.one_of(
    st.sampled_from(["nan", "inf", "-inf", "-1", "0", "1", "1.5", "1e400", "", " ", "yes"]),
    st.sampled_from([2**32, 2**64, 10**400]).map(str),
    st.integers(min_value=-(10**6), max_value=10**6).map(str),
    st.floats().map(str),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=10),
)


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), prog_name="zoo")


def assert_clean(result: Result) -> None:
    """Success, or exit 1/2 with exactly one line, ``zoo: error: ...``, and no traceback."""
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"escaped: {result.exception!r}\n{result.output}")
    assert result.exit_code in (0, 1, 2), (result.exit_code, result.output, result.stderr)
    assert "Traceback" not in result.output + result.stderr
    event(f"exit {result.exit_code}")  # --hypothesis-show-statistics: how many were taken
    lines = result.stderr.strip().splitlines()
    if result.exit_code == 2 or (result.exit_code == 1 and any("error" in ln for ln in lines)):
        assert len(lines) == 1 and lines[0].startswith("zoo: error: "), result.stderr
    elif result.exit_code == 1:  # what failed, one line each (`zoo export`: each format)
        assert lines and all(ln.startswith("zoo: ") for ln in lines), result.stderr


# -- zoo train: options and config files --------------------------------------------------------

FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
HINTS = typing.get_type_hints(TrainConfig)


def _fits(value: Any, hint: Any) -> bool:
    """Whether ``value`` is exactly of the declared type (bool is not an int; floats finite)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return any(_fits(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return (
            isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        )
    if hint is str:
        return isinstance(value, str)
    if origin is tuple:
        return isinstance(value, tuple) and all(_fits(v, typing.get_args(hint)[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    return True


class Started(Exception):
    """Raised by the stand-in for Trainer.fit: the command accepted its arguments."""


@pytest.fixture
def no_training(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[TrainConfig]]:
    """Replace the training run by a check of the configuration it would run with."""
    from zoo.train import trainer

    seen: list[TrainConfig] = []

    def fit(self: trainer.Trainer) -> Any:
        config = self.config
        wrong = {
            name: getattr(config, name)
            for name in FIELDS
            if not _fits(getattr(config, name), HINTS[name])
        }
        assert not wrong, f"a run would start with values of the wrong type: {wrong}"
        assert config.epochs >= 1 and config.batch_size >= 1
        seen.append(config)
        return trainer.TrainResult(status="completed", run_dir=self.run_dir, metrics={})

    monkeypatch.setattr(trainer.Trainer, "fit", fit)
    yield seen


def _plausible(hint: Any) -> st.SearchStrategy[Any]:
    """Values of the declared type, near the valid ranges: most runs should start."""
    args = [h for h in typing.get_args(hint) if h is not type(None)]
    if args and typing.get_origin(hint) is not tuple:
        hint = args[0]
    if hint is bool:
        return st.booleans()
    if hint is int:
        return st.integers(min_value=-1, max_value=12)
    if hint is float:
        return st.floats(min_value=-0.1, max_value=1.5)
    if typing.get_origin(hint) is tuple:
        return st.lists(st.integers(min_value=-1, max_value=12), max_size=3)
    return st.sampled_from(
        ["", "none", "sgd", "cosine", "cpu", "shift", "val_loss", "bf16", "fp16"]
    )


CONFIG_VALUES = {name: st.one_of(VALUES, _plausible(HINTS[name])) for name in FIELDS}


@st.composite
def config_options(draw: st.DrawFn) -> dict[str, Any]:
    keys = draw(st.lists(st.sampled_from(sorted(FIELDS)), max_size=4, unique=True))
    return {k: draw(CONFIG_VALUES[k]) for k in keys}


@FUZZ
@given(config_options())
def test_any_config_file_runs_with_declared_types_or_is_refused_in_one_line(
    no_training: list[TrainConfig], tmp_path: Path, options: dict[str, Any]
) -> None:
    config = tmp_path / "config.json"
    options = {k: v for k, v in options.items() if k not in ("out", "resume", "model")}
    config.write_text(json.dumps({"model": "lenet", **options}, default=str))
    assert_clean(invoke("train", "--config", str(config), "--out", str(tmp_path / "run")))


@FUZZ
@given(
    st.lists(
        st.tuples(
            st.sampled_from(
                [f"--{n.replace('_', '-')}" for n in FIELDS if n not in ("model", "out")]
            ),
            WORDS,
        ),
        max_size=3,
    )
)
def test_any_train_options_run_with_declared_types_or_are_refused_in_one_line(
    no_training: list[TrainConfig], tmp_path: Path, options: list[tuple[str, str]]
) -> None:
    args = [part for option, value in options for part in (option, value)]
    flags = {
        f"--{name.replace('_', '-')}"
        for name, hint in HINTS.items()
        if bool in (hint, *typing.get_args(hint))
    }
    args = [a for a in args if a not in flags]  # flags take no value: tried below
    assert_clean(invoke("train", "lenet", "--out", str(tmp_path / "run"), *args))


@FUZZ
@given(st.binary(max_size=200), st.sampled_from([".toml", ".yaml", ".json", ".ini"]))
def test_garbage_config_files_are_refused_in_one_line(
    no_training: list[TrainConfig], tmp_path: Path, content: bytes, suffix: str
) -> None:
    config = tmp_path / f"config{suffix}"
    config.write_bytes(content)
    assert_clean(invoke("train", "lenet", "--config", str(config), "--out", str(tmp_path / "r")))


# -- zoo export, zoo bench, zoo info: options --------------------------------------------------


@pytest.fixture
def no_exports(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each format 'fails' at once: what is fuzzed is everything before the exporters run."""
    from zoo.export import exporter
    from zoo.export.manifest import FormatRecord

    def fail(fmt: Any, request: Any, atol: float, rtol: float) -> FormatRecord:
        assert math.isfinite(atol) and math.isfinite(rtol) and atol >= 0 and rtol >= 0
        return FormatRecord("failed", reason="not exported by the fuzz test", devices=fmt.devices)

    monkeypatch.setattr(exporter, "_export_one", fail)


@FUZZ
@given(
    st.lists(
        st.tuples(
            st.sampled_from(
                ["--format", "--opset", "--atol", "--rtol", "--top-k", "--postprocess", "--arg"]
            ),
            WORDS,
        ),
        max_size=3,
    )
)
def test_any_export_options_are_taken_or_refused_in_one_line(
    no_exports: None, tmp_path: Path, options: list[tuple[str, str]]
) -> None:
    args = [part for option, value in options for part in (option, value)]
    assert_clean(invoke("export", "lenet", "--out", str(tmp_path / "export"), *args))


@pytest.fixture
def no_benchmarks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The benchmark is replaced by its own validation and a check of the settings it would
    run with."""
    from zoo.bench import runner
    from zoo.bench import settings as bench_settings

    def run_bench(settings: Any, echo: Any = None) -> Any:
        bench_settings.validate(settings)  # what run_bench checks before anything else
        policy = settings.policy
        assert math.isfinite(policy.min_time_s) and policy.min_time_s >= 0
        assert policy.min_iters >= 1 and policy.warmup_iters >= 0 and settings.rounds >= 1
        assert all(b >= 1 for b in settings.batches)
        assert settings.threads is None or settings.threads >= 1
        raise ZooError("stopped before measuring (fuzz test)")

    monkeypatch.setattr(runner, "run_bench", run_bench)


@FUZZ
@given(
    st.lists(
        st.tuples(
            st.sampled_from(
                [
                    "--runtime",
                    "--device",
                    "--batch",
                    "--threads",
                    "--min-time",
                    "--min-iters",
                    "--warmup",
                    "--rounds",
                    "--threshold",
                ]
            ),
            WORDS,
        ),
        max_size=3,
    )
)
def test_any_bench_options_are_taken_or_refused_in_one_line(
    no_benchmarks: None, options: list[tuple[str, str]]
) -> None:
    args = [part for option, value in options for part in (option, value)]
    assert_clean(invoke("bench", "lenet", *args))


# -- builder options ---------------------------------------------------------------------------

#: Option values that build in well under a second (huge sizes are a memory question, not a
#: validation one).
OPTION_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-3, max_value=300),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
    st.lists(st.integers(min_value=-2, max_value=8), max_size=3),
)


#: Models whose build and card (FLOPs at batch 1) take well under a second here.
LIGHT = [n for n in zoo.list_models() if not n.startswith(("resnet1", "resnet3", "resnet5", "vgg"))]


@st.composite
def builder_options(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    name = draw(st.sampled_from(LIGHT))
    known = sorted(zoo.get_spec(name).builder_parameters())
    keys = draw(st.lists(st.one_of(st.sampled_from(known), st.text(max_size=5)), max_size=3))
    return name, {k: draw(OPTION_VALUES) for k in keys}


@FUZZ
@given(builder_options())
def test_any_builder_options_build_a_model_or_raise_a_zoo_error(
    case: tuple[str, dict[str, Any]],
) -> None:
    name, kwargs = case
    try:
        model = zoo.create_model(name, **kwargs)
    except ZooError as exc:
        assert "\n" not in str(exc), str(exc)
        event("refused")
        return
    event("built")
    assert model.training  # a fresh nn.Module


@FUZZ
@given(builder_options())
def test_any_arg_on_the_command_line_is_taken_or_refused_in_one_line(
    case: tuple[str, dict[str, Any]],
) -> None:
    name, kwargs = case
    args = [part for k, v in kwargs.items() for part in ("--arg", f"{k}={v!r}")]
    assert_clean(invoke("info", name, *args))
