"""``zoo bench``: artifacts, one worker process per (model, runtime, device), statistics.

Every runtime is timed alone in a fresh process (``zoo.bench.worker``) with the thread count
set before torch starts; with several rounds the runtime order alternates, a row's statistics
are those of its fastest round (by p50), and the spread of the per-round medians is reported.
Runtimes that cannot run here become skipped rows with the reason; a worker that fails or
crashes becomes a failed row; neither stops the run.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from zoo.bench.results import BenchRun, Latency, Row
from zoo.bench.timing import TimingPolicy
from zoo.errors import UsageError

__all__ = [
    "DEFAULT_BATCHES",
    "DEFAULT_RUNTIMES",
    "BenchSettings",
    "formats_for",
    "physical_cores",
    "run_bench",
]

DEFAULT_RUNTIMES = (
    "eager",
    "torchscript",
    "onnxruntime",
    "onnxruntime-default",
    "onnxruntime-trt",
    "pt2",
    "aoti",
    "compile",
)
DEFAULT_BATCHES = (1, 8, 32)


def formats_for(runtimes: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The export formats these runtimes load (each adapter's ``format``), in order; ``pt2``
    alone when none needs one (eager and torch.compile read the manifest beside it)."""
    from zoo.bench.runtimes import get_runtime

    formats = (get_runtime(r).format for r in runtimes)
    return tuple(dict.fromkeys(f for f in formats if f is not None)) or ("pt2",)


def physical_cores() -> int:
    import psutil

    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


@dataclass
class BenchSettings:
    models: list[str]
    runtimes: tuple[str, ...] = DEFAULT_RUNTIMES
    devices: tuple[str, ...] | None = None  # None: cpu, and cuda where present
    batches: tuple[int, ...] = DEFAULT_BATCHES
    threads: int | None = None  # None: the physical cores
    artifacts: Path | None = None
    checkpoint: Path | None = None
    raw: bool = True
    rounds: int = 1
    seed: int = 0
    policy: TimingPolicy = field(default_factory=TimingPolicy)
    #: A worker running longer than this is killed and its row fails.
    timeout_s: float = 1800


def _validate(settings: BenchSettings) -> None:
    from zoo.bench.runtimes import cuda_present, get_runtime

    for name in settings.runtimes:
        get_runtime(name)  # unknown names: an error with suggestions
    if not settings.runtimes:
        raise UsageError("--runtime: give at least one runtime")
    bad = [b for b in settings.batches if b < 1]
    if bad or not settings.batches:
        raise UsageError(f"--batch: batch sizes must be positive integers, got {bad or 'none'}")
    if settings.threads is not None and settings.threads < 1:
        raise UsageError(f"--threads must be at least 1, got {settings.threads}")
    if settings.rounds < 1:
        raise UsageError(f"--rounds must be at least 1, got {settings.rounds}")
    for device in settings.devices or ():
        if device not in ("cpu", "cuda"):
            raise UsageError(f"--device {device!r}: choose cpu or cuda")
        if device == "cuda" and not cuda_present():
            raise UsageError(
                "--device cuda: no CUDA device here (torch sees none); use --device cpu"
            )


def _resolve_models(patterns: list[str]) -> list[str]:
    from zoo._pluginmanager import get_plugins

    registry = get_plugins().models
    names: list[str] = []
    for pattern in patterns:
        found = registry.list(pattern)
        if not found:
            if any(ch in pattern for ch in "*?["):
                raise UsageError(f"no model matches {pattern!r}")
            registry.get(pattern)  # raises UnknownModelError with close matches
        names += [n for n in found if n not in names]
    return names


def _no_module() -> Any:
    raise AssertionError("the parent process never builds the model's module")


def cache_dir() -> Path:
    root = os.environ.get("ZOO_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "zoo"
    )
    return Path(root)


