"""An export is replaced only with --overwrite, and stays whole until the new one is done."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from tests.faults.conftest import TRAIN, leftovers, one_line_error, run
from zoo.export import exporter
from zoo.export.exporter import check_export, export_model
from zoo.export.manifest import read_manifest, sha256


def _hashes(directory: Path) -> dict[str, str]:
    return {p.name: sha256(p) for p in sorted(directory.iterdir())}


def test_an_export_of_trained_weights_is_not_replaced_without_overwrite(tmp_path: Path) -> None:
    assert run(*TRAIN, "--epochs", "1", "--out", "R", cwd=tmp_path).returncode == 0
    made = run(
        "export",
        "lenet",
        "--format",
        "torchscript,pt2",
        "--checkpoint",
        "R",
        "--out",
        "D",
        cwd=tmp_path,
    )
    assert made.returncode == 0, made.stderr
    before = _hashes(tmp_path / "D")
    refused = run("export", "lenet", "--format", "torchscript", "--out", "D", cwd=tmp_path)
    assert refused.returncode == 2
    checkpoint = (tmp_path / "R" / "best").resolve()
    assert one_line_error(refused.stderr) == (
        f"zoo: error: D already holds an export of lenet with the weights of {checkpoint} "
        "(pt2, torchscript): pass --overwrite to replace it, or choose another --out "
        "(nothing was changed)"
    )
    assert _hashes(tmp_path / "D") == before
    # Every file follows the umask (safetensors files were written 0600).
    umask = os.umask(0)
    os.umask(umask)
    files = [*(tmp_path / "D").iterdir(), *(tmp_path / "R" / "best").iterdir()]
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in files} == {
        p.name: 0o666 & ~umask for p in files
    }
    replaced = run(
        "export", "lenet", "--format", "torchscript", "--out", "D", "--overwrite", cwd=tmp_path
    )
    assert replaced.returncode == 0, replaced.stderr
    manifest = read_manifest(tmp_path / "D")
    assert (manifest.weights_source, list(manifest.formats)) == ("fresh weights", ["torchscript"])
    assert not (tmp_path / "D" / "model.pt2").exists()
    again = run("export", "lenet", "--format", "torchscript", "--out", "D", cwd=tmp_path)
    assert "D already holds an export of lenet with fresh random weights (torchscript)" in (
        one_line_error(again.stderr)
    )
    assert leftovers(tmp_path) == []


def test_an_overwrite_that_fails_keeps_the_old_export_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "D"
    export_model("lenet", out, formats=("torchscript",), seed=1)
    before = _hashes(out)

    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(exporter, "_export_one", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export_model("lenet", out, formats=("torchscript",), seed=2, overwrite=True)
    assert _hashes(out) == before
    assert sorted(os.listdir(tmp_path)) == ["D"]


def test_an_export_killed_between_its_two_renames_is_put_back(tmp_path: Path) -> None:
    out = tmp_path / "D"
    export_model("lenet", out, formats=("torchscript",), seed=1)
    before = _hashes(out)
    # What a SIGKILL between os.replace(out, old) and os.replace(staging, out) leaves:
    os.replace(out, tmp_path / ".D.old")
    (tmp_path / ".D.partial-abc").mkdir()
    refused = run("export", "lenet", "--format", "torchscript", "--out", "D", cwd=tmp_path)
    assert "D already holds an export of lenet" in one_line_error(refused.stderr)
    assert _hashes(out) == before and check_export(out)["torchscript"].passed
    assert sorted(os.listdir(tmp_path)) == ["D"]


def test_export_check_removes_what_a_killed_export_left_beside_it(tmp_path: Path) -> None:
    """The probe's: a SIGKILLed export leaves .D.partial-* and .D.zoo-lock beside D. A
    re-export cleans them, and so does zoo export --check D (the export itself untouched)."""
    import signal
    import time

    from tests.faults.conftest import start

    assert (
        run("export", "lenet", "--format", "torchscript", "--out", "D", cwd=tmp_path).returncode
        == 0
    )
    before = _hashes(tmp_path / "D")
    again = start("export", "lenet", "--format", "torchscript,onnx", "--out", "D", "--overwrite",
                  cwd=tmp_path)  # fmt: skip
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".D.partial-*/*")) and time.monotonic() < deadline:
        time.sleep(0.01)  # killed once it writes into its staging directory
    again.send_signal(signal.SIGKILL)
    again.wait()
    left = sorted(p.name for p in tmp_path.iterdir() if p.name != "D")
    assert ".D.zoo-lock" in left and any(n.startswith(".D.partial-") for n in left), left
    checked = run("export", "--check", "D", cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert checked.stderr.strip() == (
        f"note: removed what an interrupted export left beside D: {', '.join(left)}"
    )
    assert sorted(os.listdir(tmp_path)) == ["D"] and _hashes(tmp_path / "D") == before
    assert run("export", "--check", "D", cwd=tmp_path).stderr == ""  # nothing left to say
