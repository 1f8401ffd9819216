"""Child processes: how zoo reports one that died (the parity gate of a native artifact, a
benchmark worker)."""

from __future__ import annotations

import signal

__all__ = ["crash_reason"]


def crash_reason(returncode: int, stderr: str) -> str:
    """``crashed (killed by SIGABRT): <the child's last words>`` for a failed child process."""
    if returncode < 0:
        try:
            how = f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            how = f"killed by signal {-returncode}"
    else:
        how = f"exit status {returncode}"
    return f"crashed ({how}): {_last_words(stderr)}"


def _last_words(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in lines:  # a C++ exception: "what():  index out of bounds ..."
        if line.startswith("what():"):
            return line.removeprefix("what():").strip()
    return lines[-1] if lines else "no message"
