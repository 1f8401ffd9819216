"""Files: atomic writes (a crash or Ctrl-C never leaves a torn file where a good one was),
and which names may be read from or written into a directory zoo owns."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_path",
    "atomic_write_json",
    "atomic_write_text",
    "fsync_dir",
    "is_plain_name",
    "usual_mode",
]

_UMASK = os.umask(0)
os.umask(_UMASK)


def usual_mode(mode: int) -> int:
    """``mode`` less this process's umask: what ``open``/``mkdir`` would have given."""
    return mode & ~_UMASK


def fsync_dir(directory: Path) -> None:
    """Persist a rename in ``directory`` (no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success fsync it and rename it over ``path``.

    Write the file at the yielded path (any library, any format). If the block raises, the
    temporary file is removed and ``path`` is untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.fchmod(fd, usual_mode(0o666))  # mkstemp makes 0600; give the file the usual mode
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
        fsync_dir(target.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(path: str | os.PathLike[str], data: Any) -> None:
    # default=str: paths (and other option values) are written as their text.
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def is_plain_name(name: object) -> bool:
    """Whether ``name`` is a plain file name: no directory part, not ``.``/``..``, not hidden.

    Names read from manifests and declared by plugins must pass, so a file they name always
    lies inside the directory it is read from or written to.
    """
    return (
        isinstance(name, str)
        and bool(name)
        and name not in (".", "..")
        and not name.startswith(".")
        and "/" not in name
        and "\\" not in name
        and "\0" not in name
        and name == name.strip()
    )
