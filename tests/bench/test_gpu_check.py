"""benchmarks/gpu_check.py: the device check's budget, records and CPU path, tried on the CPU."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import torch

from benchmarks import gpu_check

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


def _check(out: Path, *args: str, timeout: float = 300) -> tuple[int, str, dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(out), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    record = out / "gpu-check.json"
    assert record.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    return done.returncode, done.stdout + done.stderr, json.loads(record.read_text())


def _by_name(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["check"]: r for r in doc["checks"]}


def test_a_check_starts_only_if_its_estimate_fits_in_the_time_left() -> None:
    assert gpu_check.fit(10, 10) is None
    assert gpu_check.fit(10, 300) is None
    assert gpu_check.fit(120, 119.9) == "would not fit: needs ~120 s, 119 s left"
    assert gpu_check.fit(40, -3) == "would not fit: needs ~40 s, 0 s left"
    # Every check has an estimate, and the order is the priority order.
    for device in ("cuda", "cpu"):
        names = gpu_check.check_names(device)
        assert set(names) <= set(gpu_check.ESTIMATES_S)
        assert names[:2] == ["install", "ddp-nccl" if device == "cuda" else "ddp-gloo"]
        assert names.index("amp-fp16") < names.index("peer-lenet")
        assert names.index("peer-lenet") < names.index("single-stream-lenet")
        assert names.index("single-stream-lenet") < names.index("precision-lenet")
        assert names.index("precision-vgg_head") < names.index("scenarios-lenet")


@pytest.mark.slow  # trains LeNet three times, once through torchrun
def test_the_quick_cpu_run_records_install_ddp_and_amp(tmp_path: Path) -> None:
    out = tmp_path / "out"
    started = time.monotonic()
    code, said, doc = _check(
        out, "--device", "cpu", "--quick", "--only", "install,ddp-gloo,amp-fp32"
    )
    assert code == 0, said[-3000:]
    assert time.monotonic() - started < 180
    assert doc["schema"] == "zoo-gpu-check/2"
    assert doc["complete"] is True and doc["running"] is None
    assert doc["device"] == "cpu" and doc["quick"] is True
    assert doc["budget_s"] == gpu_check.DEFAULT_BUDGET_S
    assert doc["failed"] == [] and doc["skipped"] == []
    assert [r["check"] for r in doc["checks"]] == ["install", "ddp-gloo", "amp-fp32"]
    assert doc["environment"]["torch"] == torch.__version__  # the install check's record
    checks = _by_name(doc)
    for record in checks.values():
        assert record["status"] == "ok", record
        assert record["estimate_s"] == gpu_check.ESTIMATES_S[record["check"]]
        assert record["seconds"] >= 0

    install = checks["install"]
    assert install["torch"] == torch.__version__ and install["cuda_available"] is False
    assert install["versions"]["zoo"] == install["zoo"]
    assert install["versions"]["mlxtend"] and install["versions"]["jsonschema"]
    assert {"eager", "pt2", "compile"} <= set(install["runtimes"])
    assert install["formats"]["pt2"] is None  # available here

    ddp = checks["ddp-gloo"]
    launchers = ddp["launchers"]
    assert set(launchers) == {"zoo train --nproc 1", "torchrun --nproc-per-node 1"}
    torchrun = launchers["torchrun --nproc-per-node 1"]
    assert torchrun["distributed"] == {"world_size": 1, "backend": "gloo"}
    nproc = launchers["zoo train --nproc 1"]
    # zoo train --nproc 1 trains in the process itself today (no group); a group would be gloo.
    assert nproc["distributed"]["world_size"] == 1
    assert nproc["distributed"]["backend"] in ("gloo", None)
    for launched in launchers.values():
        assert launched["max_weight_difference_vs_plain"] < 1e-5
        assert 0.5 < launched["test_accuracy"] <= 1

    amp = checks["amp-fp32"]
    assert amp["epochs"] == 1 and 0.5 < amp["test_accuracy"] <= 1
    assert len(amp["samples_per_s"]) == 1 and amp["samples_per_s"][0] > 0

    table = (out / "gpu-check.md").read_text()
    assert "complete;" in table
    for name in ("install", "ddp-gloo", "amp-fp32"):
        assert f"| {name} | ok |" in table
    # Written atomically: no temporary file left beside the records; the runs were elsewhere.
    assert sorted(p.name for p in out.iterdir()) == ["gpu-check.json", "gpu-check.md"]


def test_what_does_not_fit_in_the_budget_is_skipped_and_recorded(tmp_path: Path) -> None:
    """The window began 29 of 30 seconds ago (--started): nothing fits, nothing fails, and
    the JSON says so, complete."""
    code, said, doc = _check(
        tmp_path, "--device", "cpu", "--budget", "30", "--started", str(time.time() - 29)
    )
    assert code == 0, said[-3000:]
    assert doc["complete"] is True and doc["failed"] == []
    assert doc["budget_s"] == 30
    checks = _by_name(doc)
    assert list(checks) == gpu_check.check_names("cpu")
    for name, record in checks.items():
        assert record["status"] == "skipped"
        assert "seconds" not in record  # never started
        if name in gpu_check.CUDA_ONLY:
            assert record["reason"] == gpu_check.CUDA_ONLY[name]
        else:
            estimate = gpu_check.ESTIMATES_S[name]
            assert record["reason"] == f"would not fit: needs ~{estimate:.0f} s, 0 s left"
    assert "| precision-lenet | skipped |" in (tmp_path / "gpu-check.md").read_text()


def test_a_check_whose_input_is_missing_is_skipped_with_why(tmp_path: Path) -> None:
    code, said, doc = _check(
        tmp_path, "--device", "cpu", "--quick", "--only",
        "cuda-to-cpu,single-stream-lenet,precision-lenet,scenarios-lenet,precision-resnet18",
    )  # fmt: skip
    assert code == 0, said[-3000:]
    reasons = {r["check"]: r["reason"] for r in doc["checks"]}
    assert reasons == {
        "cuda-to-cpu": "needs the amp-bf16 run (its check did not run or failed)",
        "single-stream-lenet": "needs the amp-fp32 run (its check did not run or failed)",
        "precision-lenet": "needs the amp-fp32 run (its check did not run or failed)",
        "precision-resnet18": gpu_check.CUDA_ONLY["precision-resnet18"],
        "scenarios-lenet": "needs single-stream-lenet's export (that check did not run or failed)",
    }


def test_every_command_is_cut_at_the_budget_with_its_children(tmp_path: Path) -> None:
    """A command past the time left is killed with the processes it started, and its check
    fails "timed out"."""
    checks = gpu_check.Checks(
        tmp_path / "out", tmp_path / "work", "cpu", True,
        budget_s=gpu_check.RESERVE_S + 2, started=time.time(),
    )  # fmt: skip
    pid_file = tmp_path / "grandchild.pid"
    spawn = (
        "import subprocess, sys, time\n"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(p.pid))\n"
        "print('started', flush=True)\n"
        "time.sleep(60)\n"
    )
    started = time.monotonic()
    with pytest.raises(gpu_check.CheckFailed) as failed:
        checks.command([sys.executable, "-c", spawn])
    assert time.monotonic() - started < 15
    assert failed.value.reason == "timed out"
    assert "started" in failed.value.tail
    grandchild = int(pid_file.read_text())
    assert _gone([grandchild]), f"the command's own child {grandchild} outlived the timeout"
    # Nothing left: the next command is refused at once, with the same reason.
    time.sleep(max(0.0, checks.left()))
    with pytest.raises(gpu_check.CheckFailed, match="timed out"):
        checks.command([sys.executable, "-c", "pass"])


def _gone(pids: list[int], timeout: float = 10) -> bool:
    """Every process ended (a zombie that no one reaps counts as ended)."""
    deadline = time.monotonic() + timeout
    while True:
        alive = []
        for pid in pids:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
            except psutil.NoSuchProcess:
                pass
        if not alive or time.monotonic() > deadline:
            return not alive
        time.sleep(0.1)


@pytest.mark.slow  # a zoo install probe and the start of a torchrun job
def test_a_terminated_run_keeps_what_it_measured(tmp_path: Path) -> None:
    """SIGTERM (the device run's own limit) mid-check: the checks done stay recorded, the one
    cut short says so, and the commands it ran are killed with it."""
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--out", str(out), "--device", "cpu", "--quick",
         "--only", "install,ddp-gloo", "--work", str(tmp_path / "work")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    record = out / "gpu-check.json"
    deadline = time.monotonic() + 120
    descendants: list[psutil.Process] = []
    while time.monotonic() < deadline:
        doc = json.loads(record.read_text()) if record.exists() else {}
        descendants = psutil.Process(proc.pid).children(recursive=True)
        if (doc.get("running") or {}).get("check") == "ddp-gloo" and descendants:
            break
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("the run never reached ddp-gloo")
    proc.send_signal(signal.SIGTERM)
    said, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, said[-3000:]
    doc = json.loads(record.read_text())
    assert doc["complete"] is False and doc["running"] is None
    assert [(r["check"], r["status"]) for r in doc["checks"]] == [
        ("install", "ok"),
        ("ddp-gloo", "failed"),
    ]
    assert doc["checks"][1]["reason"] == "interrupted"
    assert _gone([p.pid for p in descendants]), "a command outlived the run it belonged to"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_no_cuda_device_is_exit_2_and_an_unknown_check_a_usage_error(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(tmp_path), "--device", "cuda"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )  # fmt: skip
    assert done.returncode == 2
    assert "no CUDA device" in done.stdout
    assert not (tmp_path / "gpu-check.json").exists()
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(tmp_path), "--only", "install,bench-everything"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and "unknown check bench-everything" in done.stderr
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(tmp_path), "--device", "cpu",
         "--only", "ddp-nccl"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and "not a check with --device cpu: ddp-nccl" in done.stderr
