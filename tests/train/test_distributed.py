"""Data-parallel training (torch.distributed, gloo on CPU): sharding, equivalence with one
process, exact resume, resume with another number of processes, Ctrl-C, a crashing rank,
and the launcher's bad input. The multi-process tests start `zoo train --nproc 2`."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import DistributedSampler

from tests.helpers import assert_identical, weights
from zoo.metrics import ClassificationMetrics
from zoo.plugins.vae import VAEMetrics
from zoo.train.distributed import Distributed, shard

ZOO = str(Path(sys.executable).with_name("zoo"))
#: digits with 1,420 training samples: two processes get 710 each, no padding.
EVEN = ("--data", "digits", "--val-fraction", "0.11", "--no-tensorboard", "--no-progress")
#: A hang guard, not a speed target: a job that does not end by then has hung.
HANG = 300


def zoo(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, **(env or {})}
    return subprocess.run([ZOO, *args], capture_output=True, text=True, env=environ, timeout=HANG)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def last_error(result: subprocess.CompletedProcess[str]) -> str:
    return result.stderr.strip().splitlines()[-1]


# -- the job's device -------------------------------------------------------------------------


class _Reached(Exception):
    """A fake collective was reached with everything on the job's device."""


class _FakeNccl:
    """torch.distributed's collectives as NCCL sees them: tensors must be on the group's
    device ("No backend type associated with device type cpu" otherwise), and the object
    collectives and the barrier go through the current GPU (or the ``device`` given)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, device: torch.device) -> None:
        import torch.distributed as dist

        self.device = device
        self.current = torch.device("cuda", 0)  # what torch.cuda.current_device() starts at
        self.seen: list[tuple[str, torch.device]] = []
        monkeypatch.setattr(dist, "all_reduce", self.tensor_collective("all_reduce"))
        monkeypatch.setattr(dist, "broadcast", self.tensor_collective("broadcast"))
        monkeypatch.setattr(dist, "broadcast_object_list", self.broadcast_object_list)
        monkeypatch.setattr(dist, "all_gather_object", self.all_gather_object)
        monkeypatch.setattr(dist, "barrier", self.barrier)
        monkeypatch.setattr(torch.cuda, "set_device", self.set_device)

    def set_device(self, device: int | torch.device) -> None:
        index = device if isinstance(device, int) else device.index
        self.current = torch.device("cuda", index)

    def check(self, name: str, device: torch.device) -> None:
        self.seen.append((name, device))
        if device != self.device:
            raise RuntimeError(f"No backend type associated with device type {device.type}")

    def tensor_collective(self, name: str):  # type: ignore[no-untyped-def]
        def collective(tensor: torch.Tensor, *args: object, **kwargs: object) -> None:
            self.check(name, tensor.device)
            raise _Reached(name)  # meta tensors hold no values to reduce

        return collective

    def broadcast_object_list(self, box: list[object], src: int = 0, device=None) -> None:  # type: ignore[no-untyped-def]
        self.check("broadcast_object_list", torch.device(device) if device else self.current)

    def all_gather_object(self, values: list[object], value: object) -> None:
        self.check("all_gather_object", self.current)
        values[:] = [value] * len(values)

    def barrier(self, device_ids: list[int] | None = None) -> None:
        self.check("barrier", torch.device("cuda", device_ids[0]) if device_ids else self.current)


def _job(device: torch.device) -> Distributed:
    job = Distributed(rank=0, world=2, local_rank=1, launched=True)
    job.device = device  # what start() sets: the rank's own device
    return job


@pytest.mark.parametrize(
    "call",
    [
        lambda job: job.any(True, False),
        lambda job: job.total(3.0),
        lambda job: job.broadcast_weights(torch.nn.Linear(2, 2)),
    ],
    ids=["any", "total", "broadcast_weights"],
)
def test_every_tensor_collective_runs_on_the_jobs_device(
    monkeypatch: pytest.MonkeyPatch, call
) -> None:  # type: ignore[no-untyped-def]
    """NCCL reduces only tensors of the job's GPU: a CPU tensor failed the first CUDA run
    (``total`` built one). Meta stands in for a GPU here: a device that is not the CPU."""
    fake = _FakeNccl(monkeypatch, torch.device("meta"))
    with pytest.raises(_Reached):
        call(_job(torch.device("meta")))
    assert [device for _, device in fake.seen] == [torch.device("meta")]


def test_object_collectives_and_the_barrier_go_through_the_jobs_gpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Rank 1 of a job on GPU 1: its object collectives and barrier use GPU 1, not the
    current device torch starts with (GPU 0)."""
    gpu = torch.device("cuda", 1)
    fake = _FakeNccl(monkeypatch, gpu)
    job = _job(gpu)
    assert job.from_main({"epoch": 3}) == {"epoch": 3}
    assert job.gathered(7) == [7, 7]
    job.barrier()
    assert [name for name, _ in fake.seen] == [
        "broadcast_object_list", "all_gather_object", "barrier",
    ]  # fmt: skip
    assert {device for _, device in fake.seen} == {gpu}


