"""``zoo export --check DIR`` with a time bound: the export may come from anyone, and its
artifacts are programs that can run for ever (an ONNX ``Loop`` of 2^62 iterations) or crash
the process that runs them. :func:`check_bounded` runs :func:`~zoo.export.exporter.check_export`
and :func:`~zoo.export.exporter.check_accuracy` in a child process that says which artifact
it runs before running it; past the bound the child is killed, and the one line names the
artifact that did not finish.

The child prints ``ARTIFACT <format> <file>`` on standard error before each artifact runs,
and on standard output one JSON document: ``{"parity": {...}, "accuracy": {...}}``, or
``{"error": "<the one line>", "usage": false}`` for an export it refuses (``usage``: a
:class:`~zoo.errors.UsageError`, exit 2).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Final

from zoo._process import crash_reason
from zoo.errors import UsageError
from zoo.export.accuracy import AccuracyResult
from zoo.export.gates import ParityResult
from zoo.export.manifest import ArtifactError

__all__ = ["DEFAULT_CHECK_TIMEOUT", "check_bounded"]

#: Seconds a whole check may take: every gate of a large model on a small CPU takes a minute.
DEFAULT_CHECK_TIMEOUT: Final = 300.0
_MARK: Final = "ARTIFACT "


def check_bounded(
    directory: str | Path, timeout: float = DEFAULT_CHECK_TIMEOUT
) -> tuple[dict[str, ParityResult], dict[str, AccuracyResult]]:
    """The parity and accuracy results of re-checking export ``directory``, measured in a
    child process given ``timeout`` seconds in all; ArtifactError, in one line, for an export
    it refuses, an artifact still running at the bound (named) or one that crashed it."""
    directory = Path(directory)
    command = [sys.executable, "-m", "zoo.export.checking", str(directory)]
    # Files, not pipes: a child that writes much and hangs cannot block on a full pipe.
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen(command, stdout=out, stderr=err, text=True)
        try:
            returncode = child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
            err.seek(0)
            running = _running(err.read())
            what = (
                f"{running[1]}: the {running[0]} artifact" if running else f"{directory}: the check"
            )
            raise ArtifactError(
                f"{what} did not finish its check in {timeout:g} s (a program that does not "
                "end, such as a loop of 2^62 iterations?): not vouched for; give "
                "--check-timeout more seconds if it is only slow"
            ) from None
        out.seek(0)
        err.seek(0)
        lines = out.read().strip().splitlines()
        stderr = err.read()
    try:
        document = json.loads(lines[-1]) if lines else None
    except ValueError:
        document = None
    if not isinstance(document, dict):
        running = _running(stderr)
        what = f"{running[1]}: the {running[0]} artifact" if running else f"{directory}: the check"
        raise ArtifactError(f"{what} {crash_reason(returncode, _words(stderr))}")
    if "error" in document:
        kind = UsageError if document.get("usage") else ArtifactError
        raise kind(str(document["error"]))
    return (
        {k: ParityResult.from_dict(v) for k, v in document["parity"].items()},
        {k: AccuracyResult.from_dict(v) for k, v in document["accuracy"].items()},
    )


def _running(stderr: str) -> tuple[str, str] | None:
    """The artifact the child said it was running last: (format, file)."""
    for line in reversed(stderr.splitlines()):
        if line.startswith(_MARK):
            fmt, _, file = line.removeprefix(_MARK).partition(" ")
            return fmt, file
    return None


def _words(stderr: str) -> str:
    return "\n".join(line for line in stderr.splitlines() if not line.startswith(_MARK))


def _main(directory: str) -> None:
    from zoo.errors import ZooError
    from zoo.export.exporter import check_accuracy, check_export

    def running(fmt: str, file: Path) -> None:
        print(f"{_MARK}{fmt} {file}", file=sys.stderr, flush=True)

    try:
        parity = check_export(directory, on_artifact=running)
        accuracy = check_accuracy(directory, on_artifact=running)
    except ZooError as exc:
        error = {"error": str(exc), "usage": isinstance(exc, UsageError)}
        print(json.dumps(error), flush=True)
        return
    document = {
        "parity": {k: v.to_dict() for k, v in parity.items()},
        "accuracy": {k: v.to_dict() for k, v in accuracy.items()},
    }
    print(json.dumps(document), flush=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    _main(sys.argv[1])
