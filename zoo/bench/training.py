"""``zoo bench-train``: training throughput of a hand-written loop (as PyTorch's tutorials
write it), zoo's trainer with its defaults, and the trainer with each speed option, measured
in one run.

Every variant of every round runs in a fresh worker process (``zoo.bench.train_worker``) with
the thread count set before torch starts, the same model, data, batch size and seed; the
variants' order is reversed every other round. A worker trains warm-up epochs (not timed:
compilation, allocator growth) then timed epochs; a round's figure is the median samples/s of
its timed epochs, a variant's the median of its quiet rounds, with the spread of those rounds
((max - min) / median) and the ratio to the hand loop's figure.

Each round records the load average when its worker started and the share of the CPUs that
other processes used while it ran (system-wide busy time, hypervisor steal included, less the
worker's own CPU time): on a shared machine the load average also counts this benchmark's
own workers, and it is the others' share that says whether a figure was disturbed. A round
is quiet when the others used at most :data:`BUSY_SHARE` of the CPUs; disturbed rounds stay
in the JSON but out of the figures, unless no round of a variant was quiet, which the table
and a warning then say. Measured here: with another process busy on one of the 2 cores,
PyTorch's OpenMP threads stall for whole scheduler slices and a round runs 10 to 60 times
slower, so a median over disturbed rounds would be noise.
"""

from __future__ import annotations

import datetime as _dt
import difflib
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from zoo._cpu import native_bf16
from zoo._pluginmanager import get_plugins
from zoo._table import markdown_table as _markdown
from zoo.bench.load import BUSY_SHARE, Others, load_average, wait_for_quiet
from zoo.bench.outputs import JsonDocument
from zoo.bench.processes import environment, physical_cores, spawn_worker
from zoo.bench.train_worker import HAND, TrainJob, TrainJobResult
from zoo.errors import UsageError
from zoo.train.speed import resolve_precision

__all__ = [
    "BUSY_SHARE",
    "DEFAULT_VARIANTS",
    "SCHEMA",
    "TRAINER",
    "Round",
    "TrainBenchRun",
    "TrainBenchSettings",
    "Variant",
    "markdown_table",
    "parse_variant",
    "run_train_bench",
]

SCHEMA = "zoo-bench-train/1"
#: The variant name of zoo's trainer with its defaults.
TRAINER = "trainer"
#: The speed options a variant combines with ``+``: name -> (TrainConfig option, value).
OPTIONS: dict[str, tuple[str, Any]] = {
    "fp32": ("precision", "fp32"),
    "bf16": ("precision", "bf16"),
    "fp16": ("precision", "fp16"),
    "channels-last": ("channels_last", True),
    "compile": ("compile", True),
}
DEFAULT_VARIANTS = (
    HAND,
    TRAINER,
    "bf16",
    "channels-last",
    "compile",
    "bf16+channels-last",
    "channels-last+compile",
)


