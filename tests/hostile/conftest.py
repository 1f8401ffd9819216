"""Fixtures of the hostile-input tests: a real export to tamper with, two ways to run
``zoo`` (the real command in a process of its own, or its command line in this process), and
a snapshot of a directory tree to prove nothing was written."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tests.helpers import ZOO
from zoo.cli import cli
from zoo.export.exporter import export_model


@pytest.fixture(autouse=True)
def _ceiling_once(one_ceiling_a_session: None) -> None:
    """The ceiling each run is measured against, measured once a session (tests/conftest.py)."""


@pytest.fixture(scope="session")
def lenet_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("hostile") / "lenet"
    assert export_model("lenet", out, raw=True, formats=("onnx", "torchscript", "pt2")).ok
    return out


def zoo(*args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    """The real ``zoo`` command. A test whose zoo opens a FIFO outside its directory hangs
    here, and the timeout fails it: that is how "never read" is checked."""
    environ = {**os.environ, **env}
    return subprocess.run(
        [ZOO, *args], capture_output=True, text=True, env=environ, timeout=timeout
    )


Zoo = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def zoo_here(check_in_this_process: None, tmp_path: Path) -> Zoo:
    """``zoo`` in this process: click's runner on :data:`zoo.cli.cli`, the group the ``zoo``
    program runs (the same commands, the same translation of errors into one line and an exit
    code), without the second or so each process spends importing torch; its result is a
    CompletedProcess, as :func:`zoo`'s. ``zoo export --check`` checks in this process too
    (``check_in_this_process``); ``zoo bench`` still starts its workers.

    A FIFO in a directory named ``outside`` in the test's ``tmp_path`` (test_manifests makes
    them) that zoo opens fails the test: it is given a writer at once, so that an open waiting
    for one returns instead of hanging the test (as it hangs the real ``zoo`` until the
    timeout), and listed."""

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        with opened_fifos(list(tmp_path.rglob("outside"))) as opened:
            said = CliRunner().invoke(cli, list(args), prog_name="zoo")
        assert not opened, f"zoo opened {opened}, outside the export directory"
        # An exception click's runner caught is one that zoo's group let through.
        assert said.exception is None or isinstance(said.exception, SystemExit), said.exception
        return subprocess.CompletedProcess(["zoo", *args], said.exit_code, said.stdout, said.stderr)

    return run


@contextlib.contextmanager
def opened_fifos(roots: list[Path]) -> Iterator[list[Path]]:
    """The FIFOs under ``roots`` that something in this process opened while in the block.
    Each FIFO is offered a writer every 10 ms: the offer is taken only while a reader has it
    open (else ENXIO), and the writer closes at once, so a reader that waits for one gets
    an empty file instead of waiting for ever."""
    fifos = [p for root in roots for p in root.rglob("*") if stat.S_ISFIFO(p.lstat().st_mode)]
    opened: list[Path] = []
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.01):
            for fifo in fifos:
                try:
                    os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
                except OSError:  # ENXIO: no reader
                    continue
                opened.append(fifo)

    watcher = threading.Thread(target=watch, daemon=True)
    if fifos:
        watcher.start()
    try:
        yield opened
    finally:
        done.set()
        if fifos:
            watcher.join()


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one line zoo printed on stderr, asserted to be a ``zoo: error:`` line alone."""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("zoo: error: ") and "Traceback" not in result.stderr
    return lines[0]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(root: Path) -> dict[str, tuple[str, int, int]]:
    """Every entry under ``root``: its kind, size and mtime (symbolic links not followed)."""
    found = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        kind = "link" if path.is_symlink() else "dir" if path.is_dir() else "file"
        found[str(path.relative_to(root))] = (kind, info.st_size, info.st_mtime_ns)
    return found


Tamper = Callable[[Path, dict[str, Any]], None]


@pytest.fixture
def tampered(lenet_export: Path, tmp_path: Path) -> Callable[[Tamper], Path]:
    """A copy of the export in ``tmp_path/case/exp``, changed by ``change(directory,
    manifest)``; the manifest is written back unless ``change`` replaced the file."""

    def make(change: Tamper) -> Path:
        directory = tmp_path / "case" / "exp"
        shutil.copytree(lenet_export, directory)
        manifest = json.loads((directory / "manifest.json").read_text())
        before = (directory / "manifest.json").stat().st_mtime_ns
        change(directory, manifest)
        path = directory / "manifest.json"
        if not path.is_symlink() and path.is_file() and path.stat().st_mtime_ns == before:
            path.write_text(json.dumps(manifest))
        return directory

    return make


def relist(directory: Path, manifest: dict[str, Any], name: str) -> None:
    """List ``name`` in the manifest with its true sha256 and size (a forged, matching entry)."""
    path = directory / name
    manifest["files"][name] = {"sha256": sha256(path), "bytes": path.stat().st_size}
