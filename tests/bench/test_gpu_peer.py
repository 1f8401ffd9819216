"""benchmarks/gpu_peer.py: the hand-written peer of zoo's GPU run, tried on the CPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from benchmarks import gpu_peer
from benchmarks.targets import GPU_PEER_TARGETS, load_peer

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_peer.py"
EAGER, COMPILED, HALF = (v.name for v in gpu_peer.VARIANTS)
RESULT_KEYS = {
    "model", "batch", "variant", "precision", "status", "p50_ms", "p90_ms", "iterations",
    "first_call_s", "reason",
}  # fmt: skip


def _peer(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    out = tmp_path / "peer.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(out), "--device", "cpu", "--quick",
         "--models", "lenet", "--batch", "1", *args],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.exists(), done.stderr[-2000:]
    return done, json.loads(out.read_text())


def _check_schema(doc: dict[str, Any]) -> None:
    assert doc["schema"] == "zoo-gpu-peer/1"
    assert doc["device"] == "cpu"
    assert doc["created"][:2] == "20" and "T" in doc["created"]
    env = doc["environment"]
    assert env["torch"] == torch.__version__
    assert env["python"].count(".") == 2
    assert env["gpu"] is None and env["cuda"] is None  # on the CPU
    assert isinstance(env["cpu"], str) and env["cpu"]
    assert isinstance(env["cpu_flags"], list)
    tf32 = env["tf32"]
    assert isinstance(tf32["cuda.matmul.allow_tf32"], bool)
    assert isinstance(tf32["cudnn.allow_tf32"], bool)
    assert [(r["model"], r["batch"], r["variant"]) for r in doc["results"]] == [
        ("lenet", 1, EAGER),
        ("lenet", 1, COMPILED),
        ("lenet", 1, HALF),
    ]
    for result in doc["results"]:
        assert set(result) == RESULT_KEYS
        assert result["precision"] == ("fp16" if result["variant"] == HALF else "fp32")
        assert result["status"] in ("ok", "failed", "skipped")
        assert (result["status"] == "ok") == (not result["reason"])
        assert "\n" not in result["reason"]


@pytest.mark.slow  # compiles LeNet twice with Inductor on the CPU
def test_the_peer_times_every_variant_of_lenet_on_the_cpu(tmp_path: Path) -> None:
    done, doc = _peer(tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    _check_schema(doc)
    assert doc["settings"]["iterations"] == gpu_peer.QUICK_ITERATIONS
    by_variant = {r["variant"]: r for r in doc["results"]}
    for name in (EAGER, COMPILED):
        result = by_variant[name]
        assert result["status"] == "ok", result["reason"]
        assert 0 < result["p50_ms"] <= result["p90_ms"]
        assert result["iterations"] == gpu_peer.QUICK_ITERATIONS
        assert result["first_call_s"] >= 0
    # Compiling is the first call's work: it takes longer than the eager module's.
    assert by_variant[COMPILED]["first_call_s"] > by_variant[EAGER]["first_call_s"]
    half = by_variant[HALF]  # fp16 on a CPU: measured, or failed with its reason
    if half["status"] == "ok":
        assert 0 < half["p50_ms"] <= half["p90_ms"]
    else:
        assert half["status"] == "failed" and half["reason"]
    assert load_peer(tmp_path / "peer.json") == doc  # what targets.py --gpu-peer reads
    assert not list(tmp_path.glob(".*.tmp"))  # written through a temporary file, renamed


def test_a_spent_budget_skips_every_variant_and_still_writes_the_json(tmp_path: Path) -> None:
    done, doc = _peer(tmp_path, "--budget", "0")
    assert done.returncode == 1  # nothing measured
    _check_schema(doc)
    assert {r["status"] for r in doc["results"]} == {"skipped"}
    assert all("--budget of 0 s was spent" in r["reason"] for r in doc["results"])
    assert all(r["p50_ms"] is None and r["iterations"] == 0 for r in doc["results"])


def test_a_failed_variant_is_recorded_in_one_line_and_the_rest_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", torch.backends.cudnn.benchmark)
    real = gpu_peer.measure

    def broken_in_fp16(call: Any, x: torch.Tensor, *args: Any) -> dict[str, Any]:
        if x.dtype == torch.float16:
            assert x.is_contiguous(memory_format=torch.channels_last)
            raise RuntimeError("Inductor says no\nand says it at length")
        return real(call, x, *args)

    # The eager variant and the fp16 one (never compiled: its measure raises first).
    monkeypatch.setattr(gpu_peer, "VARIANTS", (gpu_peer.VARIANTS[0], gpu_peer.VARIANTS[2]))
    monkeypatch.setattr(gpu_peer, "measure", broken_in_fp16)
    out = tmp_path / "sub" / "peer.json"
    argv = ["--out", str(out), "--device", "cpu", "--quick", "--models", "lenet", "--batch", "1,2"]
    assert gpu_peer.main([*argv, "--iterations", "7"]) == 0
    results = json.loads(out.read_text())["results"]
    assert [(r["batch"], r["variant"], r["status"]) for r in results] == [
        (1, EAGER, "ok"),
        (1, HALF, "failed"),
        (2, EAGER, "ok"),
        (2, HALF, "failed"),
    ]
    assert results[0]["iterations"] == 7
    assert results[1]["reason"] == "RuntimeError: Inductor says no"
    assert "lenet batch 2 eager fp32: p50" in capsys.readouterr().out


def test_usage_errors_exit_2_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "peer.json"
    assert gpu_peer.main(["--out", str(out), "--device", "cpu", "--models", "lenett"]) == 2
    error = capsys.readouterr().err
    assert "lenett" in error and error.count("\n") == 1
    if not torch.cuda.is_available():
        assert gpu_peer.main(["--out", str(out), "--models", "lenet"]) == 2
        assert "no CUDA device here" in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(SystemExit):
        gpu_peer.parse(["--out", str(out), "--batch", "0"])


def test_the_peer_covers_every_gpu_peer_target() -> None:
    import zoo

    assert {(t.model, t.batch) for t in GPU_PEER_TARGETS} <= {
        (m, b) for m in gpu_peer.MODELS for b in gpu_peer.BATCHES
    }
    assert set(gpu_peer.MODELS) <= set(zoo.list_models())
