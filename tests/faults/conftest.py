"""Faults reproduced with real processes: the ``zoo`` command, real signals, a real full disk.

``Zoo`` starts ``zoo`` processes; ``small_fs`` mounts a small tmpfs (as root, which CI is),
so a full disk is a real ENOSPC from the kernel.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ZOO = str(Path(sys.executable).with_name("zoo"))
#: The quickest real training: lenet on the embedded digits, 6 steps an epoch.
TRAIN = [
    "train",
    "lenet",
    "--data",
    "digits",
    "--batch-size",
    "256",
    "--no-tensorboard",
    "--no-progress",
]


def environ(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZOO_TEST_")}
    env.pop("ZOO_STRICT_PLUGINS", None)
    env.pop("ZOO_DISABLE_PLUGINS", None)
    return {**env, **extra}


def start(*args: str, cwd: Path, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [ZOO, *args],
        cwd=cwd,
        env=environ(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ZOO, *args], cwd=cwd, env=environ(**env), capture_output=True, text=True, timeout=300
    )


def leftovers(directory: Path) -> list[str]:
    """Temporary and partial files zoo may leave mid-write, anywhere under ``directory``."""
    return sorted(
        str(p.relative_to(directory))
        for p in directory.rglob(".*")
        if p.name.endswith((".tmp", ".partial", ".link-tmp", ".zoo-lock", ".old"))
        or ".partial-" in p.name
    )


def one_line_error(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("zoo: error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 16 MB tmpfs: a disk that really fills up."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(directory: Path, leave: int) -> Path:
    """Fill the file system of ``directory`` until ``leave`` bytes are free."""
    import shutil

    filler = directory / "filler"
    free = shutil.disk_usage(directory).free
    with open(filler, "wb") as handle:
        handle.truncate(0)
        chunk = b"\0" * (1 << 20)
        remaining = free - leave
        while remaining > 0:
            written = handle.write(chunk[: min(len(chunk), remaining)])
            remaining -= written
    assert abs(shutil.disk_usage(directory).free - leave) < (64 << 10)
    return filler