def _export_dir(model: str, settings: BenchSettings, formats: tuple[str, ...]) -> Path:
    """The export to time: ``--artifacts`` (checked against its manifest), else a cached
    export of fresh weights (seed 0), else a new one."""
    from zoo.export.manifest import ArtifactError, read_manifest, verify_files

    if settings.artifacts is not None:
        base = settings.artifacts
        candidates = [base, base / model]
        for directory in candidates:
            if (directory / "manifest.json").is_file():
                manifest = read_manifest(directory)
                if manifest["model"] != model:
                    continue
                problems = verify_files(directory, manifest)
                if problems:
                    raise ArtifactError(
                        f"{directory}: " + "; ".join(problems) + " (export it again)"
                    )
                return directory
        raise UsageError(
            f"--artifacts {base}: no export of {model!r} there (expected {base}/manifest.json "
            f"or {base}/{model}/manifest.json, as `zoo export {model} --out DIR` writes)"
        )
    import torch

    from zoo import __version__
    from zoo.export.exporter import export_model

    key = json.dumps(
        [model, settings.raw, str(settings.checkpoint), torch.__version__, __version__],
        sort_keys=True,
    )
    if settings.checkpoint is not None:
        key += str(os.stat(settings.checkpoint).st_mtime_ns)
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    out = cache_dir() / "bench-exports" / f"{model}-{digest}"
    have: set[str] = set()
    if (out / "manifest.json").is_file():
        try:
            manifest = read_manifest(out)
            if not verify_files(out, manifest):
                have = {f for f, e in manifest["formats"].items() if e["status"] == "ok"}
                tried = set(manifest["formats"])
                if set(formats) <= tried:
                    return out
        except (ArtifactError, KeyError, ValueError):
            have = set()
    wanted = tuple(dict.fromkeys([*sorted(have), *formats]))
    torch.manual_seed(settings.seed)
    export_model(
        model,
        out,
        formats=wanted,
        checkpoint=settings.checkpoint,
        raw=settings.raw,
    )
    return out


def _spawn(job: dict[str, Any], threads: int, timeout: float) -> dict[str, Any]:
    from zoo.export.validate import crash_reason

    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    try:
        child = subprocess.run(
            [sys.executable, "-m", "zoo.bench.worker"],
            input=json.dumps(job),
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"status": "failed", "reason": f"did not finish in {timeout:.0f} s"}
    if child.returncode != 0 or not child.stdout.strip():
        return {"status": "failed", "reason": crash_reason(child.returncode, child.stderr)}
    result: dict[str, Any] = json.loads(child.stdout.strip().splitlines()[-1])
    return result


