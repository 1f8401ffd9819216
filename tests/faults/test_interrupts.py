"""Ctrl-C, as real SIGINTs: during start-up imports, during a checkpoint save, twice."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from tests.faults.conftest import TRAIN, leftovers, run
from tests.helpers import assert_identical, weights
from zoo._interrupts import ImportSafeInterrupt
from zoo.checkpoint import SIGNAL_ENV, load_checkpoint

#: A schedule that does not depend on --epochs, so a resumed run equals a straight one.
STEADY = [*TRAIN, "--scheduler", "step", "--step-size", "1"]

#: Sends this process SIGINT when the module named by $HOOK_SIGINT_ON_IMPORT starts to
#: import, then lets the import go on slowly: a Ctrl-C that lands mid-import, every time.
HOOK = """
import os, signal, sys, time

class _Hook:
    fired = False

    def find_spec(self, name, path=None, target=None):
        if not self.fired and name == os.environ["HOOK_SIGINT_ON_IMPORT"]:
            self.fired = True
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(10):
                time.sleep(0.02)
        return None

if os.environ.get("HOOK_SIGINT_ON_IMPORT"):
    sys.meta_path.insert(0, _Hook())
"""


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("straight")
    assert run(*STEADY, "--epochs", "2", "--out", "R", cwd=where).returncode == 0
    return where / "R"


@pytest.mark.parametrize("module", ["numpy._core.umath", "torch.nn"])
def test_ctrl_c_during_start_up_imports_aborts_cleanly(tmp_path: Path, module: str) -> None:
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(textwrap.dedent(HOOK))
    result = run(
        *TRAIN,
        "--epochs",
        "1",
        "--out",
        "R",
        cwd=tmp_path,
        PYTHONPATH=str(hook),
        HOOK_SIGINT_ON_IMPORT=module,
    )
    # torch imports numpy from C and swallows the KeyboardInterrupt: the run then went on
    # with half a numpy (AttributeError), or trained to the end as if nothing happened.
    assert (result.returncode, result.stderr.strip()) == (130, "zoo: aborted"), result.stderr
    assert not (tmp_path / "R").exists()


def test_a_ctrl_c_held_through_an_import_is_raised_as_the_outermost_import_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The handler's timer alone was a race (a run directory made before its next look), so
    # it is switched off here: the import statement itself must deliver the Ctrl-C.
    interrupt = ImportSafeInterrupt()
    interrupt._timer_armed = True
    monkeypatch.setattr(sys, "_held_ctrl_c", interrupt, raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "held_inner.py").write_text(
        "import signal, sys\nsys._held_ctrl_c(signal.SIGINT, sys._getframe())\n"
    )
    (tmp_path / "held_outer.py").write_text("import held_inner\nDONE = True\n")
    after = []
    try:
        with pytest.raises(KeyboardInterrupt):
            import held_outer  # noqa: F401

            after.append("the statement after the import")
        assert after == []
        assert sys.modules["held_outer"].DONE  # the import ran to its end first
        assert not interrupt.pending
        assert sys.getprofile() is None
    finally:
        interrupt.restore()
        for name in ("held_inner", "held_outer"):
            sys.modules.pop(name, None)


def test_a_second_ctrl_c_during_a_save_waits_for_it_then_exits_130(
    tmp_path: Path, straight: Path
) -> None:
    # Ctrl-C twice while the epoch-1 checkpoint is written (after its weights, its state).
    twice = {SIGNAL_ENV: "2:INT,3:INT"}
    result = run(*STEADY, "--epochs", "2", "--out", "R", cwd=tmp_path, **twice)
    assert result.returncode == 130, result.stderr
    assert result.stderr.strip() == "zoo: aborted"
    saved = (tmp_path / "R" / "last").resolve()
    assert result.stdout.splitlines()[-1] == (
        f"interrupted during a checkpoint save, which completed: saved "
        f"{Path('R') / 'checkpoints' / saved.name}; continue with --resume R"
    )
    assert load_checkpoint(tmp_path / "R").meta["epoch"] == 1
    assert leftovers(tmp_path) == []
    resumed = run(*STEADY, "--epochs", "2", "--out", "R", "--resume", "auto", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert_identical(weights(straight), weights(tmp_path / "R"))


def test_one_ctrl_c_during_a_save_stops_at_the_next_batch_and_resumes_exactly(
    tmp_path: Path, straight: Path
) -> None:
    result = run(*STEADY, "--epochs", "2", "--out", "R", cwd=tmp_path, **{SIGNAL_ENV: "4:INT"})
    assert result.returncode == 130, result.stderr
    assert "interrupted at epoch 2, batch 1: saved" in result.stdout
    meta = load_checkpoint(tmp_path / "R").meta
    assert (meta["progress"]["epoch"], meta["progress"]["batch"]) == (1, 1)
    assert leftovers(tmp_path) == []
    resumed = run(*STEADY, "--epochs", "2", "--out", "R", "--resume", "auto", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert_identical(weights(straight), weights(tmp_path / "R"))


def test_what_a_killed_run_left_is_removed_by_the_next_run_of_its_directory(
    tmp_path: Path,
) -> None:
    first = run(*STEADY, "--epochs", "1", "--out", "R", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    run_dir = tmp_path / "R"
    # What a process SIGKILLed mid-write leaves (no finally block runs).
    left = [
        run_dir / ".metrics.json.k2j4_x.tmp",
        run_dir / ".confusion_matrix.png.9dfa1q.tmp",
        run_dir / ".last.link-tmp",
        run_dir / "checkpoints" / ".epoch0002-step0000012.partial" / "model.safetensors",
    ]
    for path in left:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half")
    mine = run_dir / "notes.tmp"  # not zoo's: kept
    mine.write_text("keep")
    resumed = run(*STEADY, "--epochs", "2", "--out", "R", "--resume", "auto", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert leftovers(tmp_path) == []
    assert mine.read_text() == "keep"
