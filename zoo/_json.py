"""Reading JSON that zoo wrote but anyone could have edited: each helper returns the value if
it has the expected type and raises ValueError naming the field otherwise; :func:`read_text`
reads such a file (or a config file) without following it into a device or a huge file;
:func:`validator` checks a document against a declared JSON Schema, and :func:`first_error`
says the first thing wrong with it in one line, naming where."""

from __future__ import annotations

import math
import os
import stat
import sys
from typing import Any

__all__ = [
    "boolean",
    "first_error",
    "integer",
    "number",
    "obj",
    "read_text",
    "seq",
    "string",
    "validator",
]

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


def validator(schema: dict[str, Any]) -> Any:
    """A JSON Schema (2020-12) validator of ``schema`` with JSON's own integers (``1.0`` is a
    number, not an integer; ``true`` is neither) and zoo's keyword ``finite``: a number that
    is not NaN or infinite, and no integer beyond a float's range."""
    # here: jsonschema is imported by the commands that validate, not by `zoo --help`
    import jsonschema

    def finite(validator: Any, wanted: Any, instance: Any, schema: Any) -> Any:
        if not wanted or isinstance(instance, bool):
            return
        if isinstance(instance, float) and not math.isfinite(instance):
            yield jsonschema.ValidationError(f"{instance!r} is not finite")
        elif isinstance(instance, int) and abs(instance) > sys.float_info.max:
            yield jsonschema.ValidationError(f"{_shown(instance)} is beyond a float's range")

    base = jsonschema.Draft202012Validator
    checker = base.TYPE_CHECKER.redefine(
        "integer", lambda _, v: isinstance(v, int) and not isinstance(v, bool)
    )
    strict = jsonschema.validators.extend(base, validators={"finite": finite}, type_checker=checker)
    return strict(schema)


def first_error(checker: Any, document: Any, top: str = "the document") -> str | None:
    """The first thing ``checker`` (:func:`validator`) refuses in ``document``, in one line
    (``formats.onnx.parity.atol: must be a finite number, got inf``), or None. The first is
    the first by path, or where branches of a schema differ, the branch of the value's own type;
    a value is shown cut to 40 characters (a string to 120)."""
    errors = list(checker.iter_errors(document))
    if not errors:
        return None
    error = min(errors, key=lambda e: ([str(p) for p in e.absolute_path], -len(e.absolute_path)))
    error = _deepest(error)
    where = ".".join(str(p) for p in error.absolute_path) or top
    return f"{where}: {_describe(error)}"


def _deepest(error: Any) -> Any:
    # anyOf/oneOf: a branch of the value's own type says the most, and the deepest of those.
    while error.context:
        fitting = [e for e in error.context if e.validator != "type"]
        if not fitting:
            break
        error = max(fitting, key=lambda e: len(e.absolute_path))
    return error


def _describe(error: Any) -> str:
    wanted, got = error.validator_value, _shown(error.instance)
    words = {
        "type": lambda: (
            "must be "
            + " or ".join(
                _TYPES.get(t, str(t)) for t in (wanted if isinstance(wanted, list) else [wanted])
            )
        ),
        "finite": lambda: "must be a finite number",
        "minimum": lambda: f"must be at least {wanted}",
        "maximum": lambda: f"must be at most {wanted}",
        "exclusiveMinimum": lambda: f"must be more than {wanted}",
        "exclusiveMaximum": lambda: f"must be less than {wanted}",
        "enum": lambda: f"must be one of {', '.join(map(repr, wanted))}",
        "const": lambda: f"must be {wanted!r}",
        "minLength": lambda: f"must have at least {wanted} characters",
        "maxLength": lambda: f"must have at most {wanted} characters",
        "minItems": lambda: f"must have at least {wanted} items",
        "maxItems": lambda: f"must have at most {wanted} items",
        "maxProperties": lambda: f"must have at most {wanted} entries",
        "pattern": lambda: f"must match {wanted}",
    }
    if error.validator in ("pattern", "not") and error.schema.get("description"):
        return f"must be {error.schema['description']}, got {got}"
    if error.validator in words:
        return f"{words[error.validator]()}, got {got}"
    if error.validator in ("anyOf", "oneOf"):  # no branch of the value's type
        return f"must be {error.schema.get('description') or 'another kind of value'}, got {got}"
    return error.message if len(error.message) <= 160 else error.message[:157] + "..."


_TYPES = {
    "integer": "an integer",
    "number": "a number",
    "string": "a string",
    "object": "an object",
    "array": "a list",
    "boolean": "true or false",
    "null": "null",
}


def _shown(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**30:
        return f"an integer of {len(str(abs(value)))} digits"
    text = repr(value)
    limit = 120 if isinstance(value, str) else 40  # a file name, whole
    return text if len(text) <= limit else text[: limit - 3] + "..."