def parse_variant(name: str) -> dict[str, Any] | None:
    """The trainer options of variant ``name``: None for the hand loop, ``{}`` for the
    trainer's defaults, else the options joined by ``+`` (``bf16+channels-last``).
    UsageError, in one line with the closest valid name, for anything else."""
    if name == HAND:
        return None
    if name == TRAINER:
        return {}
    options: dict[str, Any] = {}
    for part in name.split("+"):
        if part not in OPTIONS:
            names = [HAND, TRAINER, *OPTIONS]
            close = difflib.get_close_matches(part, names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UsageError(
                f"--variants: unknown variant {name!r}{hint}; a variant is {HAND}, {TRAINER}, "
                f"or options joined by + from {', '.join(OPTIONS)}"
            )
        option, value = OPTIONS[part]
        if option in options:
            raise UsageError(f"--variants: {name!r} sets {option} twice; give one of them")
        options[option] = value
    return options


@dataclass
class TrainBenchSettings:
    model: str
    #: Empty: the model's task's default dataset (mnist5k for image classifiers).
    data: str = ""
    batch_size: int = 64
    #: Timed epochs per round, after ``warmup_epochs`` untimed ones.
    epochs: int = 3
    warmup_epochs: int = 1
    rounds: int = 3
    #: None: :data:`DEFAULT_VARIANTS`.
    variants: tuple[str, ...] | None = None
    #: None: the physical cores.
    threads: int | None = None
    #: ``auto``: CUDA where torch sees one, else the CPU.
    device: str = "auto"
    seed: int = 0
    #: Before each worker, wait up to this long for other processes to use less than
    #: :data:`BUSY_SHARE` of the CPUs (sampled over a second); 0: start at once.
    wait_quiet_s: float = 0.0
    #: A worker running longer than this is killed and its variant fails.
    timeout_s: float = 1800


@dataclass
class Round:
    """One variant's worker process in one round."""

    pid: int
    #: Samples per second of each timed epoch, and their median.
    samples_per_s: list[float]
    median: float
    first_epoch_s: float
    final_loss: float
    #: The 1-, 5- and 15-minute load averages when the worker started.
    load_avg: list[float]
    #: The share of all CPUs that other processes used while the worker ran.
    others_cpu_share: float
    wall_s: float
    #: Seconds spent waiting for a quiet machine before the worker started.
    waited_s: float = 0.0
    #: When the worker started, in seconds since the run did (the order of the workers).
    start_s: float = 0.0


@dataclass
class Variant:
    name: str
    #: The trainer's options; None for the hand loop.
    options: dict[str, Any] | None
    status: str = "ok"
    reason: str = ""
    rounds: list[Round] = field(default_factory=list)
    #: The median of the quiet rounds' medians (samples/s; of every round if none was quiet).
    samples_per_s: float | None = None
    #: (max - min) / median of the same rounds' medians.
    spread: float | None = None
    #: ``samples_per_s`` over the hand loop's.
    vs_hand: float | None = None
    #: Rounds during which other processes used at most BUSY_SHARE of the CPUs.
    quiet_rounds: int = 0

    @property
    def disturbed(self) -> bool:
        """No round was quiet: the figure comes from disturbed rounds."""
        return bool(self.rounds) and self.quiet_rounds == 0


@dataclass
class TrainBenchRun(JsonDocument):
    environment: dict[str, Any]
    settings: dict[str, Any]
    variants: list[Variant]
    created: str = ""

    def measured(self) -> list[Variant]:
        return [v for v in self.variants if v.samples_per_s is not None]

    def best(self) -> Variant | None:
        """The fastest trainer variant."""
        trainers = [v for v in self.measured() if v.options is not None]
        return max(trainers, key=lambda v: v.samples_per_s or 0.0, default=None)

    def to_dict(self) -> dict[str, Any]:
        best = self.best()
        return {
            "schema": SCHEMA,
            "created": self.created,
            "environment": self.environment,
            "settings": self.settings,
            "variants": [asdict(v) for v in self.variants],
            "best": None if best is None else {"variant": best.name, "vs_hand": best.vs_hand},
        }


def _validate(settings: TrainBenchSettings) -> tuple[str, list[str]]:
    """The device and the variants to run; UsageError for anything the settings get wrong,
    before any worker starts."""
    for name, value, least in (
        ("--batch-size", settings.batch_size, 1),
        ("--epochs", settings.epochs, 1),
        ("--warmup-epochs", settings.warmup_epochs, 0),
        ("--rounds", settings.rounds, 1),
        ("--threads", settings.threads if settings.threads is not None else 1, 1),
    ):
        if value < least:
            raise UsageError(f"{name} must be at least {least}, got {value}")
    device = settings.device
    if device not in ("auto", "cpu", "cuda"):
        raise UsageError(f"--device {device!r}: choose auto, cpu or cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device here (torch sees none); use --device cpu")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    given = settings.variants
    variants = list(dict.fromkeys(given if given is not None else DEFAULT_VARIANTS))
    if not variants:
        raise UsageError("--variants: give at least one variant")
    for name in variants:
        options = parse_variant(name)
        try:
            resolve_precision((options or {}).get("precision", "auto"), device)
        except UsageError as exc:
            raise UsageError(f"variant {name!r}: {exc}") from None
    plugins = get_plugins()
    spec = plugins.models.get(settings.model)  # unknown names: an error with suggestions
    task = plugins.tasks.create(spec.task, {})
    if not task.classifies:
        raise UsageError(
            f"zoo bench-train compares classifiers with a hand-written loop (CrossEntropyLoss); "
            f"model {spec.name!r} has task {spec.task!r}: pick a classifier (`zoo list --task "
            "classification`)"
        )
    return device, variants


def _run_worker(
    job: TrainJob, settings: TrainBenchSettings, since: float
) -> tuple[TrainJobResult, Round]:
    """The job's result, and its round without the figures: the wait for a quiet machine,
    the load averages at its start, the others' CPU share while it ran, its wall time."""
    waited = wait_for_quiet(settings.wait_quiet_s) if settings.wait_quiet_s > 0 else 0.0
    load = load_average()
    others = Others()
    others.start()
    start_s = time.perf_counter() - since
    payload = spawn_worker(
        job.to_dict(), job.threads, settings.timeout_s, module="zoo.bench.train_worker"
    )
    share, wall = others.share()
    result = TrainJobResult.from_dict(payload)
    rates = list(result.samples_per_s) or [0.0]
    return result, Round(
        pid=result.pid,
        samples_per_s=[round(r, 1) for r in rates],
        median=round(statistics.median(rates), 1),
        first_epoch_s=round(result.first_epoch_s, 3),
        final_loss=result.final_loss,
        load_avg=load,
        others_cpu_share=round(share, 3),
        wall_s=round(wall, 2),
        waited_s=round(waited, 1),
        start_s=round(start_s, 2),
    )


def _quiet(round_: Round) -> bool:
    return round_.others_cpu_share <= BUSY_SHARE


def _finish(variants: list[Variant]) -> None:
    for variant in variants:
        if variant.status != "ok" or not variant.rounds:
            continue
        quiet = [r for r in variant.rounds if _quiet(r)]
        variant.quiet_rounds = len(quiet)
        medians = [r.median for r in quiet or variant.rounds]
        variant.samples_per_s = statistics.median(medians)
        if len(medians) > 1:
            variant.spread = (max(medians) - min(medians)) / variant.samples_per_s
    hand = next((v for v in variants if v.options is None and v.samples_per_s), None)
    for variant in variants:
        if hand is not None and hand.samples_per_s and variant.samples_per_s is not None:
            variant.vs_hand = variant.samples_per_s / hand.samples_per_s


def run_train_bench(
    settings: TrainBenchSettings, echo: Callable[[str], None] = lambda _: None
) -> TrainBenchRun:
    """Measure every variant of ``settings`` (see the module docstring)."""
    device, names = _validate(settings)
    if device == "cpu" and native_bf16() is False and any("bf16" in n for n in names):
        echo(
            "note: this CPU has no bf16 instructions (avx512_bf16, amx_bf16): the bf16 "
            "variants run emulated"
        )
    spec = get_plugins().models.get(settings.model)
    data = settings.data or get_plugins().tasks.create(spec.task, {}).default_data(spec)
    threads = settings.threads or physical_cores()
    variants = [Variant(name, parse_variant(name)) for name in names]
    run = TrainBenchRun(
        environment={**environment(threads, (device,)), "load_avg_start": os.getloadavg()},
        settings={
            **asdict(settings),
            "data": data,
            "device": device,
            "threads": threads,
            "variants": names,
        },
        variants=variants,
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    )
    since = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="zoo-bench-train-") as workdir:
        for round_ in range(settings.rounds):
            order = variants if round_ % 2 == 0 else list(reversed(variants))
            for variant in order:
                if variant.status != "ok":
                    continue
                echo(f"{settings.model}: {variant.name} (round {round_ + 1}/{settings.rounds})")
                job = TrainJob(
                    variant=variant.name,
                    model=settings.model,
                    data=data,
                    batch_size=settings.batch_size,
                    epochs=settings.epochs,
                    warmup_epochs=settings.warmup_epochs,
                    threads=threads,
                    device=device,
                    workdir=workdir,
                    seed=settings.seed,
                    options=variant.options,
                )
                result, measured = _run_worker(job, settings, since)
                if result.status != "ok":
                    variant.status, variant.reason = "failed", result.reason
                    continue
                variant.rounds.append(measured)
    run.environment["load_avg_end"] = os.getloadavg()
    _finish(variants)
    return run


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def markdown_table(run: TrainBenchRun) -> str:
    """The run as a Markdown table: one row per variant, fastest trainer variant in bold."""
    best = run.best()
    rows = []
    for v in run.variants:
        name = f"**{v.name}**" if v is best else v.name
        if v.status != "ok":
            rows.append([name, f"failed: {v.reason}", *[""] * (len(TABLE_HEADERS) - 2)])
            continue
        used = [r for r in v.rounds if _quiet(r)] or v.rounds
        loads = [r.load_avg[0] for r in used]
        others = [r.others_cpu_share for r in used]
        rows.append(
            [
                name,
                _rate(v.samples_per_s),
                "-" if v.spread is None else f"{v.spread:.0%}",
                "-" if v.vs_hand is None else f"{v.vs_hand:.2f}x",
                f"{statistics.median(r.first_epoch_s for r in used):.2f}",
                f"{used[-1].final_loss:.3f}",
                f"{min(loads):.2f}-{max(loads):.2f}",
                f"{max(others):.0%}{' (busy)' if v.disturbed else ''}",
                f"{v.quiet_rounds}/{len(v.rounds)}",
            ]
        )
    return _markdown(TABLE_HEADERS, rows, align="l" + "r" * (len(TABLE_HEADERS) - 1))


