"""``zoo bench``: artifacts, one worker process per (model, runtime, device), statistics.

Every runtime is timed alone in a fresh process (``zoo.bench.worker``) with the thread count
set before torch starts; with several rounds the runtime order alternates, a row's statistics
are those of its fastest round (by p50), and the spread of the per-round medians is reported.
Runtimes that cannot run here become skipped rows with the reason; a worker that fails or
crashes becomes a failed row; neither stops the run.

The parts: ``settings`` (what to run, checked first), ``artifacts`` (what is timed),
``processes`` (the workers), ``stability`` (when rounds agree), ``rows`` (what is reported).
"""

from __future__ import annotations

import datetime as _dt
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from zoo._pluginmanager import get_plugins
from zoo.bench import wire
from zoo.bench.artifacts import export_dir, formats_for, variants_for
from zoo.bench.load import Others, process_tree_cpu, wait_for_quiet
from zoo.bench.processes import environment, physical_cores, spawn_worker
from zoo.bench.results import OFFLINE, SERVER, SINGLE_STREAM, BenchRun, Row
from zoo.bench.rows import offline_row, server_row, single_stream_row, unmeasured_rows
from zoo.bench.settings import BenchSettings, thread_splits, validate
from zoo.bench.stability import Entry, Round, least_rounds, settled
from zoo.bench.timing import harness_overhead_ns
from zoo.bench.worker import CeilingJob, CeilingResult, Job, JobResult
from zoo.card import model_card
from zoo.errors import UsageError
from zoo.export.manifest import Manifest, read_manifest
from zoo.runtimes import Source, cuda_present

__all__ = ["BenchSettings", "run_bench"]


def _resolve_models(patterns: list[str]) -> list[str]:
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


def _spawn(job: Job | CeilingJob, timeout: float) -> dict[str, Any]:
    return spawn_worker(job.to_dict(), job.threads, timeout)


def _flops(manifest: Manifest) -> int:
    spec = get_plugins().models.get(manifest.model)
    card = model_card(spec, **manifest.model_args)
    return int(card["measured"]["flops"])


def run_bench(settings: BenchSettings, echo: Callable[[str], None] = lambda _: None) -> BenchRun:
    """Benchmark ``settings.models`` (names or patterns); see the module docstring."""
    runtimes = validate(settings)
    deadline = time.monotonic() + settings.max_time_s
    models = _resolve_models(settings.models)
    devices = settings.devices or (("cpu", "cuda") if cuda_present() else ("cpu",))
    threads = settings.threads or physical_cores()
    plugins = get_plugins()
    run = _new_run(settings, models, runtimes, devices, threads)
    run.harness_overhead_ns = harness_overhead_ns()
    formats = formats_for(runtimes)
    if settings.artifacts is None:
        formats = variants_for(formats, settings.precisions)
    # Every export is found (and checked) or made before anything is measured: a bad
    # --artifacts or --checkpoint fails now, not after the ceiling.
    exports = {model: export_dir(model, settings, formats) for model in models}
    _measure_ceilings(run, devices, threads, settings.precisions, echo)
    for model, artifacts in exports.items():
        manifest = read_manifest(artifacts)
        run.flops_per_sample[model] = _flops(manifest)
        # Enough of a Source to ask each runtime whether it can run here (no module needed).
        source = Source(
            model,
            artifacts,
            artifacts={fmt: artifacts / file for fmt, file in manifest.artifacts().items()},
            failed=manifest.failures(),
        )
        have = {plugins.formats.get(n).precision for n in manifest.formats if n in plugins.formats}
        for precision in settings.precisions:
            if precision not in have:
                echo(f"note: {artifacts} holds no {precision} artifact: no {precision} rows")
        for device in devices:
            _bench_model_device(run, settings, runtimes, device, source, manifest, echo, deadline)
    run.finish()
    return run


