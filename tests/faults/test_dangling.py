"""A dangling ``last`` never makes ``--resume auto`` start afresh and prune a valid checkpoint."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import assert_identical, weights
from zoo.checkpoint import load_checkpoint, save_checkpoint
from zoo.errors import UsageError
from zoo.train import TrainConfig, Trainer

# A schedule that does not depend on --epochs: a run resumed with more epochs equals a
# straight one.
FAST = {
    "data": "digits",
    "batch_size": 256,
    "tensorboard": False,
    "progress": False,
    "scheduler": "step",
    "step_size": 1,
}


def _train(out: Path, epochs: int, **options: object) -> list[str]:
    said: list[str] = []
    Trainer(TrainConfig("lenet", epochs=epochs, out=str(out), **FAST, **options), said.append).fit()
    return said


def _dangle(run: Path, tag: str) -> None:
    link = run / tag
    link.unlink()
    os.symlink("checkpoints/epoch0099-step0009999", link)


def test_resume_auto_with_a_dangling_last_continues_from_the_newest_valid_checkpoint(
    tmp_path: Path,
) -> None:
    _train(tmp_path / "straight", 2)
    run = tmp_path / "run"
    _train(run, 1)
    valid = (run / "best").resolve()
    _dangle(run, "last")
    with pytest.raises(UsageError, match="already holds a checkpoint"):
        _train(run, 2)  # without --resume: refused, not started afresh
    said = _train(run, 2, resume="auto")
    assert said[0] == (
        f"note: {run / 'last'} is missing or broken; resuming from the newest valid "
        f"checkpoint, {valid}"
    )
    assert load_checkpoint(run).meta["epoch"] == 2
    assert_identical(weights(tmp_path / "straight"), weights(run))


def test_pruning_removes_nothing_while_a_tag_is_dangling(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _train(run, 1)
    valid = (run / "best").resolve()
    _dangle(run, "best")
    _dangle(run, "last")
    checkpoint = load_checkpoint(valid)
    model = __import__("zoo").create_model("lenet", num_classes=10)
    meta = {**checkpoint.meta, "epoch": 2, "step": checkpoint.meta["step"] + 6}
    meta.pop("format_version")
    saved = save_checkpoint(run, model, checkpoint.state, meta, ("last",))
    assert (run / "last").resolve() == saved
    assert valid.is_dir() and load_checkpoint(valid).meta["epoch"] == 1  # kept: best dangles
    saved = save_checkpoint(run, model, checkpoint.state, {**meta, "step": 99}, ("last", "best"))
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [saved.name]
