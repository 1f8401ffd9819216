"""A malformed or hostile checkpoint gets one line naming the file, and runs nothing."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.faults.conftest import TRAIN, one_line_error, run
from zoo.checkpoint import CheckpointError, load_checkpoint


@pytest.fixture(scope="module")
def good_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("good")
    assert run(*TRAIN, "--epochs", "1", "--out", "R", cwd=where).returncode == 0
    return where / "R"


def _copy(good_run: Path, tmp_path: Path) -> tuple[Path, Path]:
    run_dir = tmp_path / "R"
    shutil.copytree(good_run, run_dir, symlinks=True)
    return run_dir, (run_dir / "last").resolve()


def _edit_meta(checkpoint: Path, change: Any) -> None:
    meta = json.loads((checkpoint / "meta.json").read_text())
    (checkpoint / "meta.json").write_text(json.dumps(change(meta)))


MALFORMED = {
    "not JSON": (lambda m: None, r"meta.json: JSONDecodeError"),
    "a list": (lambda m: [m], r"meta.json is malformed: expected an object, got a list"),
    "no config": (
        lambda m: {k: v for k, v in m.items() if k != "config"},
        r"meta.json is malformed: 'config' must be an object, got missing",
    ),
    "config a list": (
        lambda m: {**m, "config": [1]},
        r"meta.json is malformed: 'config' must be an object, got a list \[1\]",
    ),
    "epoch a string": (
        lambda m: {**m, "epoch": "1"},
        r"meta.json is malformed: 'epoch' must be a count, got a string \"1\"",
    ),
    "step a boolean": (
        lambda m: {**m, "step": True},
        r"meta.json is malformed: 'step' must be a count, got a boolean true",
    ),
    "progress without history": (
        lambda m: {**m, "progress": {k: v for k, v in m["progress"].items() if k != "history"}},
        r"'history' must be a list \(in 'progress'\), got missing",
    ),
    "model_args a string": (
        lambda m: {**m, "model_args": "x"},
        r"'model_args' must be an object, got a string",
    ),
    "format 7": (lambda m: {**m, "format_version": 7}, r"has format 7; this zoo reads format 1"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_meta_json_is_one_line_naming_the_file(
    good_run: Path, tmp_path: Path, case: str
) -> None:
    change, message = MALFORMED[case]
    run_dir, checkpoint = _copy(good_run, tmp_path)
    if case == "not JSON":
        (checkpoint / "meta.json").write_text("{'config': ")
    else:
        _edit_meta(checkpoint, change)
    with pytest.raises(CheckpointError, match=message) as info:
        load_checkpoint(run_dir)
    assert str(checkpoint) in str(info.value) and "\n" not in str(info.value)


def test_malformed_meta_json_through_the_commands(good_run: Path, tmp_path: Path) -> None:
    _, checkpoint = _copy(good_run, tmp_path)
    _edit_meta(checkpoint, lambda m: {k: v for k, v in m.items() if k != "config"})
    resumed = run(*TRAIN, "--epochs", "2", "--out", "R", "--resume", "auto", cwd=tmp_path)
    exported = run("export", "lenet", "--checkpoint", "R", "--out", "D", cwd=tmp_path)
    for result in (resumed, exported):
        assert result.returncode == 1
        assert one_line_error(result.stderr) == (
            f"zoo: error: checkpoint {checkpoint / 'meta.json'} is malformed: 'config' must be "
            "an object, got missing (zoo writes this file; was it edited?)"
        )
    assert not (tmp_path / "D").exists()


CONFIGS = {
    # The probe's: an epoch of 10^30 was taken for a finished run, a string for epochs.
    "epoch 10^30": (
        lambda m: {**m, "epoch": 10**30, "progress": {**m["progress"], "epoch": 10**30}},
        r"meta.json: 'epoch' is 1000000000000000000000000000000, beyond the 1 epochs its "
        r"config plans",
    ),
    "progress epoch beyond": (
        lambda m: {**m, "progress": {**m["progress"], "epoch": 2}},
        r"meta.json: progress 'epoch' is 2, beyond the 1 epochs its config plans",
    ),
    "config epochs a string": (
        lambda m: {**m, "config": {**m["config"], "epochs": "15"}},
        r"meta.json is malformed: config: epochs: must be an integer >= 1, got '15'",
    ),
    "config of an unknown option": (
        lambda m: {**m, "config": {**m["config"], "epoks": 3}},
        r"meta.json is malformed: config: unknown training option 'epoks' "
        r"\(did you mean 'epochs'\?\)",
    ),
}


@pytest.mark.parametrize("case", list(CONFIGS))
def test_a_config_or_epoch_zoo_never_writes_is_refused_by_resume_and_export(
    good_run: Path, tmp_path: Path, case: str
) -> None:
    """The probe's: an epoch of 10^30 was taken for a finished run, and epochs "15" was
    accepted. Both commands that read a checkpoint's config refuse it in one line."""
    change, message = CONFIGS[case]
    _, checkpoint = _copy(good_run, tmp_path)
    _edit_meta(checkpoint, change)
    resumed = run(*TRAIN, "--epochs", "2", "--out", "R", "--resume", "auto", cwd=tmp_path)
    exported = run("export", "lenet", "--checkpoint", "R", "--out", "D", cwd=tmp_path)
    for result in (resumed, exported):
        assert result.returncode == 1, result.stdout + result.stderr
        line = one_line_error(result.stderr)
        assert line.startswith(f"zoo: error: checkpoint {checkpoint / 'meta.json'}")
        assert re.search(message, line), line
    assert not (tmp_path / "D").exists()


