"""The GPU checks of zoo, prepared to fit one device window (about 7 minutes, install included).

    python benchmarks/gpu_check.py --out DIR [--device cuda|cpu] [--quick] [--budget 420]
        [--started EPOCH_SECONDS] [--only NAME,...] [--work DIR]

GPU time comes in windows of about 15 minutes in all, the machine's start and the install
included; the first GPU run spent 4 minutes in one scenario check and kept nothing. So the
checks run in priority order, each only if its estimated cost (``ESTIMATES_S``, seconds on the
H200) fits in the time left of ``--budget`` seconds, counted from ``--started`` (when the
wrapper began: ``benchmarks/gpu_run.sh`` passes it) or from this script's start:

1. ``install``: ``zoo --version``, ``zoo list``, torch, CUDA and the GPU, the package versions
   that matter, the runtimes and formats registered; a failure here stops the run.
2. ``ddp-nccl`` (``ddp-gloo`` on the CPU): ``zoo train --nproc 1`` and ``torchrun
   --nproc-per-node 1 -m zoo train``, each run's ``last/meta.json`` "distributed" record read
   and its weights compared with a plain run's.
3. ``amp-fp32``, ``amp-bf16``, ``amp-fp16`` (CUDA only): one-epoch LeNet runs, test accuracy
   and samples/s.
4. ``peer-lenet``: ``benchmarks/gpu_peer.py`` (what a user writes by hand) for LeNet under a
   budget share of its own; ``single-stream-lenet``: ``zoo bench`` of every GPU runtime
   (eager, TorchScript, .pt2, torch.compile, pt2-graphs, aoti-cuda, aoti-cuda-graphs) on an
   export of the amp-fp32 run.
5. ``precision-lenet``: .pt2 and aoti-cuda in bf16 and fp16, with the accuracy each scored,
   the recommended row per batch and each CUDA row's TF32 setting.
6. ``precision-resnet18``, ``precision-vgg_head`` (CUDA only): the model's peer, then one
   epoch on mnist5k at 224x224, exported as .pt2 (fp32, fp16) and aoti-cuda-fp16 (bf16 too
   if time allows), timed in eager, pt2, pt2-graphs, aoti-cuda and aoti-cuda-graphs; then
   ``benchmarks/targets.py BENCH.json --gpu-peer PEER.json``, its output kept in the record.
7. ``scenarios-lenet`` (and ``scenarios-resnet18`` if time is left): offline over the splits
   1x2 and 2x1, eager and the fastest fp32 runtime of step 4 (or 6).

Then ``cuda-to-cpu``, which held on the first GPU run: the bf16 run resumed and exported
(ONNX) with CUDA hidden. The estimates add up to more than one 420 s window: what the first
window skips runs in a second one with ``--only`` (steps 6 and 7 need no earlier check's
files; ``--only`` with ``amp-fp32`` first for the LeNet ones).

A check that does not fit is recorded as ``skipped`` ("would not fit: needs ~X s, Y s left"),
and cheaper ones after it still run; every command's timeout is the smaller of its hang guard
and the time left, so nothing runs past the budget (a check killed so is ``failed``, "timed
out"). A check whose input is missing (an earlier check failed, or ``--only`` left it out) is
``skipped`` with that reason.

After every check the script rewrites ``DIR/gpu-check.json`` (schema ``zoo-gpu-check/2``: the
environment, the budget, every check's status, estimate, seconds and figures, ``complete``
false until the end) and ``DIR/gpu-check.md`` atomically, so a killed run keeps what it
measured; the ``zoo bench`` and peer records stay in DIR beside them. Runs and exports go to
``--work`` (default: a temporary folder, removed at the end). Exit status: 0 when no check
failed (skipped is not failed), 1 when one did, 2 with ``--device cuda`` and no CUDA device.

Try it on the CPU: ``python benchmarks/gpu_check.py --device cpu --quick --out /tmp/gc``
(fp16 and the 224x224 models are skipped there; aoti-cuda rows say it is unavailable).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any, NamedTuple

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = "zoo-gpu-check/2"
DEFAULT_BUDGET_S = 420.0

#: Estimated seconds of each check on the H200, from the first GPU run: torch.compile cold
#: starts of 7-17 s each, resnet18 training 1 epoch at 224x224 about 15 s, torch.compile
#: reduce-overhead (CUDA graphs) of resnet18 about 20-40 s per batch size, AOTInductor's CUDA
#: compile of resnet18 about 40-90 s per package; every zoo process pays 3-5 s of imports. A
#: check starts only when its estimate fits in the time left. Estimates, not measurements.
ESTIMATES_S: dict[str, float] = {
    "install": 10,
    "ddp-nccl": 40,  # three 1-epoch LeNet runs (12 s each on the H200), one through torchrun
    "ddp-gloo": 40,
    "amp-fp32": 15,  # the ddp check's plain run when it ran (then seconds)
    "amp-bf16": 15,
    "amp-fp16": 15,
    "peer-lenet": 30,  # 3 variants x 2 batches, two small compiles each
    "single-stream-lenet": 90,  # export (aoti-cuda ~20 s), 6 runtimes x 2 batches
    "precision-lenet": 90,  # 4 exports (2 aoti-cuda), 3 runtimes x 3 precisions x 2 batches
    # The peer (~45 s: 4 compiles), one epoch at 224x224 (~20 s), pt2 + pt2-fp16 + an fp16
    # AOTInductor package (~50 s), eager, pt2, pt2-graphs and aoti-cuda at 2 batches (~55 s).
    "precision-resnet18": 170,
    "precision-vgg_head": 180,
    "scenarios-lenet": 40,
    "scenarios-resnet18": 60,
    "cuda-to-cpu": 25,  # one more epoch on the CPU, an ONNX export with its parity gate
}
#: What bf16 adds to a 224x224 precision check (two more exports, their rows).
BF16_EXTRA_S = 80.0
#: The peer's own --budget share (per model) and the time its last variant may take past it.
PEER_BUDGET_S = {"lenet": 25.0, "resnet18": 45.0, "vgg_head": 50.0}
PEER_GRACE_S = 30.0
QUICK_PEER_BUDGET_S = 30.0
#: Hang guards (not speed targets); each command's timeout is also cut to the time left.
HANG_GUARD_S = 300.0
EXPORT_GUARD_S = 600.0
#: Kept back from the budget: a timed-out command's kill grace and the last writes.
RESERVE_S = 5.0
KILL_GRACE_S = 3.0
TAIL_CHARS = 3000

CUDA_ONLY = {
    "amp-fp16": "needs CUDA (fp16 autocast trains through a GradScaler on a GPU)",
    "precision-resnet18": "needs CUDA (224x224 models are minutes an epoch on a CPU)",
    "precision-vgg_head": "needs CUDA (224x224 models are minutes an epoch on a CPU)",
    "scenarios-resnet18": "needs CUDA (its export comes from precision-resnet18)",
}
NOT_QUICK = {"precision-resnet18", "precision-vgg_head", "scenarios-resnet18"}
#: Packages the checks cannot run without (their wheels are carried: gpu_wheels.sh).
NEEDED = ("mlxtend", "jsonschema")
VERSIONS = (
    "zoo", "torch", "torchvision", "triton", "numpy", "safetensors", "pluggy", "click",
    "onnx", "onnxscript", "onnxruntime", "onnxruntime-gpu", "torchao", "mlxtend", "faker",
    "jsonschema", "jsonschema-specifications", "referencing", "rpds-py", "attrs",
    "scikit-learn", "psutil", "pyyaml", "tqdm", "tensorboard", "matplotlib",
)  # fmt: skip
SINGLE_STREAM_RUNTIMES = (
    "eager", "torchscript", "pt2", "compile", "pt2-graphs", "aoti-cuda", "aoti-cuda-graphs",
)  # fmt: skip
PRECISION_RUNTIMES = ("eager", "pt2", "pt2-graphs", "aoti-cuda", "aoti-cuda-graphs")
PROBE_MARK = "GPU_CHECK_PROBE "
#: Runs in a zoo process of its own: what the install looks like from there.
PROBE = """
import importlib.metadata as md, json, sys
import psutil, torch
from zoo._pluginmanager import get_plugins
from zoo.bench.processes import environment

