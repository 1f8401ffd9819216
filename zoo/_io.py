"""Files: atomic writes (a crash or Ctrl-C never leaves a torn file where a good one was),
and which names may be read from or written into a directory zoo owns."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "MAX_EXPORT_DEPTH",
    "NotARegularFileError",
    "atomic_path",
    "atomic_write_json",
    "atomic_write_text",
    "check_inflation",
    "exchange",
    "free_bytes",
    "fsync_dir",
    "is_export_path",
    "is_no_space",
    "is_plain_name",
    "json_text",
    "no_space_message",
    "usual_mode",
]


def _umask() -> int:
    """This process's umask now, read without changing it: Linux (4.7 and later) shows it as
    the ``Umask:`` line of ``/proc/self/status``. Elsewhere it can only be read by setting
    it (``os.umask``) and setting it back at once, which a thread creating a file in between
    would see."""
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    umask = os.umask(0)
    os.umask(umask)
    return umask


def usual_mode(mode: int) -> int:
    """``mode`` less this process's umask: what ``open``/``mkdir`` would have given."""
    return mode & ~_umask()


#: fsync errors that only say "directories cannot be fsynced here" (some network and FUSE
#: file systems); any other (EIO above all) means the rename may not be on disk: raised.
_FSYNC_UNSUPPORTED = frozenset({errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EBADF})


def fsync_dir(directory: Path) -> None:
    """Persist a rename in ``directory``; a no-op only where directories cannot be opened or
    fsynced at all. An I/O error is raised: the rename may not have reached the disk."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError as exc:
        if exc.errno == errno.EIO:
            raise
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in _FSYNC_UNSUPPORTED:
            raise
    finally:
        os.close(fd)


_RENAME_EXCHANGE = 2  # linux/fs.h


def exchange(first: Path, second: Path) -> bool:
    """Swap two existing paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``):
    a reader sees one or the other, never neither. False where the system or the file system
    cannot (then nothing happened)."""
    import ctypes  # here: only a replaced export needs it

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    at_fdcwd = -100
    done = renameat2(at_fdcwd, os.fsencode(first), at_fdcwd, os.fsencode(second), _RENAME_EXCHANGE)
    if done == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(first), None, str(second))


#: errno values of a full disk or an exhausted quota.
_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


def is_no_space(exc: BaseException) -> bool:
    """Whether ``exc`` says the disk (or the quota) is full.

    torch's archive writer reports a failed write as ``RuntimeError: [enforce fail at
    inline_container.cc] . unexpected pos`` or ``... file write failed``, without errno;
    safetensors (Rust) as ``SafetensorError: ... (os error 28)``.
    """
    if isinstance(exc, OSError):
        return exc.errno in _NO_SPACE
    text = str(exc)
    if any(f"(os error {code})" in text for code in _NO_SPACE):
        return True
    if isinstance(exc, RuntimeError):
        return "inline_container" in text and ("unexpected pos" in text or "write failed" in text)
    return False


def free_bytes(directory: str | os.PathLike[str]) -> int:
    """Bytes a process of this user may still write in ``directory`` (its nearest existing
    ancestor while it does not exist yet)."""
    path = Path(directory).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def no_space_message(directory: str | os.PathLike[str], needs: int) -> str:
    """The one line zoo prints for a full disk."""
    return f"no space left on {directory} (needs ~{max(1, round(needs / 1e6))} MB)"


class NotARegularFileError(FileExistsError):
    """An output path holds something that is not a regular file (a device, a FIFO, a
    directory), which an atomic write would replace."""


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success fsync it and rename it over ``path``.

    Write the file at the yielded path (any library, any format). If the block raises, the
    temporary file is removed and ``path`` is untouched. A symbolic link at ``path`` is
    replaced itself, never followed (what it points to may lie outside the directories zoo
    writes; a user's output path is resolved by its caller); anything else at ``path`` that
    is not a regular file (a device, a FIFO, a directory) is never replaced:
    :class:`NotARegularFileError`, before anything is written.
    """
    target = Path(path)
    try:
        mode: int | None = os.lstat(target).st_mode
    except FileNotFoundError:
        mode = None
    if mode is not None and not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
        raise NotARegularFileError(
            errno.EEXIST, "not a regular file: zoo does not replace it", str(path)
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp: Path | None = None
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        tmp = Path(tmp_name)
        os.close(fd)
        yield tmp
        # mkstemp makes 0600, and some writers (safetensors) recreate the file 0600: give
        # the file the mode open() would have given it.
        os.chmod(tmp, usual_mode(0o666))
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
        fsync_dir(target.parent)
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def json_text(data: Any) -> str:
    """How zoo writes every JSON document, to a file or to stdout: indented, keys sorted (a
    document diffs and compares line by line, whatever order the code built it in), paths and
    other option values as their text, and a final newline."""
    return json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"


def atomic_write_json(path: str | os.PathLike[str], data: Any) -> None:
    atomic_write_text(path, json_text(data))


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


#: The most parts the path of a file of an export may have (``triton/lenet/1/model.onnx``: 4).
MAX_EXPORT_DEPTH = 4


def is_export_path(name: object) -> bool:
    """Whether ``name`` is a plain file name (:func:`is_plain_name`) or a relative path of
    them, ``/``-separated, of at most :data:`MAX_EXPORT_DEPTH` parts: a file in a folder of an
    export (a Triton model repository's ``triton/lenet/config.pbtxt``). No part is empty,
    ``.``, ``..`` or hidden, and none holds a backslash, so the path always lies inside the
    directory it is read from or written to (whether a folder on the way is a symbolic link
    is for the reader to check: :func:`zoo.export.manifest.verify_files` does)."""
    if not isinstance(name, str):
        return False
    parts = name.split("/")
    return len(parts) <= MAX_EXPORT_DEPTH and all(map(is_plain_name, parts))


#: The most a JSON member of an archive may inflate to (zoo's largest, a program's
#: model.json, is tens of kilobytes).
MAX_JSON_BYTES = 16 * 2**20
#: The most a member may inflate per byte it takes in the archive, past a mebibyte: weights
#: barely compress (torch stores them); a run of whitespace inflates 1000 times and more.
MAX_INFLATION = 100


def check_inflation(archive: zipfile.ZipFile) -> None:
    """Refuse a zip bomb before anything inflates it (ValueError): a JSON member over
    :data:`MAX_JSON_BYTES`, or a member that would inflate more than :data:`MAX_INFLATION`
    times its compressed size to over a mebibyte. The sizes are those the archive declares,
    which Python's and torch's readers hold it to."""
    for info in archive.infolist():
        if info.filename.endswith(".json") and info.file_size > MAX_JSON_BYTES:
            raise ValueError(
                f"{info.filename!r:.80} inflates to {info.file_size:,} bytes of JSON: more "
                f"than the {MAX_JSON_BYTES:,} zoo reads"
            )
        if info.file_size > max(2**20, MAX_INFLATION * info.compress_size):
            raise ValueError(
                f"{info.filename!r:.80} inflates {info.compress_size:,} bytes to "
                f"{info.file_size:,}: a zip bomb, or no archive zoo wrote"
            )
