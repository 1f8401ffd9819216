"""The hand-written peer of `zoo bench` on a GPU: what a user times without zoo, same models.

    python benchmarks/gpu_peer.py --out FILE.json [--device cuda|cpu]
        [--models lenet,resnet18,vgg_head] [--batch 1,16] [--iterations N] [--quick]
        [--budget SECONDS]

A user's own script ran about 2x faster than zoo's best artifact on the first GPU run, so
zoo's GPU targets (``benchmarks/targets.py RUN.json --gpu-peer FILE.json``) are judged against
that user, timed in the same session as zoo's check. Each model is zoo's registered one, built
by ``zoo.create_model`` with its default arguments and seed 0, in eval mode: the network
``zoo bench MODEL`` times. Its input is a random float tensor of the spec's per-sample shape
(``InputSpec.example``) with no preprocessing, as a user would feed it. Three variants each:

- ``eager fp32``: the module under ``torch.inference_mode``;
- ``compile reduce-overhead fp32``: ``torch.compile(model, mode="reduce-overhead")`` (CUDA
  graphs on a GPU; on the CPU Inductor alone);
- ``compile reduce-overhead fp16 channels-last``: ``model.half()`` in channels-last, the
  input likewise, then the same ``torch.compile``.

Every variant runs under ``torch.inference_mode`` with ``torch.backends.cudnn.benchmark`` on;
Dynamo is reset before each compiled (model, batch), so each compiles a static graph for its
batch size as a script written for that batch would. Timing: the first call (compilation
included) is ``first_call_s``, then 20 warm-up calls, then ``--iterations`` (200) calls timed
one by one with ``torch.cuda.synchronize()`` before and after each on CUDA; p50 and p90 in
ms. PyTorch's fp32 defaults (TF32) are left alone and recorded. ``--quick`` (3 warm-up calls,
5 timed) is for trying the script on a CPU, where fp16 works but is slow.

The JSON (schema ``zoo-gpu-peer/1``: ``created``, ``device``, ``environment`` with the GPU,
CUDA, CPU and TF32 settings, ``settings``, and one ``results`` entry per model, batch and
variant with ``status`` ``ok``, ``failed`` or ``skipped`` and a one-line ``reason``) is
rewritten atomically after every variant, so a run killed midway keeps what it measured. A
variant that fails (a compile error) is recorded and the rest run; ``--budget`` skips every
variant that would start after that many seconds. Exit 0, or 1 when nothing was measured, or
2 on a usage error.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from zoo._cpu import cpu_description  # noqa: E402
from zoo.errors import ZooError, one_line  # noqa: E402

if TYPE_CHECKING:
    import torch

__all__ = ["MODELS", "SCHEMA", "VARIANTS", "Variant", "main", "measure"]

SCHEMA = "zoo-gpu-peer/1"
#: The models and batch sizes of the GPU peer targets (``benchmarks/targets.py``), and lenet,
#: small enough to try the script on a CPU.
MODELS = ("lenet", "resnet18", "vgg_head")
BATCHES = (1, 16)
#: Calls before timing (after the first, which compiles), and timed calls: the first run's
#: peer; ``--quick`` uses the small pair.
WARMUP, ITERATIONS = 20, 200
QUICK_WARMUP, QUICK_ITERATIONS = 3, 5


@dataclass(frozen=True)
class Variant:
    """One way a user runs the model by hand."""

    name: str
    #: ``fp32`` or ``fp16`` (weights and input).
    precision: str
    #: ``torch.compile(model, mode="reduce-overhead")``, or the eager module.
    compiled: bool
    #: Weights and input in ``torch.channels_last``.
    channels_last: bool


VARIANTS = (
    Variant("eager fp32", "fp32", compiled=False, channels_last=False),
    Variant("compile reduce-overhead fp32", "fp32", compiled=True, channels_last=False),
    Variant(
        "compile reduce-overhead fp16 channels-last", "fp16", compiled=True, channels_last=True
    ),
)


def _tf32_settings() -> dict[str, Any]:
    """PyTorch's fp32 settings as this process left them (the defaults: nothing here sets
    them): the legacy ``allow_tf32`` flags, and the ``fp32_precision`` attributes of newer
    releases where this torch has them."""
    import torch

    backends = torch.backends
    probes: dict[str, tuple[Any, str]] = {
        "cuda.matmul.allow_tf32": (backends.cuda.matmul, "allow_tf32"),
        "cudnn.allow_tf32": (backends.cudnn, "allow_tf32"),
        "fp32_precision": (backends, "fp32_precision"),
        "cuda.matmul.fp32_precision": (backends.cuda.matmul, "fp32_precision"),
        "cudnn.fp32_precision": (backends.cudnn, "fp32_precision"),
        "cudnn.conv.fp32_precision": (getattr(backends.cudnn, "conv", None), "fp32_precision"),
        "cudnn.rnn.fp32_precision": (getattr(backends.cudnn, "rnn", None), "fp32_precision"),
    }
    record: dict[str, Any] = {"float32_matmul_precision": torch.get_float32_matmul_precision()}
    missing = object()
    with warnings.catch_warnings():  # newer releases warn on the legacy flags
        warnings.simplefilter("ignore")
        for key, (owner, attribute) in probes.items():
            try:
                value = missing if owner is None else getattr(owner, attribute, missing)
            except Exception as exc:  # a torch that refuses to mix the two APIs
                value = one_line(exc)
            if value is not missing:
                record[key] = value if isinstance(value, (bool, str)) else str(value)
    return record


def environment(device: str) -> dict[str, Any]:
    """Where the figures come from: versions, the GPU and CUDA (null on the CPU), the CPU
    and its SIMD flags (zoo bench records the same), and the TF32 settings."""
    import torch

    from zoo._version import __version__

    cpu, flags = cpu_description()
    cuda = device == "cuda"
    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "zoo": __version__,
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "cuda": torch.version.cuda if cuda else None,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "cpu": cpu,
        "cpu_flags": flags,
        "threads": torch.get_num_threads(),
        "tf32": _tf32_settings(),
    }


def _result(model: str, batch: int, variant: Variant, status: str, **fields: Any) -> dict[str, Any]:
    return {
        "model": model,
        "batch": batch,
        "variant": variant.name,
        "precision": variant.precision,
        "status": status,
        "p50_ms": None,
        "p90_ms": None,
        "iterations": 0,
        "first_call_s": None,
        "reason": "",
        **fields,
    }


def measure(
    call: Callable[[Any], Any], x: Any, device: str, warmup: int, iterations: int
) -> dict[str, Any]:
    """First call (compilation included), ``warmup`` calls, then ``iterations`` timed ones,
    each between two device synchronisations on CUDA."""
    import numpy as np
    import torch

    sync: Callable[[], None] = torch.cuda.synchronize if device == "cuda" else lambda: None
    sync()
    started = time.perf_counter()
    call(x)
    sync()
    first_call_s = time.perf_counter() - started
    for _ in range(warmup):
        call(x)
    times_ns = []
    for _ in range(iterations):
        sync()
        t0 = time.perf_counter_ns()
        call(x)
        sync()
        times_ns.append(time.perf_counter_ns() - t0)
    p50, p90 = np.percentile(np.asarray(times_ns, dtype=np.float64) / 1e6, [50, 90])
    return {
        "p50_ms": round(float(p50), 6),
        "p90_ms": round(float(p90), 6),
        "iterations": iterations,
        "first_call_s": round(first_call_s, 3),
    }


class Peer:
    """One run: the models, batch sizes and variants in order, the JSON rewritten after each."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out: Path = args.out
        self.device: str = args.device
        self.warmup = QUICK_WARMUP if args.quick else WARMUP
        self.iterations: int = args.iterations or (QUICK_ITERATIONS if args.quick else ITERATIONS)
        self.started = time.monotonic()
        self.results: list[dict[str, Any]] = []
        self.document: dict[str, Any] = {}

    def spent(self) -> str | None:
        """Why the next variant may not start (the budget is spent), or None."""
        budget = self.args.budget
        elapsed = time.monotonic() - self.started
        if budget is None or elapsed < budget:
            return None
        return f"not started: the --budget of {budget:g} s was spent ({elapsed:.0f} s elapsed)"

    def save(self) -> None:
        """Write the JSON to a temporary file beside ``--out``, then rename it over ``--out``:
        a run killed while writing leaves the previous version whole."""
        self.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.out.with_name(f".{self.out.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.document, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, self.out)

    def record(self, result: dict[str, Any]) -> None:
        self.results.append(result)
        shown = (
            f"p50 {result['p50_ms']:.3f} ms, p90 {result['p90_ms']:.3f} ms, "
            f"first call {result['first_call_s']:.1f} s"
            if result["status"] == "ok"
            else f"{result['status']}: {result['reason']}"
        )
        print(f"{result['model']} batch {result['batch']} {result['variant']}: {shown}", flush=True)
        self.save()

    def run(self) -> int:
        import torch

        torch.backends.cudnn.benchmark = True
        self.document = {
            "schema": SCHEMA,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "device": self.device,
            "environment": environment(self.device),
            "settings": {
                "models": list(self.args.models),
                "batches": list(self.args.batch),
                "warmup": self.warmup,
                "iterations": self.iterations,
                "budget_s": self.args.budget,
                "cudnn_benchmark": True,
                "inference_mode": True,
            },
            "results": self.results,
        }
        self.save()
        for model in self.args.models:
            self.run_model(model)
        return 0 if any(r["status"] == "ok" for r in self.results) else 1

    def run_model(self, name: str) -> None:
        """Every batch size and variant of one model, built once (and copied once into each
        variant's precision and memory layout)."""
        import torch

        import zoo

        modules: dict[str, torch.nn.Module] = {}
        spec = zoo.get_spec(name)
        failure = ""
        for batch in self.args.batch:
            for variant in VARIANTS:
                why = self.spent()
                if why is not None:
                    self.record(_result(name, batch, variant, "skipped", reason=why))
                    continue
                if not modules and not failure:
                    try:
                        torch.manual_seed(0)  # zoo bench's fresh weights are seeded 0 too
                        modules["fp32"] = zoo.create_model(name).to(self.device).eval()
                    except Exception as exc:
                        failure = f"building the model: {one_line(exc)}"
                if failure:
                    self.record(_result(name, batch, variant, "failed", reason=failure))
                    continue
                try:
                    figures = self.run_variant(modules, spec.input.example(batch, seed=0), variant)
                    self.record(_result(name, batch, variant, "ok", **figures))
                except Exception as exc:  # recorded in one line; the next variant runs
                    self.record(_result(name, batch, variant, "failed", reason=one_line(exc)))
                finally:
                    _release(self.device)

    def run_variant(
        self, modules: dict[str, torch.nn.Module], x: torch.Tensor, variant: Variant
    ) -> dict[str, Any]:
        import torch
        import torch._dynamo  # explicitly: older releases import it lazily

        key = f"{variant.precision}{' channels-last' if variant.channels_last else ''}"
        if key not in modules:  # a copy in this precision and layout, kept for each batch
            module = copy.deepcopy(modules["fp32"])
            module = module.half() if variant.precision == "fp16" else module
            if variant.channels_last:
                module = module.to(memory_format=torch.channels_last)
            modules[key] = module
        module = modules[key]
        x = x.to(self.device)
        if variant.precision == "fp16":
            x = x.half()
        if variant.channels_last:
            x = x.to(memory_format=torch.channels_last)
        if variant.compiled:
            torch._dynamo.reset()  # a static graph of this batch size, as a script would
            call: Callable[[Any], Any] = torch.compile(module, mode="reduce-overhead")
        else:
            call = module
        with torch.inference_mode():
            return measure(call, x, self.device, self.warmup, self.iterations)


def _release(device: str) -> None:
    """Drop compiled graphs (and their CUDA graph pools) before the next variant."""
    import torch
    import torch._dynamo

    torch._dynamo.reset()
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


def _names(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise argparse.ArgumentTypeError("give at least one name")
    return names


def _batches(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(b) for b in text.split(",") if b.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give batch sizes such as 1,16") from None
    if not sizes or any(b < 1 for b in sizes):
        raise argparse.ArgumentTypeError(f"{text!r}: give positive batch sizes such as 1,16")
    return sizes


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a positive number of calls")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:  # NaN too
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of seconds, 0 or more")
    return value


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="gpu_peer.py", description="Time what a user writes by hand, beside zoo bench."
    )
    parser.add_argument("--out", type=Path, required=True, help="the JSON file to write")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--models", type=_names, default=MODELS, help="comma-separated")
    parser.add_argument("--batch", type=_batches, default=BATCHES, help="comma-separated")
    parser.add_argument(
        "--iterations", type=_positive, default=None, help=f"timed calls ({ITERATIONS})"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_WARMUP} warm-up and {QUICK_ITERATIONS} timed calls (trying it on a CPU)",
    )
    parser.add_argument(
        "--budget", type=_seconds, default=None, help="start no variant after this many seconds"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    import torch

    import zoo

    if args.device == "cuda" and not torch.cuda.is_available():
        print(
            "gpu_peer.py: no CUDA device here; use --device cpu to try the script", file=sys.stderr
        )
        return 2
    try:
        for name in args.models:
            zoo.get_spec(name)
    except ZooError as exc:
        print(f"gpu_peer.py: {one_line(exc)}", file=sys.stderr)
        return 2
    peer = Peer(args)
    status = peer.run()
    measured = sum(r["status"] == "ok" for r in peer.results)
    print(f"{args.out}: {measured} of {len(peer.results)} variants measured", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