device, names = sys.argv[1], sys.argv[2].split(",")
versions = {}
for name in names:
    try:
        versions[name] = md.version(name)
    except md.PackageNotFoundError:
        versions[name] = None
plugins = get_plugins()
info = {
    "torch": torch.__version__,
    "torch_cuda": torch.version.cuda,
    "cuda_available": torch.cuda.is_available(),
    "versions": versions,
    "runtimes": {r.name: list(r.devices) for r in plugins.runtimes},
    "formats": {f.name: f.unavailable() for f in plugins.formats},
}
if device == "cuda" and torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    info["gpu"] = {
        "name": p.name, "capability": f"{p.major}.{p.minor}", "count": torch.cuda.device_count(),
        "memory_gb": round(p.total_memory / 2**30, 1), "bf16": torch.cuda.is_bf16_supported(),
        "cudnn": torch.backends.cudnn.version(), "nccl": str(torch.cuda.nccl.version()),
        "sum_of_ones": float(torch.ones(1024, device="cuda").sum().item()),
    }
info["environment"] = environment(psutil.cpu_count(logical=False) or 1, (device,))
print(__MARK__ + json.dumps(info, default=str), flush=True)
""".replace("__MARK__", repr(PROBE_MARK))


def check_names(device: str) -> list[str]:
    """Every check, in priority order."""
    ddp = "ddp-nccl" if device == "cuda" else "ddp-gloo"
    return [
        "install", ddp, "amp-fp32", "amp-bf16", "amp-fp16", "peer-lenet",
        "single-stream-lenet", "precision-lenet", "precision-resnet18", "precision-vgg_head",
        "scenarios-lenet", "scenarios-resnet18", "cuda-to-cpu",
    ]  # fmt: skip


def fit(estimate_s: float, left_s: float) -> str | None:
    """None when a check of that estimate may start with ``left_s`` seconds left, else why it
    is skipped: starting it could only end in a kill at the budget."""
    if estimate_s <= left_s:
        return None
    return f"would not fit: needs ~{estimate_s:.0f} s, {int(max(left_s, 0.0))} s left"


class CheckFailed(Exception):
    def __init__(self, reason: str, tail: str = "", figures: dict[str, Any] | None = None):
        super().__init__(reason)
        self.reason = reason
        self.tail = tail
        self.figures = figures or {}


class Skip(Exception):
    """A check's input is missing: recorded as skipped, with why."""


class Interrupted(BaseException):
    """SIGTERM (the device run's own limit): the record says which check it cut short."""


class Ran(NamedTuple):
    code: int
    output: str


