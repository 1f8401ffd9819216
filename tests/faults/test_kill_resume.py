"""SIGKILL ``zoo train`` anywhere, resume with ``--resume auto``: bit-exact, nothing lost.

A save has ten commit points (staging made, weights, state, meta written, renamed into
place, ``best``'s then ``last``'s link made and renamed, pruned); the process SIGKILLs
itself at one of them (``ZOO_TEST_SIGNAL_AT_COMMIT_POINT=N:KILL``), or the test kills it at
a random moment of the training. The default suite runs a handful; ``ZOO_FAULT_KILLS=all``
runs every commit point of both epochs' saves and twenty random kills.
"""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest

from tests.faults.conftest import TRAIN, leftovers, run, start
from tests.helpers import assert_identical, weights
from zoo.checkpoint import SIGNAL_ENV, is_valid_checkpoint, load_checkpoint

STEADY = [*TRAIN, "--scheduler", "step", "--step-size", "1", "--epochs", "2"]
ALL = os.environ.get("ZOO_FAULT_KILLS") == "all"
# 7 and 17: best switched, last not yet (in the first and the second save).
POINTS = range(1, 21) if ALL else (1, 5, 7, 17)
RANDOM_KILLS = range(20) if ALL else range(1)


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("straight")
    assert run(*STEADY, "--out", "R", cwd=where).returncode == 0
    return where / "R"


def _resume_and_compare(where: Path, straight: Path) -> None:
    run_dir = where / "R"
    for entry in (run_dir / "checkpoints").glob("[!.]*"):
        assert is_valid_checkpoint(entry), entry  # no torn checkpoint, ever
    resumed = run(*STEADY, "--out", "R", "--resume", "auto", cwd=where)
    assert resumed.returncode == 0, resumed.stderr
    assert load_checkpoint(run_dir).meta["epoch"] == 2
    assert_identical(weights(straight), weights(run_dir))
    assert_identical(weights(straight, "best"), weights(run_dir, "best"))
    assert leftovers(where) == []


@pytest.mark.parametrize("point", POINTS)
def test_sigkill_at_a_commit_point_then_resume_is_bit_exact(
    tmp_path: Path, straight: Path, point: int
) -> None:
    killed = run(*STEADY, "--out", "R", cwd=tmp_path, **{SIGNAL_ENV: f"{point}:KILL"})
    # The second save has 8 points when epoch 2 is not the best (no best link to switch).
    assert killed.returncode == -signal.SIGKILL or (point > 18 and killed.returncode == 0)
    _resume_and_compare(tmp_path, straight)


@pytest.mark.parametrize("seed", RANDOM_KILLS)
def test_sigkill_at_a_random_moment_then_resume_is_bit_exact(
    tmp_path: Path, straight: Path, seed: int
) -> None:
    process = start(*STEADY, "--out", "R", cwd=tmp_path)
    assert process.stdout is not None
    assert process.stdout.readline().startswith("training lenet on digits")
    time.sleep(random.Random(seed).uniform(0.0, 1.5))  # where it lands does not matter
    process.kill()
    process.communicate()
    # The kill landed: the run had not ended by itself (else this tested nothing).
    assert process.returncode == -signal.SIGKILL
    _resume_and_compare(tmp_path, straight)