# -- sharding ---------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [7, 10, 11, 12])
@pytest.mark.parametrize("world", [1, 2, 3])
def test_each_share_is_what_distributed_sampler_yields(size: int, world: int) -> None:
    order = torch.randperm(size, generator=torch.Generator().manual_seed(size))
    for rank in range(world):
        sampler = DistributedSampler(range(size), world, rank, shuffle=False)
        expected = order[torch.tensor(list(sampler))]
        assert shard(order, 0, rank, world).tolist() == expected.tolist()


@pytest.mark.parametrize("world", [1, 2, 3])
def test_a_share_resumed_between_steps_continues_exactly(world: int) -> None:
    order = torch.randperm(23)
    batch = 2
    for steps in range(4):
        start = steps * batch * world
        for rank in range(world):
            whole = shard(order, 0, rank, world)
            assert shard(order, start, rank, world).tolist() == whole[steps * batch :].tolist()


@pytest.mark.parametrize(("before", "after"), [(2, 3), (3, 2), (2, 1), (1, 2)])
def test_another_world_size_covers_the_rest_of_the_epoch_in_equal_shares(
    before: int, after: int
) -> None:
    order = torch.randperm(25)
    start = 3 * 2 * before  # three steps of batch 2 on `before` processes
    shares = [shard(order, start, rank, after) for rank in range(after)]
    assert len({len(s) for s in shares}) == 1  # equal: no rank waits on another forever
    given, rest = torch.cat(shares), order[start:]
    assert set(rest.tolist()) <= set(given.tolist())  # every sample left
    # ... and a few repeated to make equal shares (DistributedSampler's padding, which a
    # resume with another world size may do twice: once for the epoch, once for the rest).
    assert 0 <= len(given) - len(rest) < 2 * after


# -- merging metrics --------------------------------------------------------------------------


def test_merged_classification_metrics_equal_one_accumulator_of_every_batch() -> None:
    torch.manual_seed(0)
    batches = [(torch.randn(5, 6), torch.randint(0, 6, (5,)), torch.rand(())) for _ in range(4)]
    whole, first, second = (ClassificationMetrics(6) for _ in range(3))
    for i, (logits, targets, loss) in enumerate(batches):
        whole.update(logits, targets, loss)
        (first if i % 2 else second).update(logits, targets, loss)
    first.merge(second)
    merged, expected = first.compute(), whole.compute()
    assert merged.pop("loss") == pytest.approx(expected.pop("loss"))
    assert merged == expected
    with pytest.raises(ValueError, match="cannot merge metrics of 3 classes"):
        first.merge(ClassificationMetrics(3))


def test_merged_vae_metrics_equal_one_accumulator_of_every_batch() -> None:
    torch.manual_seed(0)
    batches = [
        (torch.rand(3, 1, 4, 4), torch.rand(3, 1, 4, 4), torch.randn(3, 2)) for _ in range(4)
    ]
    whole, first, second = VAEMetrics(), VAEMetrics(), VAEMetrics()
    for i, (recon, x, mu) in enumerate(batches):
        for metrics in (whole, first if i % 2 else second):
            metrics.update(recon, x, mu, mu * 0.1)
    first.merge(second)
    assert first.compute() == pytest.approx(whole.compute())


# -- two processes ------------------------------------------------------------------------------