class Checks:
    def __init__(
        self,
        out: Path,
        work: Path,
        device: str,
        quick: bool,
        budget_s: float,
        started: float,
        only: set[str] | None = None,
    ) -> None:
        self.out, self.work, self.device, self.quick = out, work, device, quick
        self.budget_s, self.started = budget_s, started
        self.names = [n for n in check_names(device) if only is None or n in only]
        self.results: list[dict[str, Any]] = []
        self.running: dict[str, Any] | None = None
        self.environment: dict[str, Any] = _light_environment()
        self.created = _now()
        self.state_file = work / "state.json"
        #: What later checks take from earlier ones (exports, runtimes), kept with the runs so
        #: that ``--work`` and ``--only`` can rerun a later check on its own.
        self.state: dict[str, Any] = (
            json.loads(self.state_file.read_text()) if self.state_file.exists() else {}
        )

    # -- time ---------------------------------------------------------------------------------

    def left(self) -> float:
        return self.started + self.budget_s - RESERVE_S - time.time()

    # -- running commands ---------------------------------------------------------------------

    def zoo(
        self, *args: str, guard: float = HANG_GUARD_S, env: dict[str, str] | None = None
    ) -> Ran:
        return self.command([sys.executable, "-m", "zoo", *args], guard=guard, env=env)

    def command(
        self,
        argv: list[str],
        guard: float = HANG_GUARD_S,
        env: dict[str, str] | None = None,
        shown: str | None = None,
    ) -> Ran:
        """Run ``argv`` in a process group of its own, its output echoed as it comes (the log
        keeps it), killed with its children at min(guard, time left)."""
        timeout = min(guard, self.left())
        shown = shown or shlex.join(str(a) for a in argv)
        if timeout < 1:
            raise CheckFailed("timed out", f"no time left to start: {shown}")
        print(f"$ {shown}  (timeout {timeout:.0f} s)", flush=True)
        environ = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            env=environ,
            cwd=ROOT,
            start_new_session=True,
        )
        lines: list[str] = []
        assert proc.stdout is not None
        reader = threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True)
        reader.start()
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill(proc)
            reader.join(KILL_GRACE_S)
            tail = "".join(lines)[-TAIL_CHARS:]
            raise CheckFailed(
                "timed out", f"{shown}: killed after {timeout:.0f} s\n{tail}"
            ) from None
        except BaseException:  # SIGTERM or Ctrl-C: the command goes with this script
            _kill(proc)
            raise
        reader.join(KILL_GRACE_S)
        return Ran(code, "".join(lines))

    def ok(self, ran: Ran, what: str) -> str:
        if ran.code != 0:
            raise CheckFailed(f"{what}: exit {ran.code}", ran.output[-TAIL_CHARS:])
        return ran.output

    # -- the run ------------------------------------------------------------------------------

    def check(self, name: str, run: Callable[[], dict[str, Any]]) -> None:
        estimate = ESTIMATES_S[name]
        record: dict[str, Any] = {"check": name, "status": "skipped", "estimate_s": estimate}
        if any(r["check"] == "install" and r["status"] == "failed" for r in self.results):
            record["reason"] = "the install check failed"
        elif self.device != "cuda" and name in CUDA_ONLY:
            record["reason"] = CUDA_ONLY[name]
        elif self.quick and name in NOT_QUICK:
            record["reason"] = "--quick: lenet only"
        elif (why := fit(estimate, self.left())) is not None:
            record["reason"] = why
        else:
            self.running = {"check": name, "since": _now()}
            self.write(complete=False)
            print(f"== {name} (~{estimate:.0f} s, {self.left():.0f} s left)", flush=True)
            started = time.perf_counter()
            try:
                record.update(status="ok", **run())
            except Skip as exc:
                record.update(status="skipped", reason=str(exc))
            except CheckFailed as exc:
                record.update(exc.figures)
                record.update(status="failed", reason=exc.reason, tail=exc.tail)
            except Exception as exc:  # the script's own bug: recorded, the next check runs
                record.update(status="failed", reason=f"{type(exc).__name__}: {exc}")
            record["seconds"] = round(time.perf_counter() - started, 1)
            self.running = None
        if record["status"] == "skipped":
            print(f"== {name}: skipped: {record['reason']}", flush=True)
        else:
            print(f"== {name}: {record['status']}: {json.dumps(record)[:2000]}", flush=True)
        self.results.append(record)
        self.save_state()
        self.write(complete=False)

    def run_all(self) -> int:
        self.out.mkdir(parents=True, exist_ok=True)
        self.work.mkdir(parents=True, exist_ok=True)
        steps: dict[str, Callable[[], dict[str, Any]]] = {
            "install": self.install,
            "ddp-nccl": self.ddp,
            "ddp-gloo": self.ddp,
            "amp-fp32": lambda: self.amp("fp32"),
            "amp-bf16": lambda: self.amp("bf16"),
            "amp-fp16": lambda: self.amp("fp16"),
            "cuda-to-cpu": self.cuda_to_cpu,
            "peer-lenet": lambda: self.peer("lenet"),
            "single-stream-lenet": self.single_stream,
            "precision-lenet": self.precision_lenet,
            "precision-resnet18": lambda: self.precision_224("resnet18"),
            "precision-vgg_head": lambda: self.precision_224("vgg_head"),
            "scenarios-lenet": lambda: self.scenarios("lenet"),
            "scenarios-resnet18": lambda: self.scenarios("resnet18"),
        }
        previous = signal.signal(signal.SIGTERM, _interrupt)
        try:
            for name in self.names:
                self.check(name, steps[name])
        except (Interrupted, KeyboardInterrupt):
            if self.running is not None:
                name = self.running["check"]
                self.results.append(
                    {
                        "check": name,
                        "status": "failed",
                        "estimate_s": ESTIMATES_S[name],
                        "reason": "interrupted",
                    }
                )
            self.running = None
            self.write(complete=False)
            print(f"gpu_check: interrupted; wrote {self.out / 'gpu-check.json'}", flush=True)
            return 130
        finally:
            signal.signal(signal.SIGTERM, previous)
        self.write(complete=True)
        failed = [r["check"] for r in self.results if r["status"] == "failed"]
        print(
            f"gpu_check: {len(self.results)} checks, {len(failed)} failed"
            + (f" ({', '.join(failed)})" if failed else "")
            + f", {time.time() - self.started:.0f} s of {self.budget_s:.0f}; "
            f"wrote {self.out / 'gpu-check.json'} and gpu-check.md",
            flush=True,
        )
        return 1 if failed else 0

    # -- records ------------------------------------------------------------------------------

    def summary(self, complete: bool) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "created": self.created,
            "updated": _now(),
            "device": self.device,
            "quick": self.quick,
            "budget_s": self.budget_s,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.started)),
            "elapsed_s": round(time.time() - self.started, 1),
            "estimates_s": {name: ESTIMATES_S[name] for name in self.names},
            "environment": self.environment,
            "checks": self.results,
            "running": self.running,
            "failed": [r["check"] for r in self.results if r["status"] == "failed"],
            "skipped": [r["check"] for r in self.results if r["status"] == "skipped"],
            "complete": complete,
        }

    def write(self, complete: bool) -> None:
        """Both files, each through a temporary file and os.replace: a kill at any moment
        leaves the previous complete version, never half a file."""
        summary = self.summary(complete)
        _write_atomic(self.out / "gpu-check.json", json.dumps(summary, indent=2) + "\n")
        _write_atomic(self.out / "gpu-check.md", _table(summary))

    def save_state(self) -> None:
        _write_atomic(self.state_file, json.dumps(self.state, indent=2) + "\n")

    # -- 1. install ---------------------------------------------------------------------------

    def install(self) -> dict[str, Any]:
        version = self.ok(self.zoo("--version", guard=60), "zoo --version").strip()
        said = self.ok(
            self.command(
                [sys.executable, "-c", PROBE, self.device, ",".join(VERSIONS)],
                guard=120,
                shown=f"{sys.executable} -c PROBE {self.device}",
            ),
            "the install probe",
        )
        lines = [line for line in said.splitlines() if line.startswith(PROBE_MARK)]
        if not lines:
            raise CheckFailed("the install probe printed no record", said[-TAIL_CHARS:])
        info = json.loads(lines[-1][len(PROBE_MARK) :])
        self.environment = info.pop("environment")
        self.state["runtimes"] = info["runtimes"]
        self.state["formats"] = info["formats"]
        models = self.ok(self.zoo("list", guard=60), "zoo list")
        versions = info["versions"]
        figures = {  # the short ones first: the Markdown table shows 400 characters
            "zoo": version.split()[-1],
            "torch": info["torch"],
            "cuda_available": info["cuda_available"],
            "gpu": info.get("gpu"),
            "missing": sorted(name for name, v in versions.items() if v is None),
            "zoo_list_lines": len(models.strip().splitlines()),
            **info,
        }
        if self.device == "cuda" and not info["cuda_available"]:
            raise CheckFailed("torch sees no CUDA device in a zoo process", said[-TAIL_CHARS:])
        lacking = [name for name in NEEDED if versions.get(name) is None]
        if lacking:
            raise CheckFailed(
                f"missing {', '.join(lacking)}: carry its wheel (benchmarks/gpu_wheels.sh)",
                figures=figures,
            )
        return figures

    # -- 2. data-parallel ---------------------------------------------------------------------

    def ddp(self) -> dict[str, Any]:
        """A job of one process through each launcher: it joins a process group (NCCL on
        CUDA) and trains through DistributedDataParallel; its weights should be the plain
        run's."""
        expected = "nccl" if self.device == "cuda" else "gloo"
        plain = self.lenet_run("amp-fp32" if self.epochs() == 1 else "plain-1", 1, "fp32")
        train = ["train", "lenet", *self.train_options(1, "fp32")]
        launchers = {
            "zoo train --nproc 1": (
                [sys.executable, "-m", "zoo", *train, "--nproc", "1"],
                self.work / "ddp-nproc",
            ),
            "torchrun --nproc-per-node 1": (
                [sys.executable, "-m", "torch.distributed.run", "--standalone",
                 "--nproc-per-node", "1", "-m", "zoo", *train],
                self.work / "ddp-torchrun",
            ),
        }  # fmt: skip
        figures: dict[str, Any] = {"backend": expected, "launchers": {}}
        wrong: list[str] = []
        for launcher, (argv, job) in launchers.items():
            shutil.rmtree(job, ignore_errors=True)
            started = time.perf_counter()
            said = self.ok(self.command([*argv, "--out", str(job)]), launcher)
            meta = json.loads((job / "last" / "meta.json").read_text())["distributed"]
            figures["launchers"][launcher] = {
                "distributed": meta,
                "max_weight_difference_vs_plain": _max_difference(job, plain),
                "test_accuracy": json.loads((job / "metrics.json").read_text())["test"]["accuracy"],
                "seconds": round(time.perf_counter() - started, 1),
            }
            # torchrun always makes a one-process job; zoo train --nproc 1 may train plainly.
            allowed = [{"world_size": 1, "backend": expected}]
            if launcher.startswith("zoo train"):
                allowed.append({"world_size": 1, "backend": None})
            if meta not in allowed:
                wrong.append(f"{launcher}: meta.json says {meta}")
                figures["tail"] = said[-TAIL_CHARS:]
        if wrong:
            raise CheckFailed(
                f"not one {expected} process: {'; '.join(wrong)}", figures.pop("tail"), figures
            )
        return figures

    # -- 3. precision of training -------------------------------------------------------------

    def epochs(self) -> int:
        """One epoch: what the checks read (an accuracy, a speed, a checkpoint to export) is
        there after one, and the window is short."""
        return 1

    def train_options(self, epochs: int, precision: str) -> list[str]:
        return [
            "--data", "mnist5k", "--epochs", str(epochs), "--precision", precision,
            "--device", self.device, "--no-tensorboard", "--no-progress",
        ]  # fmt: skip

    def lenet_run(self, name: str, epochs: int, precision: str) -> Path:
        """A LeNet run in the work folder, trained once (a finished one is reused)."""
        run = self.work / name
        if (run / "metrics.json").exists():
            return run
        shutil.rmtree(run, ignore_errors=True)
        self.ok(
            self.zoo("train", "lenet", *self.train_options(epochs, precision), "--out", str(run)),
            f"zoo train lenet ({name})",
        )
        return run

    def amp(self, precision: str) -> dict[str, Any]:
        run = self.lenet_run(f"amp-{precision}", self.epochs(), precision)
        metrics = json.loads((run / "metrics.json").read_text())
        history = metrics["history"]
        return {
            "epochs": len(history),
            "test_accuracy": metrics["test"]["accuracy"],
            "samples_per_s": [h["samples_per_second"] for h in history],
            "final_train_loss": history[-1]["train"]["loss"],
        }

    def cuda_to_cpu(self) -> dict[str, Any]:
        source = self.need(self.work / "amp-bf16" / "metrics.json", "the amp-bf16 run").parent
        hidden = {"CUDA_VISIBLE_DEVICES": ""}
        resumed = self.work / "resumed-on-cpu"
        shutil.rmtree(resumed, ignore_errors=True)
        shutil.copytree(source, resumed, symlinks=True)
        self.ok(
            self.zoo(
                "train", "lenet", "--data", "mnist5k", "--epochs", str(self.epochs() + 1),
                "--device", "cpu", "--no-tensorboard", "--no-progress", "--out", str(resumed),
                "--resume", "auto", env=hidden,
            ),
            "zoo train --resume on the CPU",
        )  # fmt: skip
        metrics = json.loads((resumed / "metrics.json").read_text())
        export = self.work / "export-onnx"
        shutil.rmtree(export, ignore_errors=True)
        self.ok(
            self.zoo(
                "export", "lenet", "--checkpoint", str(source), "--format", "onnx",
                "--out", str(export), env=hidden, guard=EXPORT_GUARD_S,
            ),
            "zoo export of the CUDA run on the CPU",
        )  # fmt: skip
        manifest = json.loads((export / "manifest.json").read_text())
        return {
            "resumed_epochs": [h["epoch"] for h in metrics["history"]],
            "resumed_test_accuracy": metrics["test"]["accuracy"],
            "export_formats": sorted(manifest.get("formats", {})),
        }

    # -- 4. single-stream and the peer --------------------------------------------------------

    def peer(self, model: str) -> dict[str, Any]:
        """The hand-written peer of ``model`` at the check's batch sizes, under a budget
        share of its own so that it cannot eat the window; in the same run as zoo's rows of
        that model (resnet18's and vgg_head's run inside their precision checks)."""
        script = self.need(ROOT / "benchmarks" / "gpu_peer.py", "benchmarks/gpu_peer.py", "missing")
        record = self.out / f"peer-{self.device}-{model}.json"
        share = min(
            QUICK_PEER_BUDGET_S if self.quick else PEER_BUDGET_S[model],
            self.left() - PEER_GRACE_S,
        )
        argv = [
            sys.executable, str(script), "--out", str(record), "--device", self.device,
            "--models", model, "--batch", ",".join(map(str, self.batches())),
            "--budget", f"{max(share, 1.0):.0f}", *(["--quick"] if self.quick else []),
        ]  # fmt: skip
        try:
            self.ok(self.command(argv, guard=max(share, 1.0) + PEER_GRACE_S), "gpu_peer.py")
        except CheckFailed as exc:
            if record.exists():
                exc.figures = _peer_figures(record)
            raise
        self.state[f"peer-{model}"] = str(record)
        return {"budget_share_s": round(share), **_peer_figures(record)}

    def single_stream(self) -> dict[str, Any]:
        run = self.need(self.work / "amp-fp32" / "metrics.json", "the amp-fp32 run").parent
        formats = ["torchscript", "pt2", *(["aoti-cuda"] if self.device == "cuda" else [])]
        export = self.work / "export-lenet"
        exported = self.export("lenet", run, export, formats)
        runtimes, missing = self.registered(SINGLE_STREAM_RUNTIMES)
        record = self.out / f"single-stream-{self.device}-lenet.json"
        self.bench("lenet", export, runtimes, ["fp32"], self.batches(), record)
        data = json.loads(record.read_text())
        fastest = _fastest(data, "lenet")
        self.state["lenet"] = {"export": str(export), "fastest": fastest}
        figures = {
            **exported,
            **_bench_figures(data),
            "not_registered": missing,
            "fastest": fastest,
            "record": record.name,
        }
        return _judged(figures)

    # -- 5 and 6. precision -------------------------------------------------------------------

    def precision_lenet(self) -> dict[str, Any]:
        """The half-precision variants of the formats single-stream-lenet timed in fp32,
        each gated on accuracy, timed in the runtimes that run them."""
        run = self.need(self.work / "amp-fp32" / "metrics.json", "the amp-fp32 run").parent
        formats = ["pt2-bf16", "pt2-fp16"]
        if self.device == "cuda":
            formats += ["aoti-cuda-bf16", "aoti-cuda-fp16"]
        return self.precision("lenet", run, formats, ["bf16", "fp16"])

    def precision_224(self, model: str) -> dict[str, Any]:
        """The peer of ``model``, then zoo's candidates against it: one epoch on mnist5k at
        224x224, exported as .pt2 (fp32 and fp16) and as an fp16 AOTInductor package for the
        GPU (bf16 too when the time left allows), timed in eager, pt2, pt2-graphs and
        aoti-cuda; then benchmarks/targets.py against the peer."""
        try:
            peer = self.peer(model)
        except CheckFailed as exc:  # zoo's rows are still worth measuring
            peer = {"failed": exc.reason, **exc.figures}
        run = self.work / model
        if not (run / "metrics.json").exists():
            shutil.rmtree(run, ignore_errors=True)
            self.ok(
                self.zoo(
                    "train", model, "--data", "mnist5k", "--epochs", "1", "--device",
                    self.device, "--no-tensorboard", "--no-progress", "--out", str(run),
                    guard=EXPORT_GUARD_S,
                ),
                f"zoo train {model}",
            )  # fmt: skip
        formats, precisions = ["pt2", "pt2-fp16", "aoti-cuda-fp16"], ["fp32", "fp16"]
        note = fit(ESTIMATES_S[f"precision-{model}"] + BF16_EXTRA_S, self.left())
        if note is None:
            formats += ["pt2-bf16", "aoti-cuda-bf16"]
            precisions.append("bf16")
        figures = self.precision(model, run, formats, precisions, judged=False)
        figures["peer"] = peer
        if note is not None:
            figures["bf16"] = f"left out: {note}"
        figures["targets"] = self.targets(self.out / figures["record"], model)
        return _judged(figures)

    def precision(
        self,
        model: str,
        run: Path,
        formats: list[str],
        precisions: list[str],
        judged: bool = True,
    ) -> dict[str, Any]:
        """``formats`` (fp32 ones and reduced-precision variants, named) exported from
        ``run``, then timed in the precision runtimes in ``precisions``."""
        export = self.work / f"precision-{model}"
        exported = self.export(model, run, export, formats)
        runtimes, missing = self.registered(PRECISION_RUNTIMES)
        record = self.out / f"precision-{self.device}-{model}.json"
        self.bench(model, export, runtimes, precisions, self.batches(), record)
        data = json.loads(record.read_text())
        if model != "lenet":
            self.state[model] = {"export": str(export), "fastest": _fastest(data, model)}
        figures = {
            **exported,
            **_bench_figures(data),
            "not_registered": missing,
            "record": record.name,
        }
        return _judged(figures) if judged else figures

    def targets(self, bench: Path, model: str) -> dict[str, Any]:
        """benchmarks/targets.py on the record, against the model's peer when it ran: its
        verdict is kept, and never fails the check (the targets are judged, not the script)."""
        argv = [sys.executable, str(ROOT / "benchmarks" / "targets.py"), str(bench)]
        peer = self.out / f"peer-{self.device}-{model}.json"
        if peer.exists():
            argv += ["--gpu-peer", str(peer)]
        try:
            ran = self.command(argv, guard=120)
        except CheckFailed as exc:
            return {"exit": None, "error": exc.reason, "output": exc.tail[-TAIL_CHARS:]}
        return {"exit": ran.code, "with_peer": peer.exists(), "output": ran.output[-4000:]}

    # -- 7. scenarios -------------------------------------------------------------------------

    def scenarios(self, model: str) -> dict[str, Any]:
        source = "single-stream-lenet" if model == "lenet" else f"precision-{model}"
        found = self.state.get(model) or {}
        if not found.get("export") or not Path(found["export"]).exists():
            raise Skip(f"needs {source}'s export (that check did not run or failed)")
        fastest = found.get("fastest") or "eager"
        runtimes = ["eager"] if fastest == "eager" else ["eager", fastest]
        record = self.out / f"scenarios-{self.device}-{model}.json"
        self.ok(
            self.zoo(
                "bench", model, "--artifacts", found["export"], "--device", self.device,
                "--runtime", ",".join(runtimes), "--scenario", "offline",
                "--splits", "1x2,2x1", "--threads", "2",
                "--batch", "1,4" if self.quick else "1,8",
                "--rounds", "1", "--max-rounds", "1", "--min-time", "0.5",
                "--json", str(record),
            ),
            "zoo bench --scenario offline",
        )  # fmt: skip
        data = json.loads(record.read_text())
        return _judged(
            {
                "runtimes": runtimes,
                "fastest_from": source,
                "offline": {
                    f"{r['runtime']} {r.get('sessions')}x{r.get('threads')} b{r['batch']}": (
                        {
                            "samples_per_s": r.get("samples_per_s"),
                            "p50_ms": (r.get("batch_latency_ms") or {}).get("p50"),
                            "stable": (r.get("stability") or {}).get("stable"),
                        }
                        if r["status"] == "ok"
                        else f"{r['status']}: {r.get('reason', '')}"
                    )
                    for r in data["results"]
                },
                **_failed_rows(data),
                "record": record.name,
            }
        )

    # -- shared steps -------------------------------------------------------------------------

    def need(self, path: Path, what: str, why: str = "its check did not run or failed") -> Path:
        if not path.exists():
            raise Skip(f"needs {what} ({why})")
        return path

    def batches(self) -> list[int]:
        return [1] if self.quick else [1, 16]

    def registered(self, wanted: Iterable[str]) -> tuple[list[str], list[str]]:
        """The wanted runtimes zoo registers (all of them when the install check did not
        run), and those it does not: a runtime not there yet is reported, not a crash."""
        known = self.state.get("runtimes")
        names = list(wanted)
        if not known:
            return names, []
        return [n for n in names if n in known], [n for n in names if n not in known]

    def export(self, model: str, run: Path, out: Path, formats: list[str]) -> dict[str, Any]:
        """``zoo export`` of the run's bare model (as the peer times it: no preprocessing) in
        ``formats``, reduced-precision variants named as such (``pt2-fp16``); a format that
        failed (its parity or accuracy gate, its compiler) is recorded, the others timed."""
        available = self.state.get("formats")
        unavailable = {}
        if available:
            unavailable = {f: available[f] for f in formats if available.get(f)}
            unavailable.update({f: "not registered" for f in formats if f not in available})
            formats = [f for f in formats if f not in unavailable]
        if not formats:
            raise CheckFailed(f"no format to export: {unavailable}")
        shutil.rmtree(out, ignore_errors=True)
        ran = self.zoo(
            "export", model, "--checkpoint", str(run), "--raw", "--format", ",".join(formats),
            "--out", str(out), guard=EXPORT_GUARD_S,
        )  # fmt: skip
        manifest = out / "manifest.json"
        if not manifest.exists():
            raise CheckFailed(f"zoo export {model}: exit {ran.code}", ran.output[-TAIL_CHARS:])
        written = json.loads(manifest.read_text()).get("formats", {})
        figures: dict[str, Any] = {
            "exported": sorted(f for f, r in written.items() if r.get("status") == "ok")
        }
        failed = {f: r.get("reason", "") for f, r in written.items() if r.get("status") != "ok"}
        if failed:
            figures["export_failed"] = failed
        if unavailable:
            figures["export_unavailable"] = unavailable
        if not figures["exported"]:
            raise CheckFailed(f"zoo export {model}: nothing written", ran.output[-TAIL_CHARS:])
        return figures

    def bench(
        self,
        model: str,
        artifacts: Path,
        runtimes: list[str],
        precisions: list[str],
        batches: list[int],
        record: Path,
    ) -> None:
        self.ok(
            self.zoo(
                "bench", model, "--artifacts", str(artifacts), "--device", self.device,
                "--runtime", ",".join(runtimes), "--precision", ",".join(precisions),
                "--batch", ",".join(map(str, batches)), "--rounds", "1", "--max-rounds", "1",
                "--min-time", "0.5", "--json", str(record), guard=EXPORT_GUARD_S,
            ),
            f"zoo bench {model}",
        )  # fmt: skip


