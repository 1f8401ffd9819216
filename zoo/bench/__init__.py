"""``zoo bench``: latency across runtimes (eager, TorchScript, ONNX Runtime, .pt2,
AOTInductor, torch.compile, and any plugin's) on CPU and GPU.

- the runtimes come from the runtime registry (``zoo.runtimes``; zoo's own in ``zoo/plugins/``).
- ``timing.py``: warm-up, then per-call ``perf_counter_ns`` until a minimum count and time.
- ``worker.py``: one runtime in a fresh process (thread pools never compete); its job and
  result records.
- ``runner.py``: the run: the matmul ceiling, then rounds of workers per (model, device)
  until each entry settles, then its rows. Its parts:
  ``settings.py`` (``BenchSettings`` and the bounds checked before anything runs),
  ``artifacts.py`` (``--artifacts`` checked, or zoo's cached export),
  ``processes.py`` (the worker processes and the record of the machine; ``bench-train``'s too),
  ``stability.py`` (when rounds agree, and whether a row can be trusted),
  ``rows.py`` (the rows of each scenario from the rounds).
- ``scenarios.py``: the offline and server scenarios, on the sessions any runtime loads.
- ``load.py``: what other processes took of the CPUs while a worker ran (the stability rule).
- ``results.py``: rows and the JSON document (schema ``zoo-bench/2``, ``schema.json``).
- ``report.py``: terminal table, ``--compare`` regressions; ``plot.py``: the ``--plot`` figure.
- ``training.py`` and ``train_worker.py``: ``zoo bench-train``, training throughput of the
  hand-written loop of PyTorch's tutorials, the trainer and its speed options, each variant in
  its own process.

Nothing here is imported by ``import zoo``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BenchSettings", "run_bench"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from zoo.bench import runner

        return getattr(runner, name)
    raise AttributeError(f"module 'zoo.bench' has no attribute {name!r}")
