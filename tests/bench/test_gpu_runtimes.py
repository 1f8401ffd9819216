"""The GPU runtimes and what every CUDA row records, as far as a machine without a GPU can
check them: ``pt2-graphs`` (torch.compile with CUDA graphs) compiles and runs on the CPU,
the half-precision ``.pt2`` variants run there, ``aoti-cuda`` says why it cannot, the CUDA
graph replay's bookkeeping runs against a stand-in for ``torch.cuda``, and the TF32 setting
reaches the worker and the table. The device check (benchmarks/gpu_check.py) runs the rest
on a GPU."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.bench.test_timing_and_results import _row, _run
from zoo.bench.report import peer_losses, print_table
from zoo.bench.worker import Job
from zoo.runtimes import cuda_graphed, strict_fp32, tf32_state

ZOO = str(Path(sys.executable).with_name("zoo"))
#: A hang guard, not a speed target.
HANG = 600


def zoo(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ZOO, *args], capture_output=True, text=True, timeout=HANG, cwd=cwd
    )  # fmt: skip


@pytest.fixture(scope="module")
def half_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """LeNet trained one epoch, exported as .pt2 in fp32, bf16 and fp16."""
    root = tmp_path_factory.mktemp("half")
    trained = zoo("train", "lenet", "--data", "digits", "--epochs", "1", "--no-tensorboard",
                  "--no-progress", "--out", str(root / "run"))  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-2000:]
    exported = zoo("export", "lenet", "--checkpoint", str(root / "run"), "--format", "pt2",
                   "--precision", "fp32,bf16,fp16", "--out", str(root / "export"))  # fmt: skip
    assert exported.returncode == 0, exported.stderr[-2000:]
    return root / "export"


def test_fp16_pt2_is_gated_on_accuracy_and_holds_fp16_channels_last_weights(
    half_export: Path,
) -> None:
    manifest = json.loads((half_export / "manifest.json").read_text())
    record = manifest["formats"]["pt2-fp16"]
    assert record["status"] == "ok" and record["precision"] == "fp16"
    assert record["accuracy"]["precision"] == "fp16"
    assert record["accuracy"]["drop"] <= record["accuracy"]["max_drop"]
    assert record["details"]["memory_format"] == "channels_last"
    program = torch.export.load(str(half_export / "model.fp16.pt2"))
    # The model's convolutions; the preprocessing's constants stay fp32.
    convs = [t for k, t in program.state_dict.items() if k.startswith("model.") and t.dim() == 4]
    assert convs and all(t.dtype == torch.float16 for t in convs)
    assert all(t.is_contiguous(memory_format=torch.channels_last) for t in convs)
    # The interface stays the bundle's: uint8 images in, float32 logits out.
    x = torch.randint(0, 256, (3, 28, 28, 1), dtype=torch.uint8)
    assert program.module()(x).dtype == torch.float32


def test_pt2_graphs_runs_every_precision_on_the_cpu_and_aoti_cuda_says_why_not(
    half_export: Path, tmp_path: Path
) -> None:
    """reduce-overhead compiles on a CPU without graphs; the rows carry their accuracy."""
    record = tmp_path / "bench.json"
    result = zoo("bench", "lenet", "--artifacts", str(half_export), "--device", "cpu",
                 "--runtime", "pt2,pt2-graphs,aoti-cuda,aoti-cuda-graphs",
                 "--precision", "fp32,fp16",
                 "--batch", "2", "--rounds", "1", "--max-rounds", "1", "--min-time", "0.05",
                 "--min-iters", "5", "--json", str(record))  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    rows = {(r["runtime"], r["precision"]): r for r in json.loads(record.read_text())["results"]}
    for key in [("pt2", "fp16"), ("pt2-graphs", "fp32"), ("pt2-graphs", "fp16")]:
        assert rows[key]["status"] == "ok", rows[key]["reason"]
        assert rows[key]["batch_latency_ms"]["p50"] > 0
        assert rows[key]["tf32"] is None  # a CPU row: TF32 is a CUDA setting
    assert rows[("pt2-graphs", "fp16")]["accuracy"]["precision"] == "fp16"
    for runtime in ("aoti-cuda", "aoti-cuda-graphs"):
        assert rows[(runtime, "fp32")]["status"] == "skipped"
        assert rows[(runtime, "fp32")]["reason"] == f"{runtime} does not run on cpu"


def test_aoti_cuda_is_refused_in_one_line_without_a_gpu(tmp_path: Path) -> None:
    result = zoo("export", "lenet", "--format", "aoti-cuda", "--out", str(tmp_path / "e"))
    assert result.returncode != 0
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .endswith("AOTInductor compiles for CUDA on a CUDA device, and there is none here")
    )
    assert not (tmp_path / "e").exists()


class _FakeCuda:
    """What :func:`zoo.runtimes.cuda_graphed` asks of ``torch.cuda``, on the CPU: a capture
    records the calls made inside it, and a replay runs them again on the captured input."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.captures = 0
        self.replays = 0
        self.capturing: Any = None
        fake = self

        class Graph:
            def __init__(self) -> None:
                self.calls: list[Any] = []

            def replay(self) -> None:
                fake.replays += 1
                for call in self.calls:
                    call()

        class Capture:
            def __init__(self, graph: Graph, capture_error_mode: str = "global") -> None:
                # An AOTInductor package queries its last run's event while it is captured.
                assert capture_error_mode == "relaxed"
                self.graph = graph

            def __enter__(self) -> None:
                fake.captures += 1
                fake.capturing = self.graph

            def __exit__(self, *exc: object) -> None:
                fake.capturing = None

        class Stream:
            def wait_stream(self, other: object) -> None:
                pass

        monkeypatch.setattr(torch.cuda, "CUDAGraph", Graph)
        monkeypatch.setattr(torch.cuda, "graph", Capture)
        monkeypatch.setattr(torch.cuda, "Stream", Stream)
        monkeypatch.setattr(torch.cuda, "current_stream", lambda: Stream())
        monkeypatch.setattr(torch.cuda, "stream", lambda s: _Nothing())
        monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)


