"""The run's progress record: what an epoch's end does to it, and what a checkpoint restores."""

from __future__ import annotations

from zoo.train.trainer import Progress


def test_an_epoch_that_improves_becomes_the_best_and_one_that_does_not_counts() -> None:
    progress = Progress(epoch=0, batch=7, step=7, position=448)
    assert progress.end_epoch(0.5, maximize=True)
    assert (progress.epoch, progress.batch, progress.position) == (1, 0, 0)
    assert (progress.best, progress.best_epoch, progress.bad_epochs) == (0.5, 1, 0)
    assert not progress.end_epoch(0.4, maximize=True)  # lower accuracy: no better
    assert not progress.end_epoch(0.5, maximize=True)  # equal: no better either
    assert (progress.best, progress.best_epoch, progress.bad_epochs) == (0.5, 1, 2)
    assert progress.end_epoch(0.6, maximize=True)
    assert (progress.epoch, progress.best_epoch, progress.bad_epochs) == (4, 4, 0)


def test_a_loss_improves_downwards() -> None:
    progress = Progress()
    assert progress.end_epoch(2.3, maximize=False)
    assert not progress.end_epoch(2.4, maximize=False)
    assert progress.end_epoch(1.0, maximize=False) and progress.best == 1.0


def test_restore_takes_what_the_checkpoint_has_and_round_trips() -> None:
    saved = Progress(epoch=2, batch=3, step=33, best=0.9, best_epoch=2, history=[{"epoch": 1}])
    again = Progress()
    again.restore(saved.to_dict())
    assert again == saved
    old = Progress(position=5)  # a zoo 0.1 checkpoint has no position: the field stays
    old.restore({"epoch": 1, "batch": 0, "step": 10, "bad_epochs": 0, "history": []})
    assert (old.epoch, old.step, old.position) == (1, 10, 5)
    kept = Progress()
    kept.restore({"epoch": 1, "unknown": "ignored"})
    assert not hasattr(kept, "unknown")
