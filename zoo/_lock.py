"""Advisory locks on the directories zoo writes: one writer per run or export directory.

A lock is ``fcntl.flock`` on a lock file that holds the owner's pid and command. The kernel
releases it when the owner exits, however it exits (SIGKILL included), so a lock file left
by a dead process blocks nobody. A second writer is refused at once, with the owner's pid.

A run directory's lock file is inside it (``RUN/.zoo-lock``); an export directory's is
beside it (``.DIR.zoo-lock``), because an export replaces its directory as a whole.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import time
from pathlib import Path
from types import TracebackType

from zoo.errors import UsageError

__all__ = ["DirectoryLock", "DirectoryLocked", "lock_directory"]

#: How long a refused process waits for the owner to write its pid (it writes it right after
#: taking the lock, so only a process that lost a race by microseconds waits at all).
_HOLDER_WAIT_S = 1.0


class DirectoryLocked(UsageError):
    """Another process holds the lock; the message is the one line to show (a usage error:
    exit 2, nothing was changed)."""

    def __init__(self, directory: Path, holder: str) -> None:
        self.directory = directory
        self.holder = holder
        super().__init__(
            f"{directory} is being written by another zoo process ({holder}); wait for it to "
            "finish or use another directory (nothing was changed)"
        )


class DirectoryLock:
    """A held lock; :meth:`release` (or leaving the ``with`` block) gives it back."""

    def __init__(self, directory: Path, lock_file: Path, fd: int) -> None:
        self.directory = directory
        self.lock_file = lock_file
        self._fd: int | None = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        # Unlink while still holding it: a process that opened this file meanwhile sees, once
        # it gets the lock, that the name no longer refers to it, and tries again.
        with contextlib.suppress(OSError):
            os.unlink(self.lock_file)
        os.close(fd)

    def __enter__(self) -> DirectoryLock:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()

    def __del__(self) -> None:
        self.release()


def _command() -> str:
    argv = [os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"]
    argv += sys.argv[1:]
    text = " ".join(argv)
    return text if len(text) <= 200 else text[:197] + "..."


def _holder(fd: int) -> str:
    """``pid N: COMMAND`` from the lock file, once its owner has written it."""
    deadline = time.monotonic() + _HOLDER_WAIT_S
    while True:
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace")
        pid, _, command = text.partition("\n")
        if pid.strip().isdigit() and text.endswith("\n"):
            return f"pid {pid.strip()}: {command.strip()}"
        if time.monotonic() > deadline:
            return "pid unknown"
        time.sleep(0.02)


def lock_directory(directory: str | os.PathLike[str], *, beside: bool = False) -> DirectoryLock:
    """Lock ``directory`` for writing (it must exist unless ``beside``), or raise
    :class:`DirectoryLocked` naming the process that holds it. Never waits for the owner."""
    directory = Path(directory)
    if beside:
        lock_file = directory.parent / f".{directory.name}.zoo-lock"
    else:
        lock_file = directory / ".zoo-lock"
    while True:
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)  # less the umask
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = _holder(fd)
            finally:
                os.close(fd)
            raise DirectoryLocked(directory, holder) from None
        except BaseException:
            os.close(fd)
            raise
        # The previous owner may have unlinked the file between our open and our flock.
        try:
            same = os.stat(lock_file).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n{_command()}\n".encode(), 0)
    except BaseException:
        os.close(fd)
        raise
    return DirectoryLock(directory, lock_file, fd)
