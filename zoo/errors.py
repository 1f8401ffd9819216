"""Exceptions raised by zoo.

Every error zoo raises on purpose derives from :class:`ZooError`, so a caller can catch
them all at once; the CLI prints their message as one line instead of a traceback. Most are
defined here; the others live beside the code that raises them, in the module named in
brackets (import them from there).

```
ZooError
├── UsageError                 the caller asked for something that does not exist / is malformed
│   ├── UnknownNameError       no model, dataset, format, runtime or task of that name
│   │   │                      (suggests close matches)                      also KeyError
│   │   ├── UnknownModelError
│   │   ├── UnknownDatasetError
│   │   ├── UnknownFormatError
│   │   ├── UnknownRuntimeError
│   │   └── UnknownTaskError
│   ├── InvalidArgumentsError  a builder or task was given an option it does not take
│   │                                                                        also TypeError
│   ├── DataMismatchError      the dataset does not fit the model (dtype, channels...)
│   │                                                                       also ValueError
│   └── DirectoryLocked        another zoo process is writing that directory   [zoo._lock]
├── RegistryError              a plugin's model, format, runtime, task or dataset could not be
│   │                          registered
│   ├── InvalidSpecError       the registered object itself is malformed    also ValueError
│   │   └── OutputMismatchError
│   │                          a model's real outputs differ from what its spec declares
│   │                                                                     [zoo.spec_check]
│   └── DuplicateNameError     the name is taken (names both plugins)
│       └── DuplicateModelError
├── PluginError                a plugin failed to load (raised only with ZOO_STRICT_PLUGINS=1)
├── WeightsError               pretrained weights could not be found, downloaded or loaded
├── DataError                  a dataset could not be found, downloaded or read
├── NoSpaceError               the disk (or quota) is full; what was there before is kept
├── CheckpointError            a checkpoint is missing, unreadable, or does not fit the model
│                                                                         [zoo.checkpoint]
├── ArtifactError              an export directory is missing, corrupt, or fails its parity
│                              check                                 [zoo.export.manifest]
├── TrainingError              training cannot go on (the loss became NaN, say); the last
│                              good checkpoint is kept                 [zoo.train.trainer]
└── PeerFailed                 this rank stops because another one failed or stopped
                               answering (read the other's error)  [zoo.train.distributed]
```
"""

from __future__ import annotations

__all__ = [
    "DataError",
    "DataMismatchError",
    "DuplicateModelError",
    "DuplicateNameError",
    "InvalidArgumentsError",
    "InvalidSpecError",
    "NoSpaceError",
    "PluginError",
    "RegistryError",
    "UnknownDatasetError",
    "UnknownFormatError",
    "UnknownModelError",
    "UnknownNameError",
    "UnknownRuntimeError",
    "UnknownTaskError",
    "UsageError",
    "WeightsError",
    "ZooError",
    "one_line",
    "single_line",
    "user_message",
]


class ZooError(Exception):
    """Base class of every error zoo raises deliberately."""


class UsageError(ZooError):
    """The caller asked for something that does not exist or is malformed (CLI exit code 2)."""


class UnknownNameError(UsageError, KeyError):
    """A name that is not registered; suggests close names, or the command that lists them."""

    #: What was looked up, and the command that lists what exists.
    kind = "name"
    listing = "zoo list"

    def __init__(self, name: str, suggestions: list[str] | None = None) -> None:
        self.name = name
        self.suggestions = list(suggestions or [])
        super().__init__(name)

    def __str__(self) -> str:
        msg = f"unknown {self.kind} {self.name!r}"
        if self.suggestions:
            return msg + "; did you mean " + ", ".join(repr(s) for s in self.suggestions) + "?"
        return msg + f"; run `{self.listing}` to see them"


class UnknownModelError(UnknownNameError):
    """No model is registered under the requested name."""

    kind = "model"
    listing = "zoo list"


class UnknownDatasetError(UnknownNameError):
    """No dataset is registered under the requested name."""

    kind = "dataset"
    listing = "zoo datasets"


class UnknownFormatError(UnknownNameError):
    """No export format is registered under the requested name."""

    kind = "format"
    listing = "zoo formats"


class UnknownRuntimeError(UnknownNameError):
    """No benchmark runtime is registered under the requested name."""

    kind = "runtime"
    listing = "zoo runtimes"


class UnknownTaskError(UnknownNameError):
    """No training task is registered under the requested name."""

    kind = "task"
    listing = "zoo tasks"


class DataMismatchError(UsageError, ValueError):
    """A dataset's samples do not fit the model's input (dtype, channels, task)."""


class InvalidArgumentsError(UsageError, TypeError):
    """A model builder (or a task) was called with arguments it does not accept."""


class RegistryError(ZooError):
    """A model, format, runtime, task or dataset could not be registered."""


class InvalidSpecError(RegistryError, ValueError):
    """A registered object is malformed (a ModelSpec's name, task, input spec, builder; a
    format without files; a runtime that is not a Runtime...)."""


class DuplicateNameError(RegistryError):
    """A name is already registered, for the same kind of object, by another (or the same)
    plugin."""


class DuplicateModelError(DuplicateNameError):
    """A model name is already registered by another (or the same) plugin."""


class PluginError(ZooError):
    """A plugin failed to load; raised instead of recorded when ZOO_STRICT_PLUGINS=1."""


class WeightsError(ZooError):
    """Pretrained weights could not be found, downloaded or loaded."""


class DataError(ZooError):
    """A dataset could not be found, downloaded or read."""


class NoSpaceError(ZooError):
    """The disk (or the quota) filled up, or would have: the partial files were removed and
    the earlier checkpoint or export is intact."""


# One-line error text is made here alone: a message zoo prints (the CLI's error line, a plugin's
# load record, a bench row's reason, a conformance check) names what went wrong on one line.

_LINE_BREAKS = str.maketrans(
    {c: c.encode("unicode_escape").decode() for c in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"}
)


def single_line(message: str) -> str:
    """``message`` on one line, whatever it quotes: a value typed with a newline, or with any
    other character that ends a line (a record separator, a Unicode line separator), shows
    as its escape."""
    return message.translate(_LINE_BREAKS)


def one_line(exc: BaseException, limit: int = 240, *, first_line: bool = True) -> str:
    """``Type: message`` of an error raised by someone else's code (a library reading a file,
    a plugin) in one line. With ``first_line``, the message's first line, cut after its first
    sentence when long (torch's and ONNX Runtime's run on with advice); else all its lines,
    joined. The message is at most ``limit`` characters; an exception that cannot print
    itself says so."""
    try:
        message = str(exc)
    except Exception:
        message = "(its message could not be printed)"
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if not first_line:
        text = " ".join(" ".join(lines).split())
    else:
        text = lines[0] if lines else "no message"
        if len(text) > limit and ". " in text[:limit]:
            text = text[: text.index(". ") + 1]
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def user_message(exc: BaseException, limit: int = 240, *, first_line: bool = True) -> str:
    """What went wrong, in one line: zoo's own message as it is (written for users, it names
    the fix), anyone else's as :func:`one_line`."""
    if isinstance(exc, ZooError):
        return " ".join(str(exc).split())
    return one_line(exc, limit, first_line=first_line)
