"""What the listing commands print: a table (zoo._table's), or with ``--json`` the entries."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from zoo._io import json_text
from zoo._table import table

__all__ = ["echo_json", "echo_listing"]


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