def test_two_processes_of_batch_b_train_the_weights_one_process_of_2b_does(
    tmp_path: Path,
) -> None:
    """Same seed and data order: the gradients averaged over two halves of a batch are the
    batch's gradient, up to the order of float additions (gloo's all-reduce)."""
    common = ("lenet", *EVEN, "--epochs", "2", "--augment", "none", "--scheduler", "none")
    one = ok(zoo("train", *common, "--batch-size", "64", "--out", str(tmp_path / "one")))
    two = ok(
        zoo("train", *common, "--batch-size", "32", "--nproc", "2", "--out", str(tmp_path / "two"))
    )
    assert "on 2 processes (gloo, cpu)" in two and "32 samples per process, 64 in all" in two
    assert "on cpu;" in one
    a, b = weights(tmp_path / "one"), weights(tmp_path / "two")
    assert a.keys() == b.keys()
    for name in a:
        # Adam, 46 steps: float32 sums in another order moved weights by 8e-7 at most here;
        # one process of batch 32 ends 0.07 away.
        torch.testing.assert_close(b[name], a[name], rtol=0, atol=1e-5, msg=name)
    # The metrics are over every sample, not one process's share.
    metrics = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert metrics["test"]["samples"] == 179
    assert metrics["history"][0]["val"]["samples"] == 198
    assert metrics["history"][0]["train"]["samples"] == 1420