def _new_run(
    settings: BenchSettings,
    models: list[str],
    runtimes: tuple[str, ...],
    devices: tuple[str, ...],
    threads: int,
) -> BenchRun:
    """The run's record before anything is measured: the machine and the settings, resolved."""
    registry = get_plugins().runtimes
    return BenchRun(
        environment=environment(threads, devices),
        settings={
            **{k: v for k, v in asdict(settings).items() if k not in ("policy",)},
            "models": models,
            "runtimes": list(runtimes),
            "devices": list(devices),
            "threads": threads,
            "policy": asdict(settings.policy),
            "server": asdict(settings.server),
            "scenarios": list(settings.scenarios),
            "splits": [list(s) for s in settings.splits] if settings.splits else None,
            "artifacts": str(settings.artifacts) if settings.artifacts else None,
            "checkpoint": str(settings.checkpoint) if settings.checkpoint else None,
        },
        ceiling_gflops={},
        flops_per_sample={},
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        reference=registry.reference(),
        peers={r: p for r in runtimes if (p := registry.get(r).peer) is not None},
        peer_notes={r: n for r in runtimes if (n := registry.get(r).peer_note)},
    )


def _measure_ceilings(
    run: BenchRun,
    devices: tuple[str, ...],
    threads: int,
    precisions: tuple[str, ...],
    echo: Callable[[str], None],
) -> None:
    """The matmul ceiling of each device in fp32 and each reduced precision asked for, each in
    a worker of its own: what the rows' share of the machine is measured against."""
    for device in devices:
        for precision in dict.fromkeys(("fp32", *precisions)):  # fp32 rows always run
            echo(f"measuring the {precision} matmul ceiling on {device} ({threads} threads)")
            job = CeilingJob(device, threads, precision)
            ceiling = CeilingResult.from_dict(_spawn(job, 300))
            if ceiling.status != "ok":
                echo(f"the {precision} ceiling on {device} could not be measured: {ceiling.reason}")
            elif precision == "fp32":
                run.ceiling_gflops[device] = ceiling.gflops
                run.ceiling_detail[device] = {
                    "source": ceiling.source,
                    "measured": ceiling.measured,
                }
            else:
                run.precision_ceilings.setdefault(device, {})[precision] = ceiling.gflops
                run.ceiling_detail.setdefault(f"{device} {precision}", {}).update(
                    source=ceiling.source, measured=ceiling.measured
                )


def _plan(
    settings: BenchSettings,
    runtimes: tuple[str, ...],
    device: str,
    source: Source,
    manifest: Manifest,
) -> list[Entry]:
    """Each runtime, then each runtime on each variant of its format that the export holds
    in ``settings.precisions``; in every scenario, offline and server once per thread split."""
    plugins = get_plugins()

    def accuracy(fmt: str | None) -> dict[str, Any] | None:
        record = manifest.formats.get(fmt) if fmt is not None else None
        return record.accuracy.to_dict() if record and record.accuracy else None

    entries = []
    for name in runtimes:
        runtime = plugins.runtimes.get(name)
        why = runtime.unavailable(source, device)
        entries.append(Entry(name, accuracy=accuracy(runtime.format), why=why))
    for name in runtimes:
        runtime = plugins.runtimes.get(name)
        for variant, record in manifest.formats.items():
            fmt = plugins.formats.get(variant) if variant in plugins.formats else None
            if fmt is None or fmt.variant_of is None or fmt.variant_of != runtime.format:
                continue
            if fmt.precision not in settings.precisions:
                continue
            stand_in = Source(
                source.model, source.directory,
                artifacts={runtime.format: source.directory / record.artifact}
                if record.artifact else {},
                failed={runtime.format: record.reason} if not record.ok else {},
            )  # fmt: skip
            why = runtime.unavailable(stand_in, device) or (
                f"{fmt.name} runs on {', '.join(fmt.devices)}"
                if device not in fmt.devices
                else None
            )
            entries.append(Entry(name, variant, fmt.precision, accuracy(variant), why))
    threads = settings.threads or physical_cores()
    planned = []
    for scenario in settings.scenarios:
        for entry in entries:
            if scenario == SINGLE_STREAM:
                planned.append(replace(entry, threads=threads))
                continue
            for sessions, per in thread_splits(settings, threads):
                planned.append(replace(entry, scenario=scenario, sessions=sessions, threads=per))
    return planned


