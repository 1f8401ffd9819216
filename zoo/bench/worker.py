"""One runtime, one model, one device, in a process of its own.

``python -m zoo.bench.worker`` reads a :class:`Job` (or a :class:`CeilingJob`) as JSON on
stdin and prints its result as one JSON line: the cold start, memory and the per-call times of
every batch size (:class:`JobResult`), or the device's matmul ceiling (:class:`CeilingResult`).
The parent sets the thread count in the environment before this process imports torch, so the
thread pools are sized once; nothing else runs here, so no other runtime's threads compete
with the one timed (measured-pitfalls: in one process, on 2 cores, they distort small models
several-fold). That is also why this module imports torch only inside the functions that run
in the worker: the parent imports it for the records alone.
"""

from __future__ import annotations

import functools
import json
import resource
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import psutil

from zoo import _json as js
from zoo.bench.scenarios import ServerPolicy
from zoo.bench.timing import TimingPolicy, timed_calls, warm_up
from zoo.registry import InputSpec

if TYPE_CHECKING:
    import torch

    from zoo.export.manifest import Manifest
    from zoo.runtimes import Runtime, Source

__all__ = ["CeilingJob", "CeilingResult", "Job", "JobResult", "run_job"]


@dataclass(frozen=True)
class Job:
    """Time one runtime on one export, on one device, at several batch sizes."""

    runtime: str
    device: str
    threads: int
    #: The export directory (its manifest and files were verified by the parent).
    artifacts: str
    batches: tuple[int, ...]
    seed: int = 0
    policy: TimingPolicy = field(default_factory=TimingPolicy)
    #: A reduced-precision variant of the runtime's format to run instead (``onnx-int8``
    #: for ``onnxruntime``), or None for the format itself.
    variant: str | None = None
    #: ``single-stream``, ``offline`` or ``server`` (``zoo.bench.scenarios``); offline and
    #: server load ``sessions`` sessions of ``threads`` threads each.
    scenario: str = "single-stream"
    sessions: int = 1
    #: server: the p99 bound of the search, and how each rate is measured.
    latency_bound_ms: float = 100.0
    server: ServerPolicy = field(default_factory=ServerPolicy)
    #: On CUDA: let fp32 convolutions and matrix products run in TF32 (off: fp32 is fp32).
    tf32: bool = False
    #: The server scenario over the wire: sessions are clients of this v2 server
    #: (``HOST:PORT``) asking for ``endpoint_model`` (``zoo.bench.wire``); None: in-process.
    endpoint: str | None = None
    endpoint_model: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "kind": "bench", "batches": list(self.batches)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Job:
        policy = js.obj(data.get("policy", {}), "policy")
        return cls(
            runtime=js.string(data.get("runtime"), "runtime"),
            device=js.string(data.get("device"), "device"),
            threads=js.integer(data.get("threads"), "threads"),
            artifacts=js.string(data.get("artifacts"), "artifacts"),
            batches=tuple(js.integer(b, "batches") for b in js.seq(data["batches"], "batches")),
            seed=js.integer(data.get("seed", 0), "seed"),
            policy=TimingPolicy(**policy),
            variant=None if data.get("variant") is None else js.string(data["variant"], "variant"),
            scenario=js.string(data.get("scenario", "single-stream"), "scenario"),
            sessions=js.integer(data.get("sessions", 1), "sessions"),
            latency_bound_ms=js.number(data.get("latency_bound_ms", 100.0), "latency_bound_ms"),
            server=ServerPolicy(**js.obj(data.get("server", {}), "server")),
            tf32=js.boolean(data.get("tf32", False), "tf32"),
            endpoint=None
            if data.get("endpoint") is None
            else js.string(data["endpoint"], "endpoint"),
            endpoint_model=None
            if data.get("endpoint_model") is None
            else js.string(data["endpoint_model"], "endpoint_model"),
        )


@dataclass(frozen=True)
class BatchTimes:
    """The timed calls at one batch size."""

    times_ns: tuple[int, ...]
    #: Page faults of the process per timed call.
    faults_per_call: float
    #: ``torch.cuda.max_memory_allocated`` during these calls (CUDA only).
    cuda_max_allocated_mb: float | None = None


