"""The worker processes of ``zoo bench`` and ``zoo bench-train``: each starts fresh, with its
thread count set before torch starts, and the record of the machine they ran on."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from typing import Any

import psutil
import torch

from zoo._cpu import cpu_description
from zoo._process import ChildFailed, run_json_child
from zoo._version import __version__

__all__ = ["environment", "physical_cores", "spawn_worker"]


def physical_cores() -> int:
    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def spawn_worker(
    payload: dict[str, Any], threads: int, timeout: float, module: str = "zoo.bench.worker"
) -> dict[str, Any]:
    """Run the worker ``python -m module`` on ``payload`` (JSON on its stdin) with its thread
    count set before torch starts; its result as JSON, or a failure saying how it died."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    command = [sys.executable, "-m", module]
    try:
        result = run_json_child(command, input=json.dumps(payload), env=env, timeout=timeout)
    except ChildFailed as exc:
        return {"status": "failed", "reason": str(exc)}
    return result if isinstance(result, dict) else {"status": "failed", "reason": "no result"}


def environment(threads: int, devices: tuple[str, ...]) -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu, flags = cpu_description()
    env: dict[str, Any] = {
        "cpu": cpu,
        "cpu_flags": flags,
        "physical_cores": psutil.cpu_count(logical=False),
        "logical_cores": psutil.cpu_count(logical=True),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "threads": threads,
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    try:
        import onnxruntime  # here: an optional library, recorded where installed

        env["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        env["onnxruntime"] = None
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