# -- figures ----------------------------------------------------------------------------------


def _label(row: dict[str, Any]) -> str:
    return f"{row['runtime']} {row.get('precision', 'fp32')} b{row['batch']}"


def _failed_rows(data: dict[str, Any]) -> dict[str, Any]:
    failed = {_label(r): r.get("reason", "") for r in data["results"] if r["status"] == "failed"}
    return {"failed_rows": failed} if failed else {}


def _bench_figures(data: dict[str, Any]) -> dict[str, Any]:
    """p50 per runtime, precision and batch (or why not), the accuracy each artifact scored,
    the recommended row per batch, and each CUDA row's TF32 setting."""
    rows = data["results"]
    accuracy: dict[str, Any] = {}
    for row in rows:
        scored = row.get("accuracy")
        if scored:
            accuracy[f"{row['runtime']} {row.get('precision', 'fp32')}"] = {
                k: scored.get(k) for k in ("metric", "value", "eager", "drop", "passed")
            }
    return {
        "p50_ms": {
            _label(r): (
                round(r["batch_latency_ms"]["p50"], 4)
                if r["status"] == "ok" and r.get("batch_latency_ms")
                else f"{r['status']}: {r.get('reason', '')}"
            )
            for r in rows
        },
        "accuracy": accuracy,
        "recommended": {
            f"b{r['batch']}": f"{r['runtime']} {r.get('precision', 'fp32')}"
            for r in data.get("recommendations", [])
        },
        "tf32": {_label(r): r["tf32"] for r in rows if r.get("tf32") is not None},
        **_failed_rows(data),
    }


