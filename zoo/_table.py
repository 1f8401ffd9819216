"""The one table renderer of zoo: the command line's listings (``zoo list``, ``zoo formats``,
``zoo export --check``), ``zoo bench``'s tables and ``zoo bench-train``'s Markdown."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["markdown_table", "table"]


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    align: str | None = None,
    title: str | None = None,
    rules: bool = False,
) -> str:
    """Columns padded to their widest cell, one line per row under the headers.

    ``align`` has a letter per column, ``l`` or ``r`` (default: all left). With ``rules`` the
    columns are separated by ``│`` and the headers underlined (wide tables whose cells hold
    spaces); else by two spaces. ``title``, where given, is a line of its own above.
    """
    alignment = _alignment(align, len(headers))
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        padded = [
            str(c).rjust(w) if a == "r" else str(c).ljust(w)
            for c, w, a in zip(cells, widths, alignment, strict=True)
        ]
        return (" │ " if rules else "  ").join(padded).rstrip()

    lines = [line(headers)]
    if rules:
        lines.append("─┼─".join("─" * w for w in widths))
    lines += [line(cells) for cells in rows]
    return "\n".join([title, *lines] if title else lines)


def markdown_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], *, align: str | None = None
) -> str:
    """A GitHub Markdown table (a ``|`` inside a cell is escaped)."""
    alignment = _alignment(align, len(headers))

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    marks = ["---:" if a == "r" else "---" for a in alignment]
    return "\n".join([line(headers), "| " + " | ".join(marks) + " |", *map(line, rows)])


def _alignment(align: str | None, columns: int) -> str:
    alignment = align if align is not None else "l" * columns
    if len(alignment) != columns or set(alignment) - {"l", "r"}:
        raise ValueError(f"align {align!r}: give l or r for each of the {columns} columns")
    return alignment
