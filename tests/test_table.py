"""zoo's one table renderer: the listings' columns, zoo bench's ruled tables, Markdown."""

from __future__ import annotations

import pytest

from zoo._table import markdown_table, table


def test_columns_are_padded_to_their_widest_cell_and_lines_end_without_blanks() -> None:
    text = table(["NAME", "TASK"], [["lenet", "classification"], ["vae", "generation"]])
    assert text.splitlines() == [
        "NAME   TASK",
        "lenet  classification",
        "vae    generation",
    ]


def test_a_ruled_table_aligns_figures_right_under_its_title() -> None:
    text = table(
        ["batch", "runtime", "p50"],
        [["1", "* onnxruntime", "0.25"], ["32", "eager", "12.1"]],
        align="rlr",
        title="m on cpu",
        rules=True,
    )
    assert text.splitlines() == [
        "m on cpu",
        "batch │ runtime       │  p50",
        "──────┼───────────────┼─────",
        "    1 │ * onnxruntime │ 0.25",
        "   32 │ eager         │ 12.1",
    ]


def test_markdown_marks_right_aligned_columns_and_escapes_pipes() -> None:
    text = markdown_table(["variant", "samples/s"], [["**a|b**", "1,000"]], align="lr")
    assert text.splitlines() == [
        "| variant | samples/s |",
        "| --- | ---: |",
        "| **a\\|b** | 1,000 |",
    ]


def test_an_alignment_that_does_not_fit_the_columns_is_refused() -> None:
    with pytest.raises(ValueError, match="give l or r for each of the 2 columns"):
        table(["a", "b"], [], align="lcr")
    with pytest.raises(ValueError, match="2 columns"):
        markdown_table(["a", "b"], [], align="x")
