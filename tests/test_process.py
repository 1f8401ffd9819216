"""Child processes: a result, or one line saying how the child failed."""

from __future__ import annotations

import sys

import pytest

from zoo._process import ChildFailed, run_json_child


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_the_last_line_is_the_result() -> None:
    code = "import sys, json; print('noise'); print(json.dumps({'got': sys.stdin.read()}))"
    assert run_json_child(_python(code), input="hello", timeout=60) == {"got": "hello"}


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("import os; os.abort()", "crashed (killed by SIGABRT): no message"),
        ("raise SystemExit('bad input')", "crashed (exit status 1): bad input"),
        (
            'import sys; sys.stderr.write("what():  index out of bounds\\nAborted\\n"); '
            "sys.exit(3)",
            "crashed (exit status 3): index out of bounds",
        ),
        ("print('not json')", "printed no result: not json"),
        ("pass", "crashed (exit status 0): no message"),
        ("import time; time.sleep(30)", "did not finish in 1 s"),
    ],
    ids=["abort", "exit", "cpp-exception", "not-json", "silent", "timeout"],
)
def test_a_failed_child_is_one_line_saying_how(code: str, reason: str) -> None:
    with pytest.raises(ChildFailed) as caught:
        run_json_child(_python(code), timeout=1 if "sleep" in code else 60)
    assert str(caught.value) == reason
    assert caught.value.timed_out is ("sleep" in code)


def test_a_child_failure_keeps_its_timed_out_through_pickling() -> None:
    import pickle

    failed = pickle.loads(pickle.dumps(ChildFailed("did not finish in 5 s", timed_out=True)))
    assert (str(failed), failed.timed_out) == ("did not finish in 5 s", True)
    assert ChildFailed("crashed (exit status 1): x").timed_out is False