@dataclass(frozen=True)
class JobResult:
    """What a :class:`Job` measured, or why it failed (``status`` ``failed``)."""

    status: str
    reason: str = ""
    #: Load (or session creation, or compilation) plus the first call.
    cold_start_ms: float = 0.0
    #: Importing torch, zoo and the runtime's libraries, before loading.
    import_s: float = 0.0
    peak_rss_mb: float = 0.0
    rss_growth_mb: float = 0.0
    batches: Mapping[int, BatchTimes] = field(default_factory=dict)
    #: offline: batch -> :class:`~zoo.bench.scenarios.OfflinePoint` as JSON; server: the
    #: :class:`~zoo.bench.scenarios.ServerSearch` as JSON. Empty in single-stream.
    scenario: Mapping[str, Any] = field(default_factory=dict)
    #: On CUDA, whether fp32 convolutions and matrix products could run in TF32 while timed
    #: (None on the CPU).
    tf32: bool | None = None

    @classmethod
    def failure(cls, reason: str) -> JobResult:
        return cls("failed", reason)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["batches"] = {str(b): asdict(t) for b, t in self.batches.items()}
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobResult:
        if js.string(data.get("status"), "status") != "ok":
            return cls.failure(js.string(data.get("reason", "no reason given"), "reason"))
        batches = {}
        for batch, entry in js.obj(data.get("batches"), "batches").items():
            entry = js.obj(entry, f"batch {batch}")
            cuda = entry.get("cuda_max_allocated_mb")
            batches[int(batch)] = BatchTimes(
                times_ns=tuple(
                    js.integer(t, "times_ns") for t in js.seq(entry.get("times_ns"), "times_ns")
                ),
                faults_per_call=js.number(entry.get("faults_per_call"), "faults_per_call"),
                cuda_max_allocated_mb=None if cuda is None else js.number(cuda, "cuda memory"),
            )
        return cls(
            status="ok",
            cold_start_ms=js.number(data.get("cold_start_ms"), "cold_start_ms"),
            import_s=js.number(data.get("import_s"), "import_s"),
            peak_rss_mb=js.number(data.get("peak_rss_mb"), "peak_rss_mb"),
            rss_growth_mb=js.number(data.get("rss_growth_mb"), "rss_growth_mb"),
            batches=batches,
            scenario=js.obj(data.get("scenario", {}), "scenario"),
            tf32=None if data.get("tf32") is None else js.boolean(data["tf32"], "tf32"),
        )


@dataclass(frozen=True)
class CeilingJob:
    """Measure the matmul ceiling of a device in one precision with the run's threads."""

    device: str
    threads: int
    precision: str = "fp32"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "kind": "ceiling"}


@dataclass(frozen=True)
class CeilingResult:
    status: str
    reason: str = ""
    gflops: float = 0.0
    #: The fastest matmul, and every measurement: matmul -> GFLOP/s.
    source: str = ""
    measured: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def failure(cls, reason: str) -> CeilingResult:
        return cls("failed", reason)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CeilingResult:
        if js.string(data.get("status"), "status") != "ok":
            return cls.failure(js.string(data.get("reason", "no reason given"), "reason"))
        measured = js.obj(data.get("measured"), "measured")
        return cls(
            status="ok",
            gflops=js.number(data.get("gflops"), "gflops"),
            source=js.string(data.get("source"), "source"),
            measured={k: js.number(v, k) for k, v in measured.items()},
        )


def _rss_mb() -> float:
    return float(psutil.Process().memory_info().rss) / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _page_faults() -> int:
    """Page faults of this process so far (every thread; minor and major). A call that
    faults in fresh pages each time is paying for the memory allocator, not for the model:
    glibc returns large freed blocks to the system and maps them again on the next call."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return int(usage.ru_minflt + usage.ru_majflt)


def source_of(directory: Path, manifest: Manifest, variant: str | None = None) -> Source:
    """The export as a runtime sees it; eager and torch.compile rebuild its module with the
    weights the export saved, so every runtime times the same model. With ``variant`` (a
    reduced-precision format), its artifact stands in for its fp32 format's: a runtime of
    ``onnx`` runs ``model.int8.onnx``."""
    from safetensors.torch import load_file

    from zoo._pluginmanager import get_plugins
    from zoo.export.bundle import make_bundle
    from zoo.export.manifest import WEIGHTS
    from zoo.runtimes import Source

    def build_module() -> torch.nn.Module:
        spec = get_plugins().models.get(manifest.model)
        model = spec.build(**manifest.model_args).eval()
        model.load_state_dict(load_file(str(directory / WEIGHTS)))
        bundle, _, _ = make_bundle(
            spec,
            model,
            raw=manifest.raw,
            postprocess=manifest.postprocess,
            top_k=manifest.top_k or 5,
        )
        return bundle

    artifacts = {fmt: directory / file for fmt, file in manifest.artifacts().items()}
    if variant is not None:
        record = manifest.formats.get(variant)
        family = get_plugins().formats.get(variant).variant_of
        if record is None or record.artifact is None or family is None:
            raise ValueError(f"the export has no {variant} artifact")
        artifacts = {family: directory / record.artifact}
    return Source(
        model=manifest.model,
        directory=directory,
        artifacts=artifacts,
        failed=manifest.failures(),
        build_module=build_module,
    )


def inputs_of(manifest: Manifest, batches: tuple[int, ...], seed: int) -> dict[int, torch.Tensor]:
    """The same seeded input tensors for every runtime, one per batch size."""
    entry = manifest.inputs[0]
    spec = InputSpec(
        entry.shape,
        dtype=entry.dtype,
        value_range=entry.value_range or (0.0, 1.0),
        dynamic_axes=entry.dynamic_axes,
        name=entry.name,
    )
    return {b: spec.example(b, seed=seed) for b in batches}


def run_job(job: Job) -> JobResult:
    """Time ``job``; on CUDA with the TF32 setting it asks for (which the result records)
    and cuDNN's benchmark mode."""
    if job.device != "cuda":
        return _run_job(job)
    from zoo.runtimes import strict_fp32, tf32_state

    strict_fp32(job.tf32)
    import torch

    # cuDNN times its algorithms on the first call of each shape and keeps the fastest, as
    # a deployment with fixed batch sizes would (the warm-up calls pay for it).
    torch.backends.cudnn.benchmark = True
    result = _run_job(job)
    return replace(result, tf32=tf32_state()) if result.status == "ok" else result


