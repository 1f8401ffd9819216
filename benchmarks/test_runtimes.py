"""Inference latency per (model, runtime, batch size) with pytest-benchmark, through the
same runtime adapters as `zoo bench`.

pytest-benchmark runs every test in one process, so each test loads its runtime, times it and
drops it before the next (no other runtime's threads alive while one is timed); `zoo bench`
goes further and gives each runtime a fresh process. pytest-benchmark has no percentile
columns: p90 and p99 go to ``extra_info`` (in the JSON that `make bench` saves).

Narrow it with environment variables: ``ZOO_BENCH_MODELS=lenet,vae``,
``ZOO_BENCH_RUNTIMES=eager,onnxruntime``, ``ZOO_BENCH_BATCHES=1,32`` (defaults: every
registered model, every runtime, 1,8,32).
"""

from __future__ import annotations

import gc
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import zoo
from benchmarks.targets import HARNESS_OVERHEAD_NS
from zoo._pluginmanager import get_plugins
from zoo.bench.artifacts import export_dir, formats_for
from zoo.bench.settings import BenchSettings
from zoo.bench.timing import harness_overhead_ns
from zoo.bench.worker import inputs_of, source_of
from zoo.export.manifest import read_manifest


def _env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    return [v for v in value.split(",") if v] if value else default


MODELS = _env_list("ZOO_BENCH_MODELS", zoo.list_models())
RUNTIMES = _env_list("ZOO_BENCH_RUNTIMES", get_plugins().runtimes.names())
BATCHES = [int(b) for b in _env_list("ZOO_BENCH_BATCHES", ["1", "8", "32"])]
THREADS = int(os.environ.get("ZOO_BENCH_THREADS", "0")) or None


@pytest.fixture(scope="session")
def exports() -> dict[str, Path]:
    settings = BenchSettings(models=MODELS)
    return {m: export_dir(m, settings, formats_for(RUNTIMES)) for m in MODELS}


def test_harness_overhead_is_under_5_microseconds(benchmark: Any) -> None:
    """The issue's target for the harness's own cost per timed call (see timing.py), timed
    by pytest-benchmark as well."""
    benchmark.group = "harness"
    overhead = benchmark.pedantic(harness_overhead_ns, rounds=3, iterations=1)
    benchmark.extra_info["harness_overhead_ns"] = overhead
    assert overhead < HARNESS_OVERHEAD_NS


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("model", MODELS)
def test_latency(
    benchmark: Any, exports: dict[str, Path], model: str, runtime: str, batch: int
) -> None:
    threads = THREADS or torch.get_num_threads()
    torch.set_num_threads(threads)
    manifest = read_manifest(exports[model])
    source = source_of(exports[model], manifest)
    adapter = get_plugins().runtimes.get(runtime)
    why = adapter.unavailable(source, "cpu")
    if why:
        pytest.skip(why)  # reported as skipped with the reason, as zoo bench does
    with torch.inference_mode():
        session = adapter.load(source, "cpu", threads)
        prepared = session.prepare(inputs_of(manifest, (batch,), 0)[batch])
        run, sync = session.run, session.sync

        def call() -> None:
            run(prepared)
            sync()

        benchmark.group = f"{model} batch {batch}"
        benchmark.pedantic(call, warmup_rounds=10, rounds=50, iterations=1)
    data = np.asarray(benchmark.stats.stats.data) * 1e3
    benchmark.extra_info.update(
        p90_ms=float(np.percentile(data, 90)),
        p99_ms=float(np.percentile(data, 99)),
        threads=threads,
        batch=batch,
        samples_per_s=batch / float(np.median(data) / 1e3),
    )
    session.close()
    del session
    gc.collect()
