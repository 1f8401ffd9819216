"""Fixtures of the hostile-input tests: a real export to tamper with, a way to run the real
``zoo`` command, and a snapshot of a directory tree to prove nothing was written."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ZOO
from zoo.export.exporter import export_model


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
