"""Parameter types and parsers shared by the commands: values checked against their declared
:class:`~zoo.train.config.Option` (the schema config files are checked against), ``KEY=VALUE``
pairs, comma-separated lists."""

from __future__ import annotations

import ast
from collections.abc import Callable, Sequence
from typing import Any

import click

from zoo.train.config import Option, accepts

__all__ = ["NON_NEGATIVE", "WAIT_QUIET", "Checked", "csv_values", "parse_args"]


def parse_args(pairs: Sequence[str], option: str = "--arg") -> dict[str, Any]:
    """``KEY=VALUE`` pairs; values are Python literals where they parse, else strings."""
    kwargs: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint=option)
        try:
            value: Any = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw
        kwargs[key.strip()] = value
    return kwargs


class Checked(click.ParamType):
    """A value from the command line, parsed and checked against its declared
    :class:`~zoo.train.config.Option` (the schema config files are checked against): the
    same type, range and message wherever the value comes from."""

    def __init__(self, declared: Option) -> None:
        self.declared = declared
        self.name = {"integer": "integer", "number": "float", "integers": "integers"}.get(
            declared.kind, "text"
        )

    def get_metavar(self, param: click.Parameter, ctx: click.Context) -> str | None:
        choices = self.declared.choices
        return f"[{'|'.join(choices)}]" if choices else None

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        parsers: dict[str, Callable[[str], Any]] = {
            "integer": int,
            "number": float,
            "integers": lambda text: [int(v) for v in text.split(",") if v.strip()],
        }
        parse = parsers.get(self.declared.kind, str)
        try:
            parsed = parse(value)
        except ValueError:
            parsed = None
        if parsed is None or not accepts(self.declared, parsed):
            self.fail(f"must be {self.declared.expects()}, got {value!r}", param, ctx)
        return parsed


#: Tolerances, thresholds and durations: finite, and not negative.
NON_NEGATIVE = Checked(Option("number", minimum=0))


def csv_values(value: str, option: str, cast: Any = str) -> tuple[Any, ...]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    try:
        return tuple(cast(v) for v in items)
    except ValueError:
        raise click.BadParameter(
            f"comma-separated values, got {value!r}", param_hint=option
        ) from None


#: ``zoo bench`` and ``zoo bench-train``: wait for a quiet machine before each worker.
WAIT_QUIET = click.option(
    "--wait-quiet",
    type=NON_NEGATIVE,
    default=0.0,
    show_default=True,
    help="Before each worker, wait up to this many seconds for other processes to use under "
    "10% of the CPUs (a shared machine).",
)