def _run_job(job: Job) -> JobResult:
    started = time.perf_counter()
    import torch

    torch.set_num_threads(job.threads)
    from zoo._pluginmanager import get_plugins
    from zoo.export.manifest import read_manifest

    runtime: Runtime
    if job.endpoint is not None:  # the sessions are clients of a v2 server
        from zoo.bench.wire import Endpoint, WireRuntime

        runtime = WireRuntime(Endpoint(job.endpoint, job.endpoint_model or ""))
    else:
        runtime = get_plugins().runtimes.get(job.runtime)
    directory = Path(job.artifacts)
    manifest = read_manifest(directory)  # checked against its files by the parent
    source = source_of(directory, manifest, job.variant)
    inputs = inputs_of(manifest, job.batches, job.seed)
    import_s = time.perf_counter() - started

    if job.scenario != "single-stream":
        return _run_scenario(job, runtime, source, inputs, import_s)
    batches: dict[int, BatchTimes] = {}
    with torch.inference_mode():
        rss_before = _rss_mb()
        t0 = time.perf_counter_ns()
        try:
            session = runtime.load(source, job.device, job.threads)
        except Exception as exc:
            return _load_failure(job, runtime, source, exc)
        first = session.prepare(inputs[job.batches[0]])
        session.run(first)
        session.sync()
        cold_start_ms = (time.perf_counter_ns() - t0) / 1e6
        for batch in job.batches:
            prepared = session.prepare(inputs[batch])
            if job.device == "cuda":
                torch.cuda.reset_peak_memory_stats()
            run = session.run
            call = lambda: run(prepared)  # noqa: B023, E731
            warm_up(call, session.sync, job.policy)
            faults = _page_faults()
            times = timed_calls(call, session.sync, job.policy)
            batches[batch] = BatchTimes(
                times_ns=tuple(times),
                faults_per_call=(_page_faults() - faults) / len(times),
                cuda_max_allocated_mb=(
                    torch.cuda.max_memory_allocated() / 2**20 if job.device == "cuda" else None
                ),
            )
        # What the loaded runtime holds after its calls (the process's peak also counts the
        # imports, which are the same for every torch runtime).
        rss_growth_mb = max(0.0, _rss_mb() - rss_before)
        session.close()
    return JobResult(
        status="ok",
        cold_start_ms=cold_start_ms,
        import_s=import_s,
        peak_rss_mb=_peak_rss_mb(),
        rss_growth_mb=rss_growth_mb,
        batches=batches,
    )


def _load_failure(job: Job, runtime: Any, source: Source, exc: Exception) -> JobResult:
    """The failed row of a runtime whose ``load`` raised, naming the file it read."""
    from zoo.errors import one_line
    from zoo.export.manifest import WEIGHTS

    read = source.artifact(runtime.format) if runtime.format else source.directory / WEIGHTS
    return JobResult.failure(f"{read}: does not load in {job.runtime}: {one_line(exc)}")


