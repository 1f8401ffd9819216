"""Reading JSON that zoo wrote but anyone could have edited: each helper returns the value if
it has the expected type and raises ValueError naming the field otherwise; :func:`read_text`
reads such a file (or a config file) without following it into a device or a huge file."""

from __future__ import annotations

import os
import stat
from typing import Any

__all__ = ["boolean", "integer", "number", "obj", "read_text", "seq", "string"]

_MISSING: Any = object()


def obj(value: Any, what: str) -> dict[str, Any]:
    """A JSON object (a dict)."""
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be a JSON object, got {_kind(value)}")
    return value


def seq(value: Any, what: str) -> list[Any]:
    """A JSON list."""
    if not isinstance(value, list):
        raise ValueError(f"{what} must be a list, got {_kind(value)}")
    return value


def string(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, got {_kind(value)}")
    return value


def boolean(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{what} must be true or false, got {_kind(value)}")
    return value


def integer(value: Any, what: str) -> int:
    """An int (``true`` and ``1.0`` are not)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} must be an integer, got {_kind(value)}")
    return value


def number(value: Any, what: str) -> float:
    """An int or a float, as a float (``true`` is not a number)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{what} must be a number, got {_kind(value)}")
    return float(value)


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    return f"{type(value).__name__} {value!r:.40}"


def read_text(path: str | os.PathLike[str], what: str, limit: int, *, follow: bool = True) -> str:
    """The UTF-8 text of ``path``, a regular file of at most ``limit`` bytes; ValueError naming
    ``what`` otherwise (a FIFO, a device such as /dev/zero, a directory, a file too large,
    and with ``follow=False`` a symbolic link, are refused before anything is read).
    OSError (a missing file) passes through."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    if not follow:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    if not follow and os.path.islink(path):
        raise ValueError(f"{what} is a symbolic link; zoo reads only regular files there")
    fd = os.open(path, flags)  # O_NONBLOCK: opening a FIFO does not wait for a writer
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{what} is not a regular file")
        if info.st_size > limit:
            raise ValueError(f"{what} is {info.st_size:,} bytes, more than the {limit:,} zoo reads")
        data = handle.read(limit + 1)
    if len(data) > limit:  # grew while being read
        raise ValueError(f"{what} is more than the {limit:,} bytes zoo reads")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{what} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