def _job(entry: Entry, settings: BenchSettings, device: str, source: Source) -> Job:
    return Job(
        runtime=entry.runtime,
        device=device,
        threads=entry.threads,
        artifacts=str(source.directory),
        batches=(1,) if entry.scenario == SERVER else tuple(settings.batches),
        seed=settings.seed,
        policy=settings.policy,
        variant=entry.variant,
        scenario=entry.scenario,
        sessions=entry.sessions,
        latency_bound_ms=settings.latency_bound_ms,
        server=settings.server,
        tf32=settings.tf32,
        endpoint=entry.endpoint,
        endpoint_model=entry.endpoint_model,
    )


def _bench_model_device(
    run: BenchRun,
    settings: BenchSettings,
    runtimes: tuple[str, ...],
    device: str,
    source: Source,
    manifest: Manifest,
    echo: Callable[[str], None],
    deadline: float,
) -> None:
    """The rows of every entry (``_plan``), then, with ``--endpoint`` or ``--serve``, the
    server scenario over the wire."""
    entries = _plan(settings, runtimes, device, source, manifest)
    measured = _measure(entries, settings, device, source, echo, deadline)
    rows = _rows(source.model, device, entries, measured, settings)
    run.rows += rows
    if settings.endpoint is not None or settings.serve:
        run.rows += _bench_wire(settings, device, source, entries, rows, echo, deadline)


def _measure(
    entries: list[Entry],
    settings: BenchSettings,
    device: str,
    source: Source,
    echo: Callable[[str], None],
    deadline: float,
) -> _Measured:
    """Rounds of workers until each entry settles (``stability.settled``), ``--max-rounds``
    or ``--max-time``."""
    measured = _Measured({e: [] for e in entries if e.why is None})
    for round_ in range(settings.max_rounds):
        todo = [e for e, rounds in measured.rounds.items() if measured.wanted(e, settings)]
        if not todo:
            break
        if (
            round_ >= 1
            and time.monotonic() > deadline
            and all(len(measured.rounds[e]) >= least_rounds(e, settings) for e in todo)
        ):
            measured.stopped_by_time = True
            break
        for entry in todo if round_ % 2 == 0 else list(reversed(todo)):  # alternate the order
            echo(f"{source.model} on {device}: {entry.label} (round {round_ + 1})")
            measured.add(entry, _run_round(_job(entry, settings, device, source), settings))
    return measured


def _rows(
    model: str, device: str, entries: list[Entry], measured: _Measured, settings: BenchSettings
) -> list[Row]:
    """The rows of the entries, with their stability: one per series."""
    series: dict[tuple[str, str | None, str], list[Entry]] = {}
    for entry in entries:
        series.setdefault(entry.series, []).append(entry)
    rows = []
    for group in series.values():
        rows += _series_rows(model, device, group, measured, settings)
    return rows


def _bench_wire(
    settings: BenchSettings,
    device: str,
    source: Source,
    entries: list[Entry],
    in_process: list[Row],
    echo: Callable[[str], None],
    deadline: float,
) -> list[Row]:
    """The server scenario over the wire: against ``--endpoint``, or against zoo serve run
    on the export with each in-process server row's runtime and precision (``--serve``), one
    server at a time, after the in-process rows (they never share the CPUs). Each wire row
    says what it kept of its in-process figure (``detail.in_process``)."""
    model = source.model
    if settings.endpoint is not None:
        endpoint = wire.parse_endpoint(settings.endpoint, model)
        wire.check_endpoint(endpoint)
        entry = Entry(
            wire.WIRE, scenario=SERVER, sessions=settings.clients, threads=1,
            endpoint=endpoint.address, endpoint_model=endpoint.model,
        )  # fmt: skip
        rows = _rows(model, device, [entry], _measure([entry], settings, device, source, echo,
                                                      deadline), settings)  # fmt: skip
        best = max(
            (r for r in in_process if r.scenario == SERVER and r.status == "ok"),
            key=lambda r: r.samples_per_s or 0.0,
            default=None,
        )
        return [_compared(row, best, endpoint.url) for row in rows]
    rows = []
    for row in in_process:
        if row.scenario != SERVER or row.status != "ok":
            continue
        served = next(
            e for e in entries if e.scenario == SERVER and e.runtime == row.runtime
            and e.precision == row.precision
        )  # fmt: skip
        serve_args = (*settings.serve_args, "--device", device)
        with wire.served(source.directory, row.runtime, row.precision, model, serve_args) as at:
            entry = replace(
                served, runtime=f"{row.runtime} served", sessions=settings.clients, threads=1,
                endpoint=at.address, endpoint_model=at.model,
            )  # fmt: skip
            measured = _measure([entry], settings, device, source, echo, deadline)
        rows += [_compared(r, row, at.url) for r in _rows(model, device, [entry], measured,
                                                          settings)]  # fmt: skip
    return rows