def _run_scenario(
    job: Job, runtime: Any, source: Source, inputs: dict[int, torch.Tensor], import_s: float
) -> JobResult:
    """The offline or server scenario with ``job.sessions`` sessions of ``job.threads``
    threads each (``zoo.bench.scenarios``)."""
    import torch

    from zoo.bench import scenarios

    rss_before = _rss_mb()
    t0 = time.perf_counter_ns()
    sessions = []
    try:
        for _ in range(job.sessions):
            sessions.append(runtime.load(source, job.device, job.threads))
    except Exception as exc:
        return _load_failure(job, runtime, source, exc)
    with torch.inference_mode():
        first = [s.prepare(inputs[job.batches[0]]) for s in sessions]
        for session, x in zip(sessions, first, strict=True):
            session.run(x)
            session.sync()
    cold_start_ms = (time.perf_counter_ns() - t0) / 1e6
    result: dict[str, Any] = {}
    policy = job.policy
    if job.scenario == "offline":
        for batch in job.batches:
            with torch.inference_mode():
                prepared = [s.prepare(inputs[batch]) for s in sessions]
                for session, x in zip(sessions, prepared, strict=True):
                    warm_up(functools.partial(session.run, x), session.sync, policy)
            point = scenarios.run_offline(
                sessions, prepared, batch, policy.min_iters, policy.min_time_s
            )
            result[str(batch)] = asdict(point)
    else:  # server: requests of one sample
        with torch.inference_mode():
            prepared = [s.prepare(inputs[1]) for s in sessions]
            for session, x in zip(sessions, prepared, strict=True):
                warm_up(functools.partial(session.run, x), session.sync, policy)
            alone = timed_calls(
                lambda: sessions[0].run(prepared[0]),
                sessions[0].sync,
                TimingPolicy(min_iters=policy.min_iters, min_time_s=min(policy.min_time_s, 0.5)),
            )
        search = scenarios.search_server(
            sessions,
            prepared,
            job.latency_bound_ms,
            job.server,
            job.seed,
            alone_ms=float(np.median(alone)) / 1e6,
            # Clients over the wire: the server's parallelism is its own (one to start from).
            parallel=1 if job.endpoint is not None else None,
        )
        result = search.to_dict()
    rss_growth_mb = max(0.0, _rss_mb() - rss_before)
    for session in sessions:
        session.close()
    return JobResult(
        status="ok",
        cold_start_ms=cold_start_ms,
        import_s=import_s,
        peak_rss_mb=_peak_rss_mb(),
        rss_growth_mb=rss_growth_mb,
        scenario=result,
    )


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


def measure_ceiling(
    device: str, threads: int, seconds: float = 3.0, precision: str = "fp32"
) -> CeilingResult:
    """This device's matmul ceiling: the best GFLOP/s (GOP/s for int8) of square matmuls
    over a few sizes. fp32: torch (``torch.mm``: MKL or cuBLAS, TF32 off) and, on the CPU,
    ONNX Runtime's MLAS, whichever is faster here; bf16 and fp16: ``torch.mm`` on such
    tensors (oneDNN: AMX or AVX512-BF16/FP16 where the CPU has them; tensor cores on a
    GPU); int8: ``torch._int_mm`` (int8 x int8 -> int32, VNNI or AMX-INT8). Returns the
    best and every measurement behind it."""
    import torch

    if precision != "fp32":
        return _reduced_ceiling(device, threads, seconds, precision)

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
    return CeilingResult("ok", gflops=measured[source], source=source, measured=measured)


def _reduced_ceiling(device: str, threads: int, seconds: float, precision: str) -> CeilingResult:
    import torch

    torch.set_num_threads(threads)
    sizes = CPU_SIZES if device == "cpu" else CUDA_SIZES
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    share = seconds / len(sizes)
    measured: dict[str, float] = {}
    for n in sizes:
        if precision in ("bf16", "fp16"):
            dtype = torch.bfloat16 if precision == "bf16" else torch.float16
            a = torch.randn(n, n, device=device, dtype=dtype)
            b = torch.randn(n, n, device=device, dtype=dtype)
            measured[f"torch.mm {precision} {n}"] = _best_gflops(
                lambda a=a, b=b: torch.mm(a, b),
                n,
                share,
                sync,
            )
        else:
            a = torch.randint(-128, 127, (n, n), device=device, dtype=torch.int8)
            b = torch.randint(-128, 127, (n, n), device=device, dtype=torch.int8)
            measured[f"torch._int_mm int8 {n}"] = _best_gflops(
                lambda a=a, b=b: torch._int_mm(a, b),
                n,
                share,
                sync,
            )
    source = max(measured, key=lambda k: measured[k])
    return CeilingResult("ok", gflops=measured[source], source=source, measured=measured)


def main() -> None:
    data = json.loads(sys.stdin.read())
    output: JobResult | CeilingResult
    try:
        if data.get("kind") == "ceiling":
            output = measure_ceiling(
                data["device"], int(data["threads"]), precision=data.get("precision", "fp32")
            )
        else:
            output = run_job(Job.from_dict(data))
    except Exception as exc:  # reported as a failed row, not a crash of zoo bench
        from zoo.errors import one_line  # here: the worker's imports are timed

        output = JobResult.failure(one_line(exc))
    sys.stdout.write(json.dumps(output.to_dict()) + "\n")


if __name__ == "__main__":
    main()