def environment(threads: int, devices: tuple[str, ...]) -> dict[str, Any]:
    """What the numbers were measured on."""
    import platform

    import psutil
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    env: dict[str, Any] = {
        "cpu": cpu,
        "physical_cores": psutil.cpu_count(logical=False),
        "logical_cores": psutil.cpu_count(logical=True),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "threads": threads,
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    try:
        import onnxruntime

        env["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        env["onnxruntime"] = None
    from zoo import __version__

    env["zoo"] = __version__
    # What changes the memory allocator of every worker (they inherit this environment):
    # large per-call allocations can cost more in page faults than in compute.
    env["allocator_env"] = {
        k: v
        for k, v in sorted(os.environ.items())
        if k.startswith("MALLOC_") or k in ("LD_PRELOAD", "GLIBC_TUNABLES")
    }
    if "cuda" in devices:
        env["gpu"] = torch.cuda.get_device_name(0)
        env["cuda"] = torch.version.cuda
        env["gpu_driver"] = _driver_version()
    return env


def _driver_version() -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout else None


def _flops(model: str, manifest: dict[str, Any]) -> int:
    from zoo._pluginmanager import get_spec
    from zoo.card import model_card

    card = model_card(get_spec(model), **manifest.get("model_args", {}))
    return int(card["measured"]["flops"])


def run_bench(settings: BenchSettings, echo: Callable[[str], None] = lambda _: None) -> BenchRun:
    """Benchmark ``settings.models`` (names or patterns); see the module docstring."""
    from zoo.bench.runtimes import Source, cuda_present
    from zoo.bench.timing import harness_overhead_ns
    from zoo.export.manifest import read_manifest

    _validate(settings)
    models = _resolve_models(settings.models)
    devices = settings.devices or (("cpu", "cuda") if cuda_present() else ("cpu",))
    threads = settings.threads or physical_cores()
    run = BenchRun(
        environment=environment(threads, devices),
        settings={
            **{k: v for k, v in asdict(settings).items() if k not in ("policy",)},
            "models": models,
            "devices": list(devices),
            "threads": threads,
            "policy": asdict(settings.policy),
            "artifacts": str(settings.artifacts) if settings.artifacts else None,
            "checkpoint": str(settings.checkpoint) if settings.checkpoint else None,
        },
        ceiling_gflops={},
        flops_per_sample={},
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    )
    run.harness_overhead_ns = harness_overhead_ns()
    for device in devices:
        echo(f"measuring the fp32 matmul ceiling on {device} ({threads} threads)")
        result = _spawn({"kind": "ceiling", "device": device, "threads": threads}, threads, 300)
        if result["status"] == "ok":
            run.ceiling_gflops[device] = result["gflops"]
            run.ceiling_detail[device] = {
                "source": result["source"],
                "measured": result["measured"],
            }
        else:
            echo(f"the ceiling on {device} could not be measured: {result['reason']}")
    formats = formats_for(settings.runtimes)
    for model in models:
        artifacts = _export_dir(model, settings, formats)
        manifest = read_manifest(artifacts)
        run.flops_per_sample[model] = _flops(model, manifest)
        # Enough of a Source to ask each runtime whether it can run here (no module needed).
        source = Source(model, artifacts, manifest, build_module=_no_module)
        for device in devices:
            _bench_model_device(run, settings, model, device, artifacts, source, threads, echo)
    run.finish()
    return run


def _bench_model_device(
    run: BenchRun,
    settings: BenchSettings,
    model: str,
    device: str,
    artifacts: Path,
    source: Any,
    threads: int,
    echo: Callable[[str], None],
) -> None:
    from zoo.bench.runtimes import get_runtime

    active = []
    for name in settings.runtimes:
        why = get_runtime(name).unavailable(source, device)
        if why:
            for batch in settings.batches:
                run.rows.append(Row(model, name, device, batch, "skipped", reason=why))
        else:
            active.append(name)
    times: dict[tuple[str, int], list[list[int]]] = {}
    extras: dict[str, dict[str, Any]] = {}
    failed: dict[str, str] = {}
    for round_ in range(settings.rounds):
        order = active if round_ % 2 == 0 else list(reversed(active))
        for name in order:
            if name in failed:
                continue
            echo(f"{model} on {device}: {name} (round {round_ + 1}/{settings.rounds})")
            job = {
                "runtime": name,
                "device": device,
                "threads": threads,
                "artifacts": str(artifacts),
                "batches": list(settings.batches),
                "seed": settings.seed,
                "weights_seed": settings.seed,
                "policy": asdict(settings.policy),
            }
            result = _spawn(job, threads, settings.timeout_s)
            if result["status"] != "ok":
                failed[name] = result["reason"]
                continue
            extra = extras.setdefault(
                name, {"cold": [], "rss": [], "growth": [], "cuda": {}, "faults": {}}
            )
            extra["cold"].append(result["cold_start_ms"])
            extra["rss"].append(result["peak_rss_mb"])
            extra["growth"].append(result["rss_growth_mb"])
            for batch in settings.batches:
                entry = result["batches"][str(batch)]
                times.setdefault((name, batch), []).append(entry["times_ns"])
                extra["faults"].setdefault(batch, []).append(entry["faults_per_call"])
                if "cuda_max_allocated_mb" in entry:
                    extra["cuda"][batch] = entry["cuda_max_allocated_mb"]
    import numpy as np

    for name in active:
        for batch in settings.batches:
            if name in failed:
                run.rows.append(Row(model, name, device, batch, "failed", reason=failed[name]))
                continue
            rounds = times[(name, batch)]
            extra = extras[name]
            spread = None
            medians = [float(np.median(r)) / 1e6 for r in rounds]
            if len(rounds) > 1:
                spread = (max(medians) - min(medians)) / float(np.median(medians))
            best = int(np.argmin(medians))
            run.rows.append(
                Row(
                    model,
                    name,
                    device,
                    batch,
                    "ok",
                    # The least disturbed round: interference from outside (measured here:
                    # whole workers 2.3x slower for tens of seconds, ASLR or not) only ever
                    # slows a process down, so the fastest round is the runtime's own cost,
                    # as timeit takes the best of its repeats.
                    latency_ms=Latency.from_ns(rounds[best]),
                    iterations=len(rounds[best]),
                    cold_start_ms=float(np.median(extra["cold"])),
                    peak_rss_mb=max(extra["rss"]),
                    rss_growth_mb=max(extra["growth"]),
                    cuda_max_allocated_mb=extra["cuda"].get(batch),
                    # Over every round: a runtime whose allocator churns in some processes
                    # and not in others is flagged even when its fastest round was lucky.
                    faults_per_call=float(np.median(extra["faults"][batch])),
                    round_spread=spread,
                    round_p50_ms=medians,
                )
            )
