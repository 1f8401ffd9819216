"""One-line error text, made in zoo.errors alone: what a library's, a plugin's and zoo's own
errors look like on the one line a user reads."""

from __future__ import annotations

import pytest

from zoo.errors import UsageError, one_line, single_line, user_message


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no")


def test_a_librarys_error_is_its_type_and_first_line() -> None:
    exc = RuntimeError("  Error(s) in loading state_dict\n\tMissing key(s): fc.weight\n")
    assert one_line(exc) == "RuntimeError: Error(s) in loading state_dict"
    assert one_line(ValueError()) == "ValueError: no message"


def test_a_long_first_line_is_cut_after_its_first_sentence_or_at_the_limit() -> None:
    sentence = "The file is not a zip archive. " + "Advice. " * 60
    assert one_line(OSError(sentence)) == "OSError: The file is not a zip archive."
    text = one_line(OSError("x" * 500), limit=40)
    assert text == "OSError: " + "x" * 37 + "..." and len(text) == len("OSError: ") + 40


def test_a_plugins_error_keeps_every_line_joined() -> None:
    exc = ImportError("cannot import name 'Foo'\n  (did you mean 'Bar'?)")
    assert one_line(exc, first_line=False) == (
        "ImportError: cannot import name 'Foo' (did you mean 'Bar'?)"
    )
    assert one_line(KeyboardInterrupt(), first_line=False) == "KeyboardInterrupt"


def test_an_error_that_cannot_print_itself_says_so() -> None:
    assert one_line(Unprintable()) == "Unprintable: (its message could not be printed)"


def test_zoos_own_message_is_shown_as_written_and_others_typed() -> None:
    assert user_message(UsageError("--lr must be positive,\n got -1")) == (
        "--lr must be positive, got -1"
    )
    assert user_message(TypeError("bad\nvalue")) == "TypeError: bad"


@pytest.mark.parametrize("brk", ["\n", "\r", "\x1e", "\u2028"])
def test_single_line_shows_any_line_break_as_its_escape(brk: str) -> None:
    text = single_line(f"no model named 'a{brk}b'")
    assert len(text.splitlines()) == 1 and brk not in text
    assert text == f"no model named 'a{brk.encode('unicode_escape').decode()}b'"