def _fastest(data: dict[str, Any], model: str) -> str | None:
    """The fp32 runtime with the most samples/s at the largest batch measured: the one the
    offline scenario pits against eager."""
    ok = [
        r
        for r in data["results"]
        if r["model"] == model and r["status"] == "ok" and r.get("precision", "fp32") == "fp32"
    ]
    if not ok:
        return None
    largest = max(r["batch"] for r in ok)
    best = max(
        (r for r in ok if r["batch"] == largest), key=lambda r: r.get("samples_per_s") or 0.0
    )
    return str(best["runtime"])


def _judged(figures: dict[str, Any]) -> dict[str, Any]:
    """The figures, or a failed check carrying them when a row or an export failed."""
    problems = [f"{k}: {v}" for k, v in figures.get("failed_rows", {}).items()]
    problems += [f"export {k}: {v}" for k, v in figures.get("export_failed", {}).items()]
    if problems:
        raise CheckFailed("; ".join(problems)[:500], figures=figures)
    return figures


def _peer_figures(record: Path) -> dict[str, Any]:
    data = json.loads(record.read_text())
    results = data.get("results", [])
    return {
        "p50_ms": {
            f"{r['model']} b{r['batch']} {r['variant']} {r['precision']}": (
                r["p50_ms"] if r["status"] == "ok" else f"{r['status']}: {r.get('reason', '')}"
            )
            for r in results
        },
        "first_call_s": {
            f"{r['model']} b{r['batch']} {r['variant']} {r['precision']}": r.get("first_call_s")
            for r in results
            if r["status"] == "ok"
        },
        "record": record.name,
    }


