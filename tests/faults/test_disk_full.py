"""A full disk (a real 16 MB tmpfs) during zoo export and zoo train: one line, nothing lost.

Free space is checked before writing; the write-failure path is reached by running the same
command with the size estimate switched off, so the kernel's ENOSPC arrives mid-write.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.faults.conftest import (
    TRAIN,
    environ,
    fill,
    leftovers,
    one_line_error,
    run,
)
from tests.helpers import assert_identical, weights
from zoo.checkpoint import load_checkpoint
from zoo.export.manifest import sha256

NO_SPACE = re.compile(r"^zoo: error: no space left on (\S+) \(needs ~(\d+) MB\)$")


def _hashes(directory: Path) -> dict[str, str]:
    return {p.name: sha256(p) for p in sorted(directory.iterdir())}


def _zoo_without_estimate(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``zoo ARGS`` in a real process whose free-space estimates are zero."""
    code = (
        "import sys, zoo.checkpoint as c, zoo.export.exporter as e;"
        "e.SPACE_PER_FORMAT = 0; e.SPACE_MARGIN = 0; c.SPACE_MARGIN = -(1 << 40);"
        "from zoo.cli import main; main(sys.argv[1:])"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        env=environ(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_export_onto_a_full_disk_is_refused_before_writing_and_keeps_the_old_export(
    small_fs: Path,
) -> None:
    made = run("export", "lenet", "--format", "torchscript", "--out", "D", cwd=small_fs)
    assert made.returncode == 0, made.stderr
    before = _hashes(small_fs / "D")
    fill(small_fs, leave=600 << 10)
    args = ("export", "lenet", "--format", "torchscript,onnx", "--out", "D", "--overwrite")
    result = run(*args, cwd=small_fs)
    assert result.returncode == 1
    match = NO_SPACE.match(one_line_error(result.stderr))
    assert match and Path(match.group(1)) == small_fs.resolve(), result.stderr
    assert int(match.group(2)) >= 2  # weights 0.25 MB, x (1 + 2 formats x 2), + 1 MB
    assert _hashes(small_fs / "D") == before
    assert leftovers(small_fs) == []


@pytest.mark.parametrize("fmt", ["torchscript", "pt2"])
def test_a_disk_that_fills_during_export_is_one_line_not_an_abort(small_fs: Path, fmt: str) -> None:
    made = run("export", "lenet", "--format", "torchscript", "--out", "D", cwd=small_fs)
    assert made.returncode == 0, made.stderr
    before = _hashes(small_fs / "D")
    fill(small_fs, leave=400 << 10)  # the weights fit, the artifact does not
    result = _zoo_without_estimate(
        "export", "lenet", "--format", fmt, "--out", "D", "--overwrite", cwd=small_fs
    )
    assert result.returncode == 1, (result.returncode, result.stderr[-2000:])  # not -6
    assert NO_SPACE.match(one_line_error(result.stderr)), result.stderr
    assert _hashes(small_fs / "D") == before
    assert leftovers(small_fs) == []


def test_a_checkpoint_that_does_not_fit_keeps_the_last_one(small_fs: Path) -> None:
    first = run(*TRAIN, "--epochs", "1", "--out", "R", cwd=small_fs)
    assert first.returncode == 0, first.stderr
    run_dir = small_fs / "R"
    kept = weights(run_dir)
    fill(small_fs, leave=300 << 10)
    for attempt in (run, _zoo_without_estimate):  # refused by the check; failed mid-write
        result = attempt(*TRAIN, "--epochs", "2", "--out", "R", "--resume", "auto", cwd=small_fs)
        assert result.returncode == 1, result.stderr[-2000:]
        match = NO_SPACE.match(one_line_error(result.stderr))
        assert match and match.group(1) == "R/checkpoints", result.stderr
        assert load_checkpoint(run_dir).meta["epoch"] == 1
        assert_identical(kept, weights(run_dir))
        assert [p.name for p in (run_dir / "checkpoints").iterdir()] == [
            (run_dir / "last").resolve().name
        ]
        assert leftovers(run_dir) == []
    (small_fs / "filler").unlink()
    resumed = run(*TRAIN, "--epochs", "2", "--out", "R", "--resume", "auto", cwd=small_fs)
    assert resumed.returncode == 0, resumed.stderr
    assert load_checkpoint(run_dir).meta["epoch"] == 2  # with room again, it goes on