def _elsewhere(good_run: Path, tmp_path: Path) -> Path:
    """A valid checkpoint outside the run (another run's), which a link in the run names."""
    other = tmp_path / "elsewhere"
    shutil.copytree((good_run / "best").resolve(), other / "ckpt")
    return other / "ckpt"


def best_links_out(run_dir: Path, good_run: Path, tmp_path: Path) -> str:
    outside = _elsewhere(good_run, tmp_path)
    (run_dir / "best").unlink()
    (run_dir / "best").symlink_to(outside)
    return f"R/best points to {outside}, outside the run's own checkpoints: zoo does not follow"


def last_links_out(run_dir: Path, good_run: Path, tmp_path: Path) -> str:
    outside = _elsewhere(good_run, tmp_path)
    (run_dir / "last").unlink()
    (run_dir / "last").symlink_to(outside)
    return f"R/last points to {outside}, outside the run's own checkpoints: zoo does not follow"


def checkpoints_dir_links_out(run_dir: Path, good_run: Path, tmp_path: Path) -> str:
    other = tmp_path / "elsewhere"
    shutil.move(run_dir / "checkpoints", other)
    (run_dir / "checkpoints").symlink_to(other)
    return "R/checkpoints is a symbolic link: zoo does not follow a run's links out of it"


def state_links_out(run_dir: Path, good_run: Path, tmp_path: Path) -> str:
    import os

    # A FIFO without a writer: a zoo that followed the link would block on it.
    target = tmp_path / "elsewhere" / "state.pt"
    target.parent.mkdir()
    os.mkfifo(target)
    state = (run_dir / "best").resolve() / "state.pt"
    state.unlink()
    state.symlink_to(target)
    return f"checkpoint file {state} is a symbolic link"


LINKS = [best_links_out, last_links_out, checkpoints_dir_links_out, state_links_out]


@pytest.mark.parametrize("change", LINKS, ids=[c.__name__ for c in LINKS])
def test_a_link_out_of_the_run_is_refused_not_followed(
    good_run: Path, tmp_path: Path, change: Any
) -> None:
    """The probe's: zoo export --checkpoint followed best, checkpoints/ or state.pt out of the
    run. Export reads best, --resume reads last: each refuses in one line, writing nothing."""
    from tests.hostile.conftest import snapshot

    run_dir, _ = _copy(good_run, tmp_path)
    expected = change(run_dir, good_run, tmp_path)
    before = snapshot(tmp_path)
    command = (
        [*TRAIN, "--epochs", "2", "--out", "R", "--resume", "auto"]
        if change is last_links_out
        else ["export", "lenet", "--checkpoint", "R", "--out", "D", "--format", "onnx"]
    )
    result = run(*command, cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert expected in one_line_error(result.stderr)
    after = snapshot(tmp_path)
    assert set(after) == set(before)  # nothing new, nothing gone (the lock came and went)
    outside = [name for name in before if name.startswith("elsewhere")]
    assert outside and all(after[name] == before[name] for name in outside)  # untouched


class Payload:
    """Unpickling this would print; torch.load(weights_only=True) must refuse it unrun."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (print, ("PAYLOAD RAN",))


def test_a_pickle_payload_in_state_pt_is_refused_in_one_line_and_never_runs(
    good_run: Path, tmp_path: Path
) -> None:
    _, checkpoint = _copy(good_run, tmp_path)
    state = torch.load(checkpoint / "state.pt", weights_only=True)
    torch.save({**state, "extra": Payload()}, checkpoint / "state.pt")
    result = run(*TRAIN, "--epochs", "2", "--out", "R", "--resume", "auto", cwd=tmp_path)
    assert result.returncode == 1
    assert "PAYLOAD RAN" not in result.stdout + result.stderr
    assert one_line_error(result.stderr) == (
        f"zoo: error: checkpoint file {checkpoint / 'state.pt'} holds Python objects, not only "
        "tensors and plain values; zoo does not load such files (zoo never wrote it): use a "
        "checkpoint written by `zoo train`"
    )


def test_a_state_pt_that_is_not_the_trainer_state_is_refused(
    good_run: Path, tmp_path: Path
) -> None:
    run_dir, checkpoint = _copy(good_run, tmp_path)
    torch.save([torch.zeros(1)], checkpoint / "state.pt")
    with pytest.raises(CheckpointError, match=r"state.pt is malformed: expected the optimizer"):
        load_checkpoint(run_dir)
