"""``zoo bench --json/--plot``: output paths are checked before the benchmark runs, and a
FIFO or character device is written through, never replaced by a regular file. The bad
paths are refused by zoo's command line in this process (``zoo_here``); the FIFO is written
by the real ``zoo``."""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path

import pytest

from tests.hostile.conftest import Zoo, one_error_line, snapshot, zoo
from zoo.bench.outputs import write_output

QUICK = [
    "--runtime",
    "eager",
    "--batch",
    "1",
    "--min-time",
    "0",
    "--min-iters",
    "2",
    "--rounds",
    "1",
]
QUICK += ["--max-rounds", "1"]


@pytest.mark.parametrize(
    ("where", "why"),
    [
        ("dir", "is a directory"),  # click's own check of the option, also before any work
        ("missing/r.json", "the directory {tmp}/missing does not exist"),
        ("socket", "is not a regular file, a character device or a FIFO"),
    ],
)
def test_a_bad_output_path_fails_before_the_benchmark(
    lenet_export: Path, tmp_path: Path, zoo_here: Zoo, where: str, why: str
) -> None:
    (tmp_path / "dir").mkdir()
    if where == "socket":
        import socket

        server = socket.socket(socket.AF_UNIX)
        server.bind(str(tmp_path / "socket"))
    before = snapshot(tmp_path)
    for option in ("--json", "--plot"):
        result = zoo_here(
            "bench",
            "lenet",
            "--artifacts",
            str(lenet_export),
            *QUICK,
            option,
            str(tmp_path / where),
        )
        assert result.returncode == 2
        line = one_error_line(result)
        assert option in line and str(tmp_path / where) in line, line
        assert why.format(tmp=tmp_path) in line, line
        assert "ceiling" not in result.stderr  # refused before anything was measured
    assert snapshot(tmp_path) == before


def test_a_fifo_is_written_through(lenet_export: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "results.fifo"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    result = zoo("bench", "lenet", "--artifacts", str(lenet_export), *QUICK, "--json", str(fifo))
    reader.join(timeout=60)
    assert result.returncode == 0, result.stderr
    assert stat.S_ISFIFO(fifo.lstat().st_mode)  # still the FIFO, not a regular file
    assert json.loads(received[0])["schema"] == "zoo-bench/2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.fifo"]  # no temporary left


def test_a_link_keeps_pointing_at_its_target(tmp_path: Path) -> None:
    target = tmp_path / "target.json"
    target.write_text("old")
    (tmp_path / "link.json").symlink_to(target)
    write_output(tmp_path / "link.json", lambda p: p.write_text("new"))
    assert (tmp_path / "link.json").is_symlink() and target.read_text() == "new"
