"""A full disk (a real 16 MB tmpfs) during zoo export and zoo train: one line, nothing lost.

Free space is checked before writing; the write-failure path is reached by running the same
command with the size estimate switched off, so the kernel's ENOSPC arrives mid-write.
"""

from __future__ import annotations

import json
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


BENCH = ("bench", "lenet", "--runtime", "eager", "--batch", "1", "--rounds", "1",
         "--max-rounds", "1", "--min-time", "0.01", "--device", "cpu")  # fmt: skip


@pytest.mark.parametrize("option", ["--json", "--plot"])
def test_bench_onto_a_full_disk_is_refused_before_it_measures(
    small_fs: Path, tmp_path: Path, option: str
) -> None:
    fill(small_fs, leave=1 << 20)
    target = small_fs / "results.out"
    result = run(*BENCH, option, str(target), cwd=tmp_path, ZOO_CACHE_DIR=str(tmp_path / "c"))
    assert result.returncode == 2, result.stderr
    line = one_line_error(result.stderr)
    assert line.startswith(f"zoo: error: {option} {target}: no space left on {small_fs}")
    assert "checked before the benchmark" in line
    assert not target.exists() and not (tmp_path / "c").exists()  # nothing was measured


@pytest.mark.parametrize("options", [("--json",), ("--plot",), ("--json", "--plot")])
def test_a_disk_that_fills_while_bench_runs_keeps_the_results(
    small_fs: Path, tmp_path: Path, options: tuple[str, ...]
) -> None:
    """The probe's: --json and --plot failed only after the whole benchmark ran, and its
    results were lost. The disk fills up once the benchmark has started (its checks passed):
    the results are kept in a file of the temporary directory, which the error names."""
    from tests.faults.conftest import start

    temporary = tmp_path / "tmp"
    temporary.mkdir()
    targets = {"--json": small_fs / "r.json", "--plot": small_fs / "r.png"}
    args = [arg for option in options for arg in (option, str(targets[option]))]
    zoo = start(
        *BENCH, *args, cwd=tmp_path, ZOO_CACHE_DIR=str(tmp_path / "c"), TMPDIR=str(temporary)
    )
    assert zoo.stderr is not None
    first = zoo.stderr.readline()  # the ceiling: every check has passed
    assert first.startswith("measuring"), first
    fill(small_fs, leave=0)
    _, rest = zoo.communicate(timeout=300)
    assert zoo.returncode == 1, first + rest
    errors = [line for line in rest.splitlines() if line.startswith("zoo: error: ")]
    assert "Traceback" not in rest
    kept = sorted(temporary.glob("zoo-bench-*.json"))
    assert len(kept) == 1, rest
    first_option = options[0]
    assert errors[0] == (
        f"zoo: error: cannot write {first_option} {targets[first_option]} (No space left on "
        f"device); the results are in {kept[0]}"
    )
    if len(options) == 2:  # the plot's line adds none: the --json line said where they are
        assert (
            errors[1]
            == f"zoo: error: cannot write --plot {targets['--plot']} (No space left on device)"
        )
    assert len(errors) == len(options)
    document = json.loads(kept[0].read_text())
    (row,) = document["results"]
    assert row["runtime"] == "eager" and row["status"] == "ok"
    assert not list(small_fs.glob("r.*")) and not list(small_fs.glob(".r.*"))  # no partial file
