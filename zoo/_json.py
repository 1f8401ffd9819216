"""Reading JSON that zoo wrote but anyone could have edited: each helper returns the value if
it has the expected type and raises ValueError naming the field otherwise."""

from __future__ import annotations

from typing import Any

__all__ = ["boolean", "integer", "number", "obj", "seq", "string"]

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