def test_a_distributed_run_resumes_exactly_and_with_another_number_of_processes(
    tmp_path: Path,
) -> None:
    """Augmentation on: each rank's RNG state is in the checkpoint and comes back."""
    common = ("lenet", *EVEN, "--batch-size", "32", "--nproc", "2")
    ok(zoo("train", *common, "--epochs", "2", "--out", str(tmp_path / "straight")))
    ok(zoo("train", *common, "--epochs", "1", "--out", str(tmp_path / "split")))
    said = ok(
        zoo("train", *common, "--epochs", "2", "--out", str(tmp_path / "split"), "--resume", "auto")
    )
    assert "resuming lenet" in said and "process(es)" not in said
    assert_identical(weights(tmp_path / "split"), weights(tmp_path / "straight"))

    # The one-epoch run again, continued by one process: said, and trained to the end.
    ok(zoo("train", *common, "--epochs", "1", "--out", str(tmp_path / "fewer")))
    fewer = zoo(
        "train", "lenet", *EVEN, "--batch-size", "32", "--epochs", "2",
        "--out", str(tmp_path / "fewer"), "--resume", "auto",
    )  # fmt: skip
    said = ok(fewer)
    assert "trained with 2 process(es) and resumes with 1" in said
    assert "each step now trains 32 samples" in said
    history = json.loads((tmp_path / "fewer" / "metrics.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2]
    assert history[1]["train"]["samples"] == 1420


def test_torchrun_with_one_process_trains_through_ddp_the_weights_of_a_plain_run(
    tmp_path: Path,
) -> None:
    """A job of one process (a one-GPU smoke run of the engine) joins a process group and
    trains through DistributedDataParallel; averaging over one process changes nothing."""
    common = ("lenet", *EVEN, "--batch-size", "32", "--epochs", "2")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc-per-node", "1", "-m", "zoo", "train"]  # fmt: skip
    said = subprocess.run(
        [*torchrun, *common, "--out", str(tmp_path / "job")],
        capture_output=True, text=True, timeout=HANG,
    )  # fmt: skip
    assert "on 1 process (gloo, cpu)" in ok(said)
    ok(zoo("train", *common, "--out", str(tmp_path / "plain")))
    meta = json.loads((tmp_path / "job" / "last" / "meta.json").read_text())
    assert meta["distributed"] == {"world_size": 1, "backend": "gloo"}
    assert_identical(weights(tmp_path / "job"), weights(tmp_path / "plain"))


def test_ctrl_c_stops_every_process_at_one_step_and_another_world_size_resumes_there(
    tmp_path: Path,
) -> None:
    out = tmp_path / "run"
    job = subprocess.Popen(
        [ZOO, "train", "lenet", *EVEN, "--epochs", "40", "--batch-size", "8", "--nproc", "2",
         "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert job.stdout is not None
    for line in job.stdout:  # interrupt during the second epoch: it starts after this line
        if line.startswith("epoch 1/40"):
            # At once: an epoch of 1,420 samples takes about 0.5 s on a fast CPU, and every
            # process trains at least the step it is in before it stops (position > 0).
            job.send_signal(signal.SIGINT)
            break
    stdout, stderr = job.communicate(timeout=HANG)
    assert job.returncode == 130, stderr[-2000:]
    assert "interrupted at epoch 2" in stdout, stdout
    meta = json.loads((out / "last" / "meta.json").read_text())
    position = meta["progress"]["position"]
    assert meta["distributed"]["world_size"] == 2
    assert position > 0 and position % 16 == 0  # between two steps of 2 x 8 samples
    state = torch.load(out / "last" / "state.pt", weights_only=True)
    assert len(state["rng_ranks"]) == 2

    said = ok(
        zoo("train", "lenet", *EVEN, "--epochs", "2", "--batch-size", "8", "--out", str(out),
            "--resume", "auto")
    )  # fmt: skip
    assert f"continues at sample {position} of epoch 2" in said
    history = json.loads((out / "metrics.json").read_text())["history"]
    # The second epoch's record counts what this process trained after the stop.
    assert history[1]["train"]["samples"] == 1420 - position


CRASHY = """
    import os
    import time
    import zoo
    from torch import nn

    class Crashy(nn.Module):
        def __init__(self, num_classes=10):
            super().__init__()
            self.fc = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, num_classes))
            self.spare = nn.Linear(2, 2)  # trained only with CRASHY=unused: never used
            self.spare.requires_grad_(os.environ.get("CRASHY") == "unused")
            self.calls = 0

        def forward(self, x):
            if self.training:
                self.calls += 1
                if os.environ.get("RANK") == "1" and self.calls == 30:
                    if os.environ.get("CRASHY") == "hang":
                        time.sleep(3600)
                    if os.environ.get("CRASHY") == "nan":
                        return self.fc(x) * float("nan")
                    raise RuntimeError("boom on the 30th training step")
            return self.fc(x)

    @zoo.hookimpl
    def zoo_register_models(registry):
        registry.register(zoo.ModelSpec(
            name="crashy", builder=Crashy, task="classification",
            input=zoo.InputSpec.image((1, 28, 28), mean=(0.5,), std=(0.5,)),
            outputs=(zoo.OutputSpec("logits", (10,)),), num_classes=10,
            summary="fails (or hangs) on rank 1 at its 30th training step"))
"""


@pytest.fixture
def crashy(make_dist) -> Path:  # type: ignore[no-untyped-def]
    """A site where plugin model `crashy` raises (or, with CRASHY=hang, sleeps) on rank 1."""
    return make_dist(  # type: ignore[no-any-return]
        "zoo-test-crashy", "1.0", {"zoo_test_crashy": CRASHY}, {"crashy": "zoo_test_crashy"}
    )


def test_a_rank_that_crashes_stops_the_job_with_its_error(tmp_path: Path, crashy: Path) -> None:
    out, temp = tmp_path / "run", tmp_path / "tmp"
    temp.mkdir()
    # 23 steps an epoch: the crash comes in epoch 2, after epoch 1's checkpoint.
    result = zoo(
        "train", "crashy", *EVEN, "--epochs", "3", "--batch-size", "32", "--nproc", "2",
        "--out", str(out), env={"PYTHONPATH": str(crashy), "TMPDIR": str(temp)},
    )  # fmt: skip
    assert result.returncode == 1
    assert last_error(result) == (
        "zoo: error: rank 1 failed: RuntimeError: boom on the 30th training step"
    )
    assert json.loads((out / "last" / "meta.json").read_text())["epoch"] == 1  # kept
    # The launcher's error files are gone (torch's own caches, torchinductor_*, may stay).
    left = [p.name for p in temp.iterdir() if p.name.startswith(("zoo-", "torchelastic"))]
    assert left == []


def test_a_loss_that_is_not_finite_on_one_rank_stops_every_rank(
    tmp_path: Path, crashy: Path
) -> None:
    out = tmp_path / "run"
    result = zoo(
        "train", "crashy", *EVEN, "--epochs", "3", "--batch-size", "32", "--nproc", "2",
        "--out", str(out), env={"PYTHONPATH": str(crashy), "CRASHY": "nan"},
    )  # fmt: skip
    assert result.returncode == 1
    assert re.fullmatch(
        r"zoo: error: rank 1 failed: the loss became nan at epoch 2, step \d+; stopped\. The "
        r"last good checkpoint is .*last\. Lower --lr or set --grad-clip",
        last_error(result),
    ), last_error(result)
    assert json.loads((out / "last" / "meta.json").read_text())["epoch"] == 1


def test_a_rank_that_stops_answering_stops_the_job_after_the_timeout(
    tmp_path: Path, crashy: Path
) -> None:
    result = zoo(
        "train", "crashy", *EVEN, "--epochs", "3", "--batch-size", "32", "--nproc", "2",
        "--out", str(tmp_path / "run"),
        env={"PYTHONPATH": str(crashy), "CRASHY": "hang", "ZOO_DIST_TIMEOUT": "5"},
    )  # fmt: skip
    assert result.returncode == 1
    assert last_error(result) == (
        "zoo: error: rank 0 failed: another process did not answer for 5 s (ZOO_DIST_TIMEOUT): "
        "it hangs, or one of its steps takes longer than that"
    )


def test_a_model_with_unused_trainable_parameters_is_refused_in_one_line(
    tmp_path: Path, crashy: Path
) -> None:
    result = zoo(
        "train", "crashy", *EVEN, "--epochs", "1", "--nproc", "2", "--out", str(tmp_path / "r"),
        env={"PYTHONPATH": str(crashy), "CRASHY": "unused"},
    )  # fmt: skip
    assert result.returncode == 2
    # Both processes find it at once: either may be the one named.
    assert re.fullmatch(
        r"zoo: error: rank [01] failed: model 'crashy' has trainable parameters its loss does "
        r"not use, which DistributedDataParallel cannot average: freeze them \(--freeze\) or "
        r"train in one process",
        last_error(result),
    ), last_error(result)


def test_a_set_up_error_on_rank_0_is_the_jobs_one_line(tmp_path: Path) -> None:
    out = tmp_path / "run"
    ok(zoo("train", "lenet", *EVEN, "--epochs", "1", "--out", str(out)))
    before = (out / "last" / "model.safetensors").read_bytes()
    result = zoo("train", "lenet", *EVEN, "--epochs", "1", "--nproc", "2", "--out", str(out))
    assert result.returncode == 2
    assert last_error(result).startswith("zoo: error: rank 0 failed: ")
    assert "already holds a checkpoint: pass --resume auto" in last_error(result)
    assert (out / "last" / "model.safetensors").read_bytes() == before


# -- bad input ----------------------------------------------------------------------------------


def test_more_processes_than_cores_is_refused_in_one_line(tmp_path: Path) -> None:
    cores = len(os.sched_getaffinity(0))
    result = zoo(
        "train", "lenet", "--nproc", str(cores + 1), "--device", "cpu", "--out", str(tmp_path / "r")
    )
    assert result.returncode == 2
    assert last_error(result) == (
        f"zoo: error: --nproc {cores + 1} is more than the {cores} CPU cores this process may "
        f"use: use --nproc {cores} or fewer (each process needs a core of its own)"
    )
    assert not (tmp_path / "r").exists()
    zero = zoo("train", "lenet", "--nproc", "0")
    assert (
        zero.returncode == 2
        and "--nproc" in last_error(zero)
        and len(zero.stderr.splitlines()) == 1
    )


def test_a_port_in_use_is_refused_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = zoo(
            "train", "lenet", "--nproc", "2", "--port", str(port), "--out", str(tmp_path / "r")
        )
    assert result.returncode == 2
    assert last_error(result) == (
        f"zoo: error: --port {port} is already in use on this machine: choose another, or "
        "leave --port out to use a free one"
    )
    alone = zoo("train", "lenet", "--port", "29555", "--out", str(tmp_path / "r"))
    assert alone.returncode == 2
    assert "--port is the rendezvous port of --nproc N (N >= 2): give both" in last_error(alone)
    assert not (tmp_path / "r").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="nccl on CPU: a machine without CUDA")
def test_nccl_without_cuda_is_refused_in_one_line(tmp_path: Path) -> None:
    result = zoo(
        "train", "lenet", *EVEN, "--nproc", "2", "--backend", "nccl", "--out", str(tmp_path / "r")
    )
    assert result.returncode == 2
    assert last_error(result) == (
        "zoo: error: --backend nccl needs CUDA devices; on CPU use --backend gloo"
    )
    assert not (tmp_path / "r").exists()


def test_nproc_that_disagrees_with_torchrun_is_refused(tmp_path: Path) -> None:
    result = zoo(
        "train", "lenet", "--nproc", "2", "--out", str(tmp_path / "r"),
        env={"LOCAL_WORLD_SIZE": "4"},
    )  # fmt: skip
    assert result.returncode == 2
    assert "leave --nproc out and set torchrun's --nproc-per-node" in last_error(result)
