"""The files ``zoo bench`` writes (``--json``, ``--plot``): checked before the benchmark runs,
and never replaced when they are not regular files.

A regular file (or a path that does not exist yet) is written atomically: a temporary file
beside it, renamed over it. A character device or a FIFO (``/dev/null``, ``/dev/stdout``, a
named pipe) is written through, as a shell's ``>`` would: renaming a file over ``/dev/null``
would replace the device. Anything else (a directory, a socket, a block device) is refused.

A benchmark's results are not lost to a full disk: before it runs, the directory of each
output must have :data:`OUTPUT_ROOM` free; a write that fails anyway after it ran keeps the
results (:func:`keep_results`: a temporary file, else standard error) and says where.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from zoo._io import atomic_path, free_bytes, json_text, no_space_message
from zoo.errors import UsageError

__all__ = ["OUTPUT_ROOM", "JsonDocument", "check_output", "keep_results", "write_output"]

#: Free space an output's directory must have before a benchmark runs: a results document
#: is tens of KB, a plot a few hundred.
OUTPUT_ROOM = 8 << 20


def _written_through(mode: int) -> bool:
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)


def check_output(path: Path, option: str) -> None:
    """UsageError naming ``option`` unless ``path`` can be written: an existing regular file,
    character device or FIFO, or a new name in an existing directory this process can write."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise UsageError(f"{option} {path}: {exc.strerror or exc}") from None
    if mode is not None:
        if stat.S_ISDIR(mode):
            raise UsageError(f"{option} {path}: is a directory; give a file name")
        if _written_through(mode):
            if not os.access(path, os.W_OK):
                raise UsageError(f"{option} {path}: not writable")
            return
        if not stat.S_ISREG(mode):
            raise UsageError(
                f"{option} {path}: is not a regular file, a character device or a FIFO; "
                "zoo neither writes into it nor replaces it"
            )
    parent = Path(os.path.realpath(path)).parent
    if not parent.is_dir():
        raise UsageError(f"{option} {path}: the directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {path}: the directory {parent} is not writable")
    if free_bytes(parent) < OUTPUT_ROOM:
        raise UsageError(
            f"{option} {path}: {no_space_message(parent, OUTPUT_ROOM)}; free some space or "
            "write elsewhere (checked before the benchmark, whose results would be lost)"
        )


def keep_results(text: str, path: Path, option: str, exc: OSError) -> str:
    """After writing ``option`` ``path`` failed with ``exc`` (a disk that filled up while the
    benchmark ran): keep the results document ``text`` in a new file of the temporary
    directory, else on standard error, and return the one line that says so and where."""
    failed = f"cannot write {option} {path} ({exc.strerror or exc})"
    try:
        fd, name = tempfile.mkstemp(prefix="zoo-bench-", suffix=".json")
    except OSError:
        pass
    else:
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            return f"{failed}; the results are in {name}"
        except OSError:
            Path(name).unlink(missing_ok=True)
    sys.stderr.write(text)
    sys.stderr.flush()
    return f"{failed}; the results are the JSON document above, on standard error"


def write_output(path: Path, write: Callable[[Path], object]) -> None:
    """Call ``write(p)`` to write the file at ``p``; a character device or FIFO at ``path``
    receives its bytes (written through), anything else gets the file atomically (a symbolic
    link's target is replaced, the link stays)."""
    try:
        mode: int | None = os.stat(path).st_mode
    except FileNotFoundError:
        mode = None
    if mode is not None and _written_through(mode):
        with tempfile.TemporaryDirectory(prefix="zoo-output-") as tmp:
            staged = Path(tmp) / path.name
            write(staged)
            with open(staged, "rb") as source, open(path, "wb") as target:
                shutil.copyfileobj(source, target)
        return
    with atomic_path(os.path.realpath(path)) as tmp:
        write(tmp)


class JsonDocument:
    """What a results record (``zoo bench``'s, ``zoo bench-train``'s) does with its JSON:
    :meth:`document` is its text, :meth:`save` writes it as :func:`write_output` does."""

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def document(self) -> str:
        """The JSON document :meth:`save` writes."""
        return json_text(self.to_dict())

    def save(self, path: str | Path) -> Path:
        """Write the document (atomically; through, to a character device or FIFO)."""
        text = self.document()
        write_output(Path(path), lambda tmp: tmp.write_text(text, encoding="utf-8"))
        return Path(path)
