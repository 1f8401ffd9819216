"""Child processes: zoo runs code that may crash the process that runs it (the parity gate of
a native artifact, a benchmark worker) in a child, reads its result as the last line of its
output, and says in one line how it died when it did."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["ChildFailed", "crash_reason", "run_json_child"]


class ChildFailed(RuntimeError):
    """A child process died, timed out, or printed no result; the message says which, and
    :attr:`timed_out` tells a child that did not finish in time from the others."""

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        #: The child did not finish in time (it was killed); otherwise it died or printed
        #: no result.
        self.timed_out = timed_out


def run_json_child(
    command: Sequence[str],
    *,
    timeout: float,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Any:
    """Run ``command`` and return the JSON value of the last line it printed; ChildFailed
    with the reason if it did not finish in ``timeout`` seconds, failed, or printed no JSON."""
    try:
        child = subprocess.run(
            list(command),
            input=input,
            capture_output=True,
            text=True,
            env=dict(env) if env is not None else None,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise ChildFailed(f"did not finish in {timeout:.0f} s", timed_out=True) from None
    lines = child.stdout.strip().splitlines()
    if child.returncode != 0 or not lines:
        raise ChildFailed(crash_reason(child.returncode, child.stderr))
    try:
        return json.loads(lines[-1])
    except ValueError:
        raise ChildFailed(f"printed no result: {lines[-1][:200]}") from None


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