TABLE_HEADERS = (
    "variant",
    "samples/s",
    "spread",
    "vs hand loop",
    "first epoch s",
    "final loss",
    "load avg (1 min)",
    "others' CPU",
    "quiet rounds",
)


def describe(run: TrainBenchRun) -> list[str]:
    """The lines under the table: what was measured, the winner, and any disturbance."""
    s = run.settings
    lines = [
        f"{s['model']} on {s['data']}, batch {s['batch_size']}, {s['device']}, "
        f"{s['threads']} threads, {s['rounds']} rounds of {s['warmup_epochs']} warm-up + "
        f"{s['epochs']} timed epochs; {run.environment['cpu']}, torch "
        f"{run.environment['torch']}"
    ]
    best = run.best()
    if best is not None and best.vs_hand is not None:
        lines.append(f"fastest: {best.name}, {best.vs_hand:.2f}x the hand loop")
    left_out = sum(len(v.rounds) - v.quiet_rounds for v in run.variants if not v.disturbed)
    if left_out:
        lines.append(
            f"note: {left_out} rounds during which other processes used over {BUSY_SHARE:.0%} "
            "of the CPUs are left out of the figures (the JSON keeps them)"
        )
    busy = [v for v in run.variants if v.disturbed]
    if busy:
        share = max(r.others_cpu_share for v in busy for r in v.rounds)
        lines.append(
            f"warning: other processes used up to {share:.0%} of the CPUs during every round "
            f"of {', '.join(v.name for v in busy)}: those figures are disturbed; rerun on a "
            "quiet machine"
        )
    return lines
