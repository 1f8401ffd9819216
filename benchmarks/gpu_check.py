"""The GPU checks of training, prepared to run in one go on a machine with a CUDA device.

    python benchmarks/gpu_check.py --out DIR [--device cuda] [--quick]

Each check runs zoo as a user would, in processes of its own, and the script writes
``DIR/gpu-check.json`` (schema ``zoo-gpu-check/1``: every check's status, figures and the
tail of its output on failure) and ``DIR/gpu-check.md`` (a table), plus the
``zoo bench-train`` records it made. A failed check is recorded and the next one runs: one
run says everything that works and everything that does not. The exit status is 1 when a
check failed.

The checks (issue "Training beyond one process"):

1. ``bench-train``: training throughput of LeNet and the course ResNet on mnist5k, the notes'
   hand loop against the trainer with defaults and with bf16/fp16 autocast and channels-last
   (``zoo bench-train``; each variant in its own process).
2. ``amp-bf16`` and ``amp-fp16``: a short run with each precision; the test accuracy of each
   (fp16 trains through a GradScaler).
3. ``ddp-nccl``: ``torchrun --nproc-per-node 1 -m zoo train``: a one-process job joins an
   NCCL process group and trains through DistributedDataParallel; its weights are compared
   with a plain run's.
4. ``cuda-to-cpu``: the CUDA run's checkpoint, with CUDA hidden: resumed on the CPU for one
   more epoch, and exported (ONNX) with its parity gate.
5. ``bench-precision`` (issue "Deployable artifacts past the fp32 ceiling"): the fp32 run
   exported and timed in eager and ``.pt2``, fp32 and bf16, on the device, with the accuracy
   each artifact scored on the held-out split; on CUDA also resnet18 and VGG16 (``vgg_head``),
   each trained one epoch on mnist5k at 224x224 (batch 1 and 16).

6. ``bench-scenarios`` (issue "Benchmarks a deployment decision can rest on"): ``zoo bench``
   of lenet, resnet18, vgg_head and bam on the device in eager, TorchScript, ``.pt2`` and
   torch.compile, single-stream and offline, each row's stability with it (onnxruntime-gpu
   cannot be carried to the device machine: no ONNX Runtime rows there).

``--device cpu`` runs the same script here, without a GPU (fp16 is skipped: it needs CUDA):
that is how the script itself is tested before a device is lent.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

#: Every command's hang guard, not a speed target.
TIMEOUT_S = 300
SCHEMA = "zoo-gpu-check/1"


class Checks:
    def __init__(self, out: Path, device: str, quick: bool) -> None:
        self.out = out
        self.device = device
        self.quick = quick
        self.work = out / "work"
        self.results: list[dict[str, Any]] = []

    # -- running ------------------------------------------------------------------------------

    def zoo(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = TIMEOUT_S
    ) -> subprocess.CompletedProcess[str]:
        return self.command([sys.executable, "-m", "zoo", *args], env=env, timeout=timeout)

    def command(
        self, argv: list[str], env: dict[str, str] | None = None, timeout: float = TIMEOUT_S
    ) -> subprocess.CompletedProcess[str]:
        environ = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        try:
            return subprocess.run(
                argv, capture_output=True, text=True, env=environ, timeout=timeout
            )
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
            err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else exc.stderr or ""
            return subprocess.CompletedProcess(argv, 124, out, err + f"\ntimed out ({timeout} s)")

    def check(self, name: str, run: Any) -> None:
        started = time.perf_counter()
        print(f"== {name}", flush=True)
        try:
            figures = run()
            record: dict[str, Any] = {"check": name, "status": "ok", **(figures or {})}
        except CheckFailed as exc:
            record = {"check": name, "status": "failed", "reason": exc.reason, "tail": exc.tail}
        except Exception as exc:  # the script's own bug: recorded, the next check runs
            record = {"check": name, "status": "failed", "reason": f"{type(exc).__name__}: {exc}"}
        record["seconds"] = round(time.perf_counter() - started, 1)
        print(json.dumps(record)[:2000], flush=True)
        self.results.append(record)

    def ok(self, result: subprocess.CompletedProcess[str], what: str) -> str:
        if result.returncode != 0:
            raise CheckFailed(
                f"{what}: exit {result.returncode}", (result.stdout + result.stderr)[-3000:]
            )
        return result.stdout

    # -- the checks ---------------------------------------------------------------------------

    def bench_train(self, model: str) -> dict[str, Any]:
        record = self.out / f"bench-train-{self.device}-{model}.json"
        variants = ["hand", "trainer", "bf16", "channels-last", "bf16+channels-last"]
        if self.device == "cuda":
            variants[3:3] = ["fp16"]
        rounds, epochs = ("1", "1") if self.quick else ("2", "2")
        self.ok(
            self.zoo(
                "bench-train", model, "--device", self.device, "--variants", ",".join(variants),
                "--rounds", rounds, "--epochs", epochs, "--json", str(record),
            ),
            f"zoo bench-train {model}",
        )  # fmt: skip
        data = json.loads(record.read_text())
        return {
            "samples_per_s": {v["name"]: v["samples_per_s"] for v in data["variants"]},
            "vs_hand": {v["name"]: v["vs_hand"] for v in data["variants"]},
            "failed": {v["name"]: v["reason"] for v in data["variants"] if v["status"] != "ok"},
            "record": record.name,
        }

    def train(self, name: str, *options: str) -> Path:
        run = self.work / name
        self.ok(
            self.zoo(
                "train", "lenet", "--data", "mnist5k", "--epochs", self.epochs(),
                "--device", self.device, "--no-tensorboard", "--no-progress",
                "--out", str(run), *options,
            ),
            f"zoo train ({name})",
        )  # fmt: skip
        return run

    def epochs(self) -> str:
        return "1" if self.quick else "2"

    def amp(self, precision: str) -> dict[str, Any]:
        run = self.train(f"amp-{precision}", "--precision", precision)
        metrics = json.loads((run / "metrics.json").read_text())
        history = metrics["history"]
        return {
            "test_accuracy": metrics["test"]["accuracy"],
            "samples_per_s": [h["samples_per_second"] for h in history],
            "final_train_loss": history[-1]["train"]["loss"],
        }

    def ddp(self) -> dict[str, Any]:
        job = self.work / "ddp"
        said = self.ok(
            self.command(
                [sys.executable, "-m", "torch.distributed.run", "--standalone",
                 "--nproc-per-node", "1", "-m", "zoo", "train", "lenet", "--data", "mnist5k",
                 "--epochs", self.epochs(), "--device", self.device, "--no-tensorboard",
                 "--no-progress", "--out", str(job)]
            ),
            "torchrun --nproc-per-node 1 -m zoo train",
        )  # fmt: skip
        meta = json.loads((job / "last" / "meta.json").read_text())["distributed"]
        expected = "nccl" if self.device == "cuda" else "gloo"
        if meta != {"world_size": 1, "backend": expected}:
            raise CheckFailed(f"the run's meta.json says {meta}, not one {expected} process", said)
        plain = self.work / "amp-fp32"
        if not plain.exists():
            self.train("amp-fp32", "--precision", "fp32")
        difference = _max_difference(job, plain)
        return {"backend": meta["backend"], "max_weight_difference_vs_plain": difference}

    def cuda_to_cpu(self) -> dict[str, Any]:
        source = self.work / "amp-bf16"
        if not source.exists():
            raise CheckFailed("the amp-bf16 run is missing (its check failed)", "")
        hidden = {"CUDA_VISIBLE_DEVICES": ""}
        resumed = self.work / "resumed-on-cpu"
        shutil.copytree(source, resumed, symlinks=True)
        self.ok(
            self.zoo(
                "train", "lenet", "--data", "mnist5k", "--epochs", str(int(self.epochs()) + 1),
                "--device", "cpu", "--no-tensorboard", "--no-progress", "--out", str(resumed),
                "--resume", "auto", env=hidden,
            ),
            "zoo train --resume on CPU",
        )  # fmt: skip
        history = json.loads((resumed / "metrics.json").read_text())["history"]
        export = self.work / "export"
        self.ok(
            self.zoo(
                "export", "lenet", "--checkpoint", str(source), "--format", "onnx",
                "--out", str(export), env=hidden,
            ),
            "zoo export of the CUDA run on CPU",
        )  # fmt: skip
        manifest = json.loads((export / "manifest.json").read_text())
        return {
            "resumed_epochs": [h["epoch"] for h in history],
            "resumed_test_accuracy": json.loads((resumed / "metrics.json").read_text())["test"][
                "accuracy"
            ],
            "export_formats": sorted(manifest.get("artifacts", manifest.get("formats", {}))),
        }

    def bench_precision(self, model: str = "lenet") -> dict[str, Any]:
        """The fp32 run's exports timed in eager and .pt2, fp32 and bf16, on the device, with
        the accuracy each artifact scored on the held-out split (issue 13's GPU check). LeNet
        reuses the amp-fp32 run; resnet18 and VGG16 (224x224) train one epoch first."""
        if model == "lenet":
            run, batches = self.work / "amp-fp32", "1,32"
            if not run.exists():
                raise CheckFailed("the amp-fp32 run is missing (its check failed)", "")
        else:
            run, batches = self.work / model, "1,16"
            self.ok(
                self.zoo(
                    "train", model, "--data", "mnist5k", "--epochs", "1", "--device",
                    self.device, "--no-tensorboard", "--no-progress", "--out", str(run),
                ),
                f"zoo train {model}",
            )  # fmt: skip
        record = self.out / f"bench-precision-{self.device}-{model}.json"
        self.ok(
            self.zoo(
                "bench", model, "--checkpoint", str(run), "--device", self.device,
                "--runtime", "eager,pt2", "--precision", "fp32,bf16", "--batch", batches,
                "--json", str(record),
            ),
            "zoo bench --precision fp32,bf16",
        )  # fmt: skip
        rows = json.loads(record.read_text())["results"]
        return {
            "p50_ms": {
                f"{r['runtime']} {r.get('precision', 'fp32')} b{r['batch']}": (
                    r["batch_latency_ms"]["p50"] if r.get("batch_latency_ms") else r["status"]
                )
                for r in rows
            },
            "record": record.name,
        }

    def bench_scenarios(self, model: str) -> dict[str, Any]:
        """Single-stream and offline on the device for the GPU runtimes (issue 14)."""
        record = self.out / f"bench-scenarios-{self.device}-{model}.json"
        batches = "1,8" if self.quick or model == "vgg_head" else "1,8,32"
        # Two sessions of one CPU thread or one of two, on the one device: the split that
        # matters there is how many sessions share the GPU.
        self.ok(
            self.zoo(
                "bench", model, "--device", self.device, "--runtime",
                "eager,torchscript,pt2,compile", "--scenario", "single-stream,offline",
                "--batch", batches, "--threads", "2", "--splits", "1x2,2x1",
                "--max-rounds", "2", "--json", str(record), timeout=2 * TIMEOUT_S,
            ),
            "zoo bench --scenario single-stream,offline",
        )  # fmt: skip
        rows = json.loads(record.read_text())["results"]
        return {
            "figures": {
                f"{r['runtime']} {r['scenario']} b{r['batch']}": (
                    {
                        "p50_ms": r["batch_latency_ms"]["p50"],
                        "samples_per_s": r["samples_per_s"],
                        "stable": (r.get("stability") or {}).get("stable"),
                    }
                    if r.get("batch_latency_ms")
                    else r["status"]
                )
                for r in rows
            },
            "record": record.name,
        }

    def run_all(self) -> int:
        self.work.mkdir(parents=True, exist_ok=True)
        for model in ("lenet", "resnet"):
            self.check(f"bench-train-{model}", lambda m=model: self.bench_train(m))
        self.check("amp-fp32", lambda: self.amp("fp32"))
        self.check("amp-bf16", lambda: self.amp("bf16"))
        if self.device == "cuda":
            self.check("amp-fp16", lambda: self.amp("fp16"))
        self.check(f"ddp-{'nccl' if self.device == 'cuda' else 'gloo'}", self.ddp)
        self.check("cuda-to-cpu", self.cuda_to_cpu)
        self.check("bench-precision", self.bench_precision)
        if self.device == "cuda":  # 224x224 models: minutes an epoch on a CPU
            for model in ("resnet18", "vgg_head"):
                self.check(f"bench-precision-{model}", lambda m=model: self.bench_precision(m))
        for model in (
            ("lenet", "resnet18", "vgg_head", "bam") if self.device == "cuda" else ("lenet",)
        ):
            self.check(f"bench-scenarios-{model}", lambda m=model: self.bench_scenarios(m))
        failed = [r["check"] for r in self.results if r["status"] != "ok"]
        summary = {
            "schema": SCHEMA,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "environment": _environment(self.device),
            "device": self.device,
            "quick": self.quick,
            "checks": self.results,
            "failed": failed,
        }
        (self.out / "gpu-check.json").write_text(json.dumps(summary, indent=2) + "\n")
        (self.out / "gpu-check.md").write_text(_table(summary))
        shutil.rmtree(self.work, ignore_errors=True)
        print(_table(summary))
        return 1 if failed else 0


class CheckFailed(Exception):
    def __init__(self, reason: str, tail: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.tail = tail


def _max_difference(a: Path, b: Path) -> float:
    from safetensors.torch import load_file

    def tensors(run: Path) -> dict[str, Any]:
        found = sorted((run / "last").glob("*.safetensors"))
        if not found:
            raise CheckFailed(f"no weights in {run / 'last'}", "")
        return load_file(str(found[0]))

    left, right = tensors(a), tensors(b)
    if left.keys() != right.keys():
        raise CheckFailed("the two runs' weights have different names", "")
    return max(float((left[k].float() - right[k].float()).abs().max()) for k in left)


def _environment(device: str) -> dict[str, Any]:
    import psutil

    from zoo.bench.runner import environment

    return environment(psutil.cpu_count(logical=False) or 1, (device,))


def _table(summary: dict[str, Any]) -> str:
    env = summary["environment"]
    lines = [
        f"# zoo GPU check: {env.get('gpu', 'no GPU')} ({summary['device']}), "
        f"torch {env['torch']}, CPU {env['cpu']}",
        "",
        "| check | status | seconds | figures |",
        "| --- | --- | ---: | --- |",
    ]
    for record in summary["checks"]:
        figures = {
            k: v for k, v in record.items() if k not in ("check", "status", "seconds", "tail")
        }
        lines.append(
            f"| {record['check']} | {record['status']} | {record['seconds']} | "
            f"{json.dumps(figures)[:400]} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="where the records go")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--quick", action="store_true", help="one round, one epoch")
    args = parser.parse_args()
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            print("gpu_check: no CUDA device here; use --device cpu to try the script")
            return 2
    args.out.mkdir(parents=True, exist_ok=True)
    return Checks(args.out, args.device, args.quick).run_all()


if __name__ == "__main__":
    sys.exit(main())
