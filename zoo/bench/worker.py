"""One runtime, one model, one device, in a process of its own.

``python -m zoo.bench.worker`` reads a job (JSON) on stdin and prints one JSON line: the
cold start, memory and the per-call times of every batch size. The parent sets the thread
count in the environment before this process imports torch, so the thread pools are sized
once; nothing else runs here, so no other runtime's threads compete with the one timed
(measured-pitfalls: in one process, on 2 cores, they distort small models several-fold).
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["run_job"]


def _rss_mb() -> float:
    import psutil

    return float(psutil.Process().memory_info().rss) / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _page_faults() -> int:
    """Page faults of this process so far (every thread; minor and major). A call that
    faults in fresh pages each time is paying for the memory allocator, not for the model:
    glibc returns large freed blocks to the system and maps them again on the next call."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return int(usage.ru_minflt + usage.ru_majflt)


def _source(job: dict[str, Any]) -> Any:
    import torch

    from zoo.bench.runtimes import Source
    from zoo.export.manifest import read_manifest

    artifacts = Path(job["artifacts"])
    manifest = read_manifest(artifacts)

    def build_module() -> torch.nn.Module:
        from zoo._pluginmanager import get_spec
        from zoo.export.bundle import make_bundle

        spec = get_spec(manifest["model"])
        torch.manual_seed(job.get("weights_seed", 0))  # zoo bench exports with this seed too
        model = spec.build(**manifest.get("model_args", {})).eval()
        weights = manifest.get("weights", "")
        if weights and Path(weights).is_dir():
            from zoo.checkpoint import load_checkpoint

            load_checkpoint(weights, tag="best").load_into(model, spec.name)
        postprocess = manifest.get("postprocess", "none")
        top_k = 5
        if isinstance(postprocess, dict):
            postprocess, top_k = postprocess["kind"], postprocess["k"]
        bundle, _, _ = make_bundle(
            spec, model, raw=manifest.get("raw", False), postprocess=postprocess, top_k=top_k
        )
        return bundle

    return Source(
        model=manifest["model"], artifacts=artifacts, manifest=manifest, build_module=build_module
    )


def _example(manifest: dict[str, Any], batch: int, seed: int) -> Any:
    from zoo.registry import InputSpec

    entry = manifest["inputs"][0]
    spec = InputSpec(
        tuple(entry["shape"][1:]),
        dtype=entry["dtype"],
        value_range=tuple(entry["value_range"]),
        name=entry["name"],
    )
    return spec.example(batch, seed=seed)


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    import torch

    threads = int(job["threads"])
    torch.set_num_threads(threads)
    from zoo.bench.runtimes import get_runtime
    from zoo.bench.timing import TimingPolicy, timed_calls, warm_up

    runtime = get_runtime(job["runtime"])
    device = job["device"]
    policy = TimingPolicy(**job["policy"])
    source = _source(job)
    inputs = {b: _example(source.manifest, b, job.get("seed", 0)) for b in job["batches"]}
    import_s = time.perf_counter() - started

    result: dict[str, Any] = {"import_s": import_s, "batches": {}}
    with torch.inference_mode():
        rss_before = _rss_mb()
        t0 = time.perf_counter_ns()
        session = runtime.load(source, device, threads)
        first = session.prepare(inputs[job["batches"][0]])
        session.run(first)
        session.sync()
        result["cold_start_ms"] = (time.perf_counter_ns() - t0) / 1e6
        for batch in job["batches"]:
            prepared = session.prepare(inputs[batch])
            if device == "cuda":
                torch.cuda.reset_peak_memory_stats()
            run = session.run
            call = lambda: run(prepared)  # noqa: B023, E731
            warm_up(call, session.sync, policy)
            faults = _page_faults()
            times = timed_calls(call, session.sync, policy)
            entry: dict[str, Any] = {
                "times_ns": times,
                "faults_per_call": (_page_faults() - faults) / len(times),
            }
            if device == "cuda":
                entry["cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
            result["batches"][str(batch)] = entry
        # What the loaded runtime holds after its calls (the process's peak also counts the
        # imports, which are the same for every torch runtime).
        result["rss_growth_mb"] = max(0.0, _rss_mb() - rss_before)
        session.close()
    result["peak_rss_mb"] = _peak_rss_mb()
    return result


#: Square GEMM sizes tried for the ceiling: small ones stay in cache and run fastest on a
#: CPU (measured here: ORT 512 231 GFLOP/s, 2048 200; torch.mm 512 207, 2048 197).
CPU_SIZES = (512, 1024, 2048)
CUDA_SIZES = (4096, 8192)


def _best_gflops(call: Any, n: int, seconds: float, sync: Any = lambda: None) -> float:
    for _ in range(3):
        call()
    sync()
    best = float("inf")
    deadline = time.perf_counter() + seconds
    runs = 0
    while runs < 3 or time.perf_counter() < deadline:
        t0 = time.perf_counter()
        call()
        sync()
        best = min(best, time.perf_counter() - t0)
        runs += 1
    return 2 * n**3 / best / 1e9


def _ort_matmul(n: int, threads: int) -> Any:
    """A session running one MatMul with a constant right-hand side (packed once by MLAS,
    as a model's weights are), or None without onnxruntime."""
    try:
        import numpy as np
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        return None
    rng = np.random.default_rng(0)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])],
        "ceiling",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n])],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])],
        initializer=[numpy_helper.from_array(rng.standard_normal((n, n), np.float32), "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    # Its threads sleep between calls instead of spinning, so they leave the cores to
    # torch's matmuls measured after these.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    feed = {"a": rng.standard_normal((n, n), np.float32)}
    return lambda: session.run(None, feed)


def measure_ceiling(device: str, threads: int, seconds: float = 3.0) -> dict[str, Any]:
    """This device's fp32 matmul ceiling: the best GFLOP/s of square matmuls over a few
    sizes, with torch (``torch.mm``: MKL or cuBLAS, TF32 off) and, on the CPU, ONNX Runtime's
    MLAS, whichever is faster here. Returns the best and every measurement behind it."""
    import torch

    torch.set_num_threads(threads)
    sizes = CPU_SIZES if device == "cpu" else CUDA_SIZES
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    libraries = 2 if device == "cpu" else 1
    share = seconds / (len(sizes) * libraries)
    measured: dict[str, float] = {}
    if device == "cpu":  # ORT first, before torch's thread pool has ever run
        for n in sizes:
            call = _ort_matmul(n, threads)
            if call is not None:
                measured[f"onnxruntime MatMul {n}"] = _best_gflops(call, n, share)
    for n in sizes:
        a = torch.randn(n, n, device=device)
        b = torch.randn(n, n, device=device)
        out = torch.empty(n, n, device=device)
        measured[f"torch.mm {n}"] = _best_gflops(
            lambda: torch.mm(a, b, out=out),  # noqa: B023
            n,
            share,
            sync,
        )
    source = max(measured, key=lambda k: measured[k])
    return {"gflops": measured[source], "source": source, "measured": measured}


def main() -> None:
    job = json.loads(sys.stdin.read())
    try:
        if job.get("kind") == "ceiling":
            output: dict[str, Any] = measure_ceiling(job["device"], int(job["threads"]))
        else:
            output = run_job(job)
        output["status"] = "ok"
    except Exception as exc:  # reported as a failed row, not a crash of zoo bench
        output = {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"}
    sys.stdout.write(json.dumps(output) + "\n")


if __name__ == "__main__":
    main()
