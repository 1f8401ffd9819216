"""One writer per run or export directory: real processes started together."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.faults.conftest import TRAIN, leftovers, one_line_error, run, start
from tests.helpers import weights
from zoo._lock import DirectoryLocked, lock_directory
from zoo.checkpoint import load_checkpoint

BUSY = re.compile(
    r"^zoo: error: (\S+) is being written by another zoo process \(pid (\d+): zoo (train|export)"
    r" .*\); wait for it to finish or use another directory \(nothing was changed\)$"
)


def test_two_trainings_into_one_directory_one_runs_the_other_is_refused(tmp_path: Path) -> None:
    procs = [start(*TRAIN, "--epochs", "2", "--out", "R", cwd=tmp_path) for _ in range(2)]
    results = [(p, *p.communicate(timeout=300)) for p in procs]
    winners = [(p, out) for p, out, err in results if p.returncode == 0]
    losers = [(p, err) for p, out, err in results if p.returncode != 0]
    assert len(winners) == 1 and len(losers) == 1, [(p.returncode, e) for p, _, e in results]
    (loser, err) = losers[0]
    assert loser.returncode == 2
    line = one_line_error(err)
    match = BUSY.match(line)
    if match is None:  # on a loaded machine it may start after the winner is done: refused too
        assert line.startswith("zoo: error: R already holds a checkpoint"), line
    else:
        assert match.group(1) == "R" and int(match.group(2)) == winners[0][0].pid, line
    # One consistent run: both tags, the metrics and the config are the winner's.
    run = tmp_path / "R"
    meta = load_checkpoint(run).meta
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["history"][-1]["epoch"] == meta["epoch"] == 2
    assert load_checkpoint(run, "best").meta["step"] <= meta["step"]
    assert [h["epoch"] for h in metrics["history"]] == [1, 2]
    assert leftovers(run) == []


def test_four_exports_into_one_directory_one_writes_the_others_are_refused(
    tmp_path: Path,
) -> None:
    args = ("export", "lenet", "--format", "torchscript", "--out", "D")
    procs = [start(*args, cwd=tmp_path) for _ in range(4)]
    results = [(p, *p.communicate(timeout=300)) for p in procs]
    assert sorted(p.returncode for p, _, _ in results) == [0, 2, 2, 2], results
    (winner,) = [p.pid for p, _, _ in results if p.returncode == 0]
    for p, _, err in results:
        if p.returncode == 2:
            line = one_line_error(err)
            match = BUSY.match(line)
            if match is None:  # started after the winner had finished: refused as well
                assert line.startswith("zoo: error: D already holds an export of lenet"), line
            else:
                assert (match.group(1), int(match.group(2))) == ("D", winner), line
    manifest = json.loads((tmp_path / "D" / "manifest.json").read_text())
    assert list(manifest["formats"]) == ["torchscript"]
    check = run("export", "--check", "D", cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    assert leftovers(tmp_path) == []


def test_a_lock_dies_with_its_process_and_its_file_blocks_nobody(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; from zoo._lock import lock_directory;"
            f"lock = lock_directory({str(tmp_path)!r}); print('locked', flush=True);"
            "time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
    with pytest.raises(DirectoryLocked, match=rf"pid {holder.pid}: "):
        lock_directory(tmp_path)
    holder.kill()
    holder.wait()
    assert (tmp_path / ".zoo-lock").exists()  # left by the killed process...
    with lock_directory(tmp_path) as lock:  # ...and blocking nobody
        assert lock.held
        assert (tmp_path / ".zoo-lock").read_text().startswith(f"{os.getpid()}\n")
    assert not (tmp_path / ".zoo-lock").exists()


def test_a_second_trainer_in_one_process_is_refused_until_the_first_is_done(
    tmp_path: Path,
) -> None:
    from zoo.errors import UsageError
    from zoo.train import TrainConfig, Trainer

    options = {"data": "digits", "epochs": 1, "tensorboard": False, "progress": False}
    first = Trainer(TrainConfig("lenet", out=str(tmp_path), **options), echo=lambda _: None)
    with pytest.raises(UsageError, match=rf"pid {os.getpid()}"):
        Trainer(TrainConfig("lenet", out=str(tmp_path), **options), echo=lambda _: None)
    first.fit()
    before = weights(tmp_path)
    resumed = Trainer(
        TrainConfig("lenet", out=str(tmp_path), resume="auto", **options), echo=lambda _: None
    )
    resumed.fit()  # the lock was released: a resume may take it
    assert set(before) == set(weights(tmp_path))


def test_a_run_directory_that_cannot_be_made_is_refused_in_one_line(tmp_path: Path) -> None:
    from zoo.errors import UsageError
    from zoo.train import TrainConfig, Trainer

    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UsageError, match=r"cannot write to run directory .*file/R: Not a dir"):
        Trainer(TrainConfig("lenet", data="digits", out=str(blocker / "R")))