class _Nothing:
    def __enter__(self) -> None:
        pass

    def __exit__(self, *exc: object) -> None:
        pass


def test_cuda_graphs_capture_each_shape_once_and_replay_on_the_captured_input(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = _FakeCuda(monkeypatch)
    calls = []

    def model(x: torch.Tensor) -> torch.Tensor:
        out = x * 2
        if fake.capturing is not None:  # what a capture records: the same kernels again
            fake.capturing.calls.append(lambda: out.copy_(x * 2))
        calls.append(x)
        return out

    session = cuda_graphed(model)
    run = session.run
    one, other = torch.ones(2, 3), torch.full((2, 3), 5.0)
    first = run(one)
    assert fake.captures == 1 and fake.replays == 1
    assert len(calls) == 4  # three warm-up calls on a side stream, then the capture
    assert torch.equal(run(other), torch.full((2, 3), 10.0))  # the new input, replayed
    assert fake.captures == 1 and len(calls) == 4  # no call to the model: a replay
    assert run(other) is first  # the captured output buffer, written again
    (fetched,) = session.fetch(first)  # type: ignore[misc]
    assert torch.equal(fetched, first) and fetched is not first  # a copy that outlives it
    run(torch.ones(4, 3))  # another batch size: its own graph
    assert fake.captures == 2
    session.close()
    run(one)
    assert fake.captures == 3  # closed: the graphs were let go


def test_fp32_stays_fp32_unless_asked_and_the_job_says_which() -> None:
    before = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    try:
        strict_fp32()
        assert tf32_state() is False
        strict_fp32(tf32=True)
        assert tf32_state() is True
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before
    job = Job("eager", "cuda", 2, "/x", (1,), tf32=True)
    assert Job.from_dict(json.loads(json.dumps(job.to_dict()))).tf32 is True
    older = job.to_dict()
    del older["tf32"]  # a job written before the setting existed: fp32 is fp32
    assert Job.from_dict(older).tf32 is False


def test_every_cuda_row_s_tf32_setting_is_in_the_table() -> None:
    run = _run()
    run.rows += [_row("eager", 1, 1.5, device="cuda"), _row("pt2", 1, 1.9, device="cuda")]
    for row in run.rows:
        if row.device == "cuda":
            row.tf32 = False
    run.finish()
    out = io.StringIO()
    print_table(run, file=out)
    assert "cuda TF32: off (fp32 convolutions and matrix products are fp32)" in out.getvalue()


def test_a_pt2_row_slower_than_eager_says_why() -> None:
    """The .pt2 runtime's peer is eager: a loss is noted with what the runtime runs."""
    from zoo._pluginmanager import get_plugins

    run = _run()
    pt2 = get_plugins().runtimes.get("pt2")
    run.peers["pt2"], run.peer_notes["pt2"] = pt2.peer or "", pt2.peer_note
    run.rows += [_row("pt2", 1, 2.52)]  # eager: 2.0 ms
    run.finish()
    (loss,) = [loss for loss in peer_losses(run) if loss.runtime == "pt2"]
    assert loss.describe().startswith("m cpu batch 1: pt2 p50 2.52 ms vs eager 2.00 ms (+26%")
    assert loss.describe().endswith("; " + pt2.peer_note)