def _max_difference(a: Path, b: Path) -> float:
    from safetensors.torch import load_file

    def tensors(run: Path) -> dict[str, Any]:
        found = sorted((run / "last").glob("*.safetensors"))
        if not found:
            raise CheckFailed(f"no weights in {run / 'last'}")
        return load_file(str(found[0]))

    left, right = tensors(a), tensors(b)
    if left.keys() != right.keys():
        raise CheckFailed("the two runs' weights have different names")
    return max(float((left[k].float() - right[k].float()).abs().max()) for k in left)


# -- helpers ----------------------------------------------------------------------------------


def _pump(stream: IO[str], lines: list[str]) -> None:
    for line in stream:
        lines.append(line)
        sys.stdout.write("  " + line)
        sys.stdout.flush()


def _kill(proc: subprocess.Popen[str]) -> None:
    """The command and every process it started (torchrun's workers, zoo bench's)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=KILL_GRACE_S)
            return
        except subprocess.TimeoutExpired:
            continue


def _interrupt(signum: int, frame: Any) -> None:
    raise Interrupted()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _light_environment() -> dict[str, Any]:
    """What is known before the install check runs (it records the full environment)."""
    import platform

    return {"python": platform.python_version(), "os": platform.platform()}


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _table(summary: dict[str, Any]) -> str:
    env = summary["environment"]
    state = "complete" if summary["complete"] else "INCOMPLETE"
    if summary["running"]:
        state += f" (running: {summary['running']['check']})"
    lines = [
        f"# zoo GPU check: {env.get('gpu', 'no GPU')} ({summary['device']}), "
        f"torch {env.get('torch', '?')}, CPU {env.get('cpu', '?')}",
        "",
        f"{state}; {summary['elapsed_s']} s of a {summary['budget_s']:.0f} s budget"
        + ("; --quick" if summary["quick"] else ""),
        "",
        "| check | status | estimate s | seconds | figures |",
        "| --- | --- | ---: | ---: | --- |",
    ]
    for record in summary["checks"]:
        figures = {
            k: v
            for k, v in record.items()
            if k not in ("check", "status", "estimate_s", "seconds", "tail")
        }
        text = json.dumps(figures)[:400].replace("|", "\\|")
        lines.append(
            f"| {record['check']} | {record['status']} | {record.get('estimate_s', '')} | "
            f"{record.get('seconds', '')} | {text} |"
        )
    return "\n".join(lines) + "\n"


def _only(text: str) -> set[str]:
    names = {n.strip() for n in text.split(",") if n.strip()}
    known = set(check_names("cuda")) | set(check_names("cpu"))
    unknown = sorted(names - known)
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown check {', '.join(unknown)}; checks: {', '.join(check_names('cuda'))}"
        )
    return names


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of seconds, 0 or more")
    return value


def main(argv: list[str] | None = None) -> int:
    script_started = time.time()
    parser = argparse.ArgumentParser(
        prog="gpu_check.py", description="zoo's GPU checks, in priority order, in a time budget."
    )
    parser.add_argument("--out", type=Path, required=True, help="where the records go")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--quick", action="store_true", help="one epoch, batch 1, lenet only")
    parser.add_argument(
        "--budget",
        type=_seconds,
        default=DEFAULT_BUDGET_S,
        help=f"seconds for everything, from --started (default {DEFAULT_BUDGET_S:.0f})",
    )
    parser.add_argument(
        "--started",
        type=_seconds,
        default=None,
        help="when the window began, in epoch seconds (default: now)",
    )
    parser.add_argument("--only", type=_only, default=None, help="comma-separated check names")
    parser.add_argument(
        "--work", type=Path, default=None, help="runs and exports (kept; default: a temp dir)"
    )
    args = parser.parse_args(argv)
    elsewhere = sorted((args.only or set()) - set(check_names(args.device)))
    if elsewhere:
        parser.error(f"not a check with --device {args.device}: {', '.join(elsewhere)}")
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            print("gpu_check: no CUDA device here; use --device cpu to try the script")
            return 2
    work = args.work or Path(tempfile.mkdtemp(prefix="zoo-gpu-check-"))
    checks = Checks(
        args.out.resolve(),
        work.resolve(),
        args.device,
        args.quick,
        args.budget,
        args.started if args.started is not None else script_started,
        args.only,
    )
    try:
        return checks.run_all()
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
