"""The issue's performance targets, measured live with `zoo bench` (`make bench`).

Each group of targets is one `zoo bench` run (every runtime in its own worker process) over
the runtimes that can win that cell here; the recommended runtime is the fastest of those, so
a speed-up measured over a subset is a lower bound of the full run's. The run's JSON goes to
`.benchmarks/targets-<group>.json` and the check of every target is printed (`-s`).
These are plain tests (no timing of their own): `make bench` runs them beside the
pytest-benchmark suites.
Narrow it with ``ZOO_TARGET_GROUPS=small,bam`` (groups: small, bam, resnet18, vgg16).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from benchmarks.targets import TARGETS, Check, check_run, markdown
from zoo.bench.results import BenchRun
from zoo.bench.runner import run_bench
from zoo.bench.settings import BenchSettings
from zoo.bench.timing import TimingPolicy

ORT = ("eager", "onnxruntime", "onnxruntime-default")
QUICK = TimingPolicy(min_iters=10, min_time_s=0.5)
LARGE = TimingPolicy(warmup_iters=2, min_iters=5, min_time_s=0.5)

GROUPS: dict[str, BenchSettings] = {
    "small": BenchSettings(
        models=["lenet", "resnet", "vae", "googlenet", "lstm"],
        runtimes=(*ORT, "torchscript"),
        batches=(1,),
        rounds=2,
        policy=QUICK,
    ),
    "bam": BenchSettings(
        models=["bam"], runtimes=(*ORT, "aoti", "compile"), batches=(32,), rounds=2, policy=QUICK
    ),
    "resnet18": BenchSettings(models=["resnet18"], runtimes=ORT, batches=(1, 16), policy=LARGE),
    "vgg16": BenchSettings(models=["vgg_head"], runtimes=ORT, batches=(1, 8), policy=LARGE),
}
for _settings in GROUPS.values():
    _settings.devices = ("cpu",)  # the targets are this CPU's
CHOSEN = [g for g in os.environ.get("ZOO_TARGET_GROUPS", ",".join(GROUPS)).split(",") if g]
OUT = Path(__file__).resolve().parents[1] / ".benchmarks"


@pytest.fixture(scope="module")
def runs() -> dict[str, BenchRun]:
    done = {}
    OUT.mkdir(exist_ok=True)
    for group in CHOSEN:
        run = run_bench(GROUPS[group])
        run.save(OUT / f"targets-{group}.json")
        print(f"\n{group}:\n{markdown(check_run(run))}")
        done[group] = run
    return done


def _checks(runs: dict[str, BenchRun], group: str) -> list[Check]:
    if group not in runs:
        pytest.skip(f"group {group!r} not in ZOO_TARGET_GROUPS")
    return check_run(runs[group])


def test_every_target_has_a_group() -> None:
    covered = {(m, b) for s in GROUPS.values() for m in s.models for b in s.batches}
    assert {(t.model, t.batch) for t in TARGETS} <= covered


@pytest.mark.parametrize("group", list(GROUPS))
def test_targets(runs: dict[str, BenchRun], group: str) -> None:
    checks = _checks(runs, group)
    missed = [f"{c.what}: {c.measured}" for c in checks if not c.passed]
    assert not missed, "\n".join(missed)
