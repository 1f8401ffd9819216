"""What the commands print: one-line messages, plain tables, JSON."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import click

from zoo._io import json_text

__all__ = ["echo_json", "echo_listing", "table"]


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=True)]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
        for line in [headers, *rows]
    ]
    return "\n".join(lines)


def echo_json(data: Any) -> None:
    click.echo(json_text(data), nl=False)


def echo_listing(
    entries: list[dict[str, Any]],
    as_json: bool,
    columns: dict[str, Callable[[dict[str, Any]], str]],
) -> None:
    """``--json``: the entries; otherwise a table of ``columns`` (heading -> an entry's cell)."""
    if as_json:
        echo_json(entries)
        return
    rows = [[cell(entry) for cell in columns.values()] for entry in entries]
    click.echo(table(list(columns), rows))