def _compared(row: Row, in_process: Row | None, url: str) -> Row:
    """``row`` (over the wire) with its endpoint, and what it kept of ``in_process``'s QPS
    and what the wire added to one request alone (microseconds)."""
    if row.detail is None:
        row.detail = {}
    row.detail["endpoint"] = url
    if in_process is None or row.status != "ok" or not in_process.samples_per_s:
        return row

    def alone_ms(r: Row) -> float:
        splits = (r.detail or {}).get("splits") or [{}]
        return min(float(s.get("alone_ms") or 0.0) for s in splits)

    row.detail["in_process"] = {
        "runtime": in_process.runtime,
        "precision": in_process.precision,
        "max_qps": in_process.samples_per_s,
        "qps_ratio": (row.samples_per_s or 0.0) / in_process.samples_per_s,
        "overhead_us": (alone_ms(row) - alone_ms(in_process)) * 1e3,
    }
    return row


@dataclass
class _Measured:
    """The rounds of each entry that can run here, the entries whose worker failed (and why),
    and whether ``--max-time`` ended the rounds."""

    rounds: dict[Entry, list[Round]]
    failed: dict[Entry, str] = field(default_factory=dict)
    stopped_by_time: bool = False

    def wanted(self, entry: Entry, settings: BenchSettings) -> bool:
        return entry not in self.failed and not settled(entry, self.rounds[entry], settings)

    def add(self, entry: Entry, outcome: Round | str) -> None:
        if isinstance(outcome, str):
            self.failed[entry] = outcome
        else:
            self.rounds[entry].append(outcome)


def _run_round(job: Job, settings: BenchSettings) -> Round | str:
    """One worker, with what the rest of the machine did meanwhile; why, where it failed."""
    # A server zoo bench started (--serve) works for this round: its CPU is the round's own.
    server = wire.server_process(job.endpoint) if job.endpoint is not None else None
    also = process_tree_cpu(server) if server is not None else None
    if settings.wait_quiet_s > 0:
        wait_for_quiet(settings.wait_quiet_s, also)
    load = os.getloadavg()[0]
    others = Others(also)
    others.start()
    result = JobResult.from_dict(_spawn(job, settings.timeout_s))
    machine = others.measure()
    if result.status != "ok":
        return result.reason
    return Round(result, machine, round(load, 2))


def _series_rows(
    model: str, device: str, group: list[Entry], measured: _Measured, settings: BenchSettings
) -> list[Row]:
    """The rows of one series (a runtime, variant and scenario over its thread splits)."""
    first, rounds, failed = group[0], measured.rounds, measured.failed
    if first.why is not None:
        return unmeasured_rows(model, first, device, settings, "skipped", first.why)
    if all(e in failed for e in group):
        return unmeasured_rows(model, first, device, settings, "failed", failed[first] or "")
    ran = [e for e in group if e not in failed and rounds[e]]
    late = measured.stopped_by_time
    if first.scenario == SINGLE_STREAM:
        made = [
            single_stream_row(model, first, device, b, rounds[first], settings, late)
            for b in settings.batches
        ]
    elif first.scenario == OFFLINE:
        made = [offline_row(model, device, ran, rounds, settings, late)]
    else:
        made = [server_row(model, device, ran, rounds, settings, late)]
    lost = {f"{e.sessions}x{e.threads}": failed[e] for e in group if e in failed}
    tf32 = {r.result.tf32 for e in ran for r in rounds[e]}
    for row in made:
        row.precision, row.accuracy = first.precision, first.accuracy
        row.tf32 = next(iter(tf32)) if len(tf32) == 1 else None  # None: the rounds differed
        if lost and row.detail is not None:
            row.detail["failed_splits"] = lost  # the row is the best of the others
    return made
