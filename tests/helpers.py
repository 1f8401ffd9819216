"""Helpers shared by the tests (fixtures live in conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import zoo
from zoo.registry import ModelSpec

#: Every registered model, built-ins and installed plugins alike: a new model is tested at once.
ALL_MODELS = zoo.list_models()


def spec_params() -> list[pytest.param]:
    return [pytest.param(zoo.get_spec(n), id=n) for n in ALL_MODELS]


def as_tuple(out: object) -> tuple[torch.Tensor, ...]:
    return out if isinstance(out, tuple) else (out,)  # type: ignore[return-value]


def tiny_spec(name: str = "tiny", **overrides: object) -> ModelSpec:
    """A valid spec whose builder is cheap; tests override single fields."""
    from torch import nn

    fields: dict[str, object] = dict(
        name=name,
        builder=lambda num_classes=3: nn.Sequential(nn.Flatten(), nn.Linear(4, num_classes)),
        task="classification",
        input=zoo.InputSpec((4,)),
        outputs=(zoo.OutputSpec("logits", (3,)),),
        summary="tiny test model",
        num_classes=3,
    )
    fields.update(overrides)
    return ModelSpec(**fields)  # type: ignore[arg-type]


EXAMPLES = Path(__file__).parents[1] / "examples"
ZOO = str(Path(sys.executable).with_name("zoo"))


def install_example(name: str, target: Path) -> Path:
    """``pip install`` ``examples/<name>`` for real (built offline, no dependencies: they are
    zoo's test extras) into ``target``, a site directory to put on ``PYTHONPATH``."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--disable-pip-version-check",
            "--target",
            str(target),
            str(EXAMPLES / name),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return target


def run_zoo(*args: str, path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """The ``zoo`` command in a process that sees the plugins installed in ``path``."""
    environ = {**os.environ, "PYTHONPATH": str(path), **env}
    for key in ("ZOO_STRICT_PLUGINS", "ZOO_DISABLE_PLUGINS"):
        if key not in env:
            environ.pop(key, None)
    return subprocess.run([ZOO, *args], capture_output=True, text=True, env=environ)


def weights(run_dir: Path, tag: str = "last") -> dict[str, torch.Tensor]:
    """The weights of a run directory's ``tag`` checkpoint."""
    from zoo.checkpoint import load_checkpoint

    return load_checkpoint(run_dir, tag).weights


def assert_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    """Bit-identical weights: the same names, every tensor equal."""
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
