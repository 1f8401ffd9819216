"""``zoo bench`` and ``zoo bench-train``."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from zoo.bench.timing import TimingPolicy
from zoo.cli.app import cli
from zoo.cli.params import NON_NEGATIVE, WAIT_QUIET, csv_values

if TYPE_CHECKING:
    from zoo.bench.results import BenchRun


def _save_results(run: Any, path: Path, option: str, failed: OSError | None = None) -> str | None:
    """Write ``run``'s JSON document to ``path`` (``failed``: a write of ``path`` that already
    failed); None once written, else the line that says where the results were kept instead
    (:func:`zoo.bench.outputs.keep_results`)."""
    from zoo.bench.outputs import keep_results

    if failed is None:
        try:
            run.save(path)
        except OSError as exc:
            failed = exc
        else:
            click.echo(f"wrote {path}")
            return None
    return keep_results(run.document(), path, option, failed)


def _outputs_failed(lost: list[str | None]) -> None:
    """Exit 1 with a line for each output that could not be written (None: written)."""
    lines = [line for line in lost if line is not None]
    for line in lines:
        click.echo(f"zoo: error: {line}", err=True)
    if lines:
        sys.exit(1)


def _splits(value: str) -> tuple[tuple[int, int], ...]:
    """``1x2,2x1`` -> ((1, 2), (2, 1))."""
    splits = []
    for item in csv_values(value, "--splits"):
        sessions, _, threads = item.lower().partition("x")
        if not (sessions.isdigit() and threads.isdigit()):
            raise click.BadParameter(
                f"sessions x threads per session, like 2x1, got {item!r}", param_hint="--splits"
            )
        splits.append((int(sessions), int(threads)))
    return tuple(dict.fromkeys(splits))


@cli.command("bench")
@click.argument("models", nargs=-1, required=True, metavar="NAME|PATTERN...")
@click.option(
    "--runtime",
    "runtimes",
    default="all",
    show_default=True,
    help="Comma-separated runtime names (`zoo runtimes` lists them), or all.",
)
@click.option(
    "--device", "devices", default=None, help="cpu,cuda (default: cpu, and cuda if present)."
)
@click.option("--batch", "batches", default="1,8,32", show_default=True, help="Batch sizes.")
@click.option(
    "--threads",
    type=int,
    default=None,
    help="Threads for torch and ORT alike (default: physical cores).",
)
@click.option(
    "--artifacts",
    type=click.Path(file_okay=False, path_type=Path),
    help="Time this export (a `zoo export` directory, or a folder of them) instead of exporting.",
)
@click.option(
    "--checkpoint",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Export these weights (a run directory) on the fly.",
)
@click.option(
    "--bundle",
    is_flag=True,
    help="On-the-fly exports include the preprocessing (default: the bare model).",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the results (schema zoo-bench/2).",
)
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write a PNG: latency vs batch per runtime.",
)
@click.option(
    "--compare",
    "baseline",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A previous --json: exit 1 if any p50 regressed beyond --threshold.",
)
@click.option(
    "--threshold",
    type=NON_NEGATIVE,
    default=0.10,
    show_default=True,
    help="Regression threshold for --compare (0.10 = 10% slower).",
)
@click.option(
    "--min-time",
    type=NON_NEGATIVE,
    default=1.0,
    show_default=True,
    help="Seconds of timed calls per batch size (at least).",
)
@click.option(
    "--min-iters",
    type=int,
    default=20,
    show_default=True,
    help="Timed calls per batch size (at least).",
)
@click.option(
    "--warmup",
    type=int,
    default=5,
    show_default=True,
    help="Untimed calls first (and at least 0.2 s).",
)
@click.option(
    "--rounds",
    type=int,
    default=2,
    show_default=True,
    help="Rounds every runtime runs at least, each in a fresh worker, alternating the order.",
)
@click.option(
    "--max-rounds",
    type=int,
    default=5,
    show_default=True,
    help="More rounds run until the best two quiet rounds agree within --stability; a row "
    "that never does is marked unstable.",
)
@click.option(
    "--stability",
    type=NON_NEGATIVE,
    default=0.05,
    show_default=True,
    help="How close the best two quiet rounds must be (0.05 = 5%).",
)
@click.option(
    "--max-time",
    type=NON_NEGATIVE,
    default=600.0,
    show_default=True,
    help="Seconds after which no round beyond --rounds starts (the rows say so).",
)
@click.option(
    "--tail-bound",
    type=NON_NEGATIVE,
    default=2.0,
    show_default=True,
    help="A row whose p90 is more than this many times its p50 is unstable.",
)
@WAIT_QUIET
@click.option(
    "--scenario",
    "scenarios",
    default="single-stream",
    show_default=True,
    help="Comma-separated: single-stream (one call at a time: latency per batch), offline "
    "(best samples/s over batch sizes and thread splits), server (Poisson arrivals: the "
    "highest QPS whose p99 stays under --latency-bound).",
)
@click.option(
    "--splits",
    default=None,
    metavar="SxT,...",
    help="offline and server: sessions x threads per session to try (default: every split "
    "of --threads, e.g. 1x2,2x1 on 2 cores).",
)
@click.option(
    "--latency-bound",
    type=NON_NEGATIVE,
    default=100.0,
    show_default=True,
    help="server: the p99 latency (ms per request, queueing included) the QPS must keep under.",
)
@click.option(
    "--server-requests",
    type=int,
    default=200,
    show_default=True,
    help="server: requests per rate tried (at least; and at least --min-time seconds).",
)
@click.option(
    "--precision",
    "precisions",
    default="fp32",
    show_default=True,
    help="Comma-separated fp32, bf16, fp16, int8: each runtime also runs its format's variant in "
    "each precision (a row per runtime x precision, with the accuracy it scored at export). "
    "On-the-fly exports of reduced precision need --checkpoint or --eval.",
)
@click.option(
    "--eval",
    "eval_dataset",
    default=None,
    metavar="DATASET",
    help="On-the-fly exports: the accuracy gate's held-out data (default: the checkpoint's).",
)
@click.option(
    "--tf32",
    is_flag=True,
    help="On CUDA, let fp32 convolutions and matrix products run in TF32 (tensor cores, "
    "10-bit mantissas). Off by default: fp32 rows are fp32; every CUDA row records which.",
)
@click.option(
    "--endpoint",
    default=None,
    metavar="URL",
    help="server: also run the scenario over HTTP against this Open Inference Protocol v2 "
    "server (http://HOST:PORT[/v2/models/NAME]: zoo serve, Triton, KServe), as its client.",
)
@click.option(
    "--serve",
    is_flag=True,
    help="server: also run it over HTTP against zoo serve, started on the export with each "
    "in-process row's runtime and precision, after the in-process rows (needs zoo[serve]).",
)
@click.option(
    "--clients",
    type=click.IntRange(1, 64),
    default=16,
    show_default=True,
    help="--endpoint/--serve: client connections sending the requests.",
)
@click.option(
    "--serve-args",
    default="",
    metavar="ARGS",
    help='--serve: options for zoo serve, e.g. "--max-batch 16 --batch-wait-ms 2".',
)
def bench_cmd(
    models: tuple[str, ...],
    runtimes: str,
    devices: str | None,
    batches: str,
    threads: int | None,
    artifacts: Path | None,
    checkpoint: Path | None,
    bundle: bool,
    json_path: Path | None,
    plot_path: Path | None,
    baseline: Path | None,
    threshold: float,
    min_time: float,
    min_iters: int,
    warmup: int,
    rounds: int,
    max_rounds: int,
    stability: float,
    max_time: float,
    tail_bound: float,
    wait_quiet: float,
    scenarios: str,
    splits: str | None,
    latency_bound: float,
    server_requests: int,
    precisions: str,
    eval_dataset: str | None,
    tf32: bool,
    endpoint: str | None,
    serve: bool,
    clients: int,
    serve_args: str,
) -> None:
    """Latency of models across runtimes: which runtime, at which batch size, on this machine.

    Each runtime runs alone in a fresh process with the same inputs and thread count:
    warm-up, then timed calls until --min-iters and --min-time are both reached. Reported per
    batch size: p50/p90/p99/mean/std/min latency, throughput, speed-up over eager, GFLOP/s
    against the measured fp32 matmul ceiling, cold start (load + first call) and memory.
    Runtimes that cannot run here are listed with the reason.

    Every row says whether it is stable: rounds (fresh workers) run until the best two quiet
    ones agree within --stability; a row measured while other processes used the CPUs, or
    whose rounds never agree, is marked unstable with why. --scenario offline and server add
    the best samples/s and the highest QPS under --latency-bound, over thread splits;
    --endpoint or --serve measure that QPS over HTTP too, beside the in-process figure.
    """
    from zoo.bench.outputs import check_output
    from zoo.bench.report import print_table
    from zoo.bench.results import load_run
    from zoo.bench.runner import run_bench
    from zoo.bench.scenarios import ServerPolicy
    from zoo.bench.settings import BenchSettings

    if server_requests < 1:
        raise click.BadParameter(
            f"must be at least 1, got {server_requests}", param_hint="--server-requests"
        )
    chosen = None if runtimes == "all" else csv_values(runtimes, "--runtime")
    base = load_run(baseline) if baseline is not None else None  # fail early on a bad file
    for path, option in ((json_path, "--json"), (plot_path, "--plot")):
        if path is not None:  # before the benchmark: a bad path fails now, not after it
            check_output(path, option)
    settings = BenchSettings(
        models=list(models),
        runtimes=chosen,
        devices=csv_values(devices, "--device") if devices else None,
        batches=csv_values(batches, "--batch", int),
        threads=threads,
        artifacts=artifacts,
        checkpoint=checkpoint,
        raw=not bundle,
        rounds=rounds,
        max_rounds=max_rounds,
        stability=stability,
        max_time_s=max_time,
        tail_bound=tail_bound,
        wait_quiet_s=wait_quiet,
        policy=TimingPolicy(warmup_iters=warmup, min_iters=min_iters, min_time_s=min_time),
        precisions=csv_values(precisions, "--precision"),
        eval_dataset=eval_dataset,
        scenarios=csv_values(scenarios, "--scenario"),
        splits=_splits(splits) if splits else None,
        latency_bound_ms=latency_bound,
        server=ServerPolicy(min_requests=server_requests, min_time_s=min_time),
        tf32=tf32,
        endpoint=endpoint,
        serve=serve,
        clients=clients,
        serve_args=_serve_args(serve_args),
    )
    run = run_bench(settings, echo=lambda line: click.echo(line, err=True))
    print_table(run)
    lost: list[str | None] = (
        [_save_results(run, json_path, "--json")] if json_path is not None else []
    )
    if not any(row.status == "ok" for row in run.rows):
        click.echo(f"zoo: no runtime was measured: {_unmeasured(run)}", err=True)
        _outputs_failed(lost)
        sys.exit(1)
    if plot_path is not None:
        lost += _plot(run, plot_path, json_path, lost)
    _outputs_failed(lost)
    if base is not None:
        assert baseline is not None
        _compare(run, base, baseline, threshold)


def _unmeasured(run: BenchRun) -> str:
    """Why no row was measured: the runtimes that failed and those skipped."""
    failed = sorted({r.runtime for r in run.rows if r.status == "failed"})
    skipped = sorted({r.runtime for r in run.rows if r.status == "skipped"})
    what = [f"{len(failed)} failed ({', '.join(failed)})"] if failed else []
    what += [f"{len(skipped)} skipped ({', '.join(skipped)})"] if skipped else []
    return "; ".join(what)


def _plot(
    run: BenchRun, plot_path: Path, json_path: Path | None, lost: list[str | None]
) -> list[str | None]:
    """Write --plot; where it cannot be written, what to say (and where the results went)."""
    from zoo.bench.plot import plot_run

    try:
        plot_run(run, plot_path)
        click.echo(f"wrote {plot_path}")
        return []
    except OSError as exc:
        why = f"cannot write --plot {plot_path} ({exc.strerror or exc})"
        if json_path is None:  # the results are nowhere yet
            return [_save_results(run, plot_path, "--plot", exc)]
        if not any(lost):
            return [f"{why}; the results are in {json_path}"]
        return [why]  # the --json line says where they are


def _compare(run: BenchRun, base: BenchRun, baseline: Path, threshold: float) -> None:
    """--compare: the regressions against the baseline; exit 1 on a confirmed one."""
    from zoo.bench.report import compare_runs

    regressions, shared = compare_runs(run, base, threshold)
    if not shared:
        click.echo(f"zoo: {baseline} shares no measured cell with this run", err=True)
        sys.exit(1)
    confirmed = [r for r in regressions if r.confirmed]
    for regression in regressions:
        if not regression.confirmed:
            click.echo(f"zoo: not counted (an unstable row): {regression.describe()}", err=True)
    for regression in confirmed:
        click.echo(f"zoo: regression: {regression.describe()}", err=True)
    if confirmed:
        sys.exit(1)
    click.echo(
        f"no regression beyond {threshold:.0%} in {shared} cells against {baseline}"
        + (f" ({len(regressions)} more from unstable rows, not counted)" if regressions else "")
    )


@cli.command("bench-train")
@click.argument("model", metavar="NAME")
@click.option("--data", default="", help="Dataset (default: the model's, mnist5k for images).")
@click.option("--batch-size", type=int, default=64, show_default=True, help="Batch size.")
@click.option("--epochs", type=int, default=3, show_default=True, help="Timed epochs per round.")
@click.option(
    "--warmup-epochs",
    type=int,
    default=1,
    show_default=True,
    help="Untimed epochs first (compilation, allocator growth).",
)
@click.option(
    "--rounds",
    type=int,
    default=3,
    show_default=True,
    help="Repeat every variant in a fresh process, alternating the order.",
)
@click.option(
    "--variants",
    default=None,
    help="Comma-separated: hand (a tutorial's hand-written loop), trainer (zoo's defaults), "
    "or speed options joined by + from fp32, bf16, fp16, channels-last, compile (default: "
    "hand, trainer, bf16, channels-last, compile, bf16+channels-last, channels-last+compile).",
)
@click.option(
    "--threads", type=int, default=None, help="Threads for torch (default: physical cores)."
)
@click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="auto: CUDA when present.",
)
@WAIT_QUIET
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the results (schema zoo-bench-train/1).",
)
def bench_train_cmd(
    model: str,
    data: str,
    batch_size: int,
    epochs: int,
    warmup_epochs: int,
    rounds: int,
    variants: str | None,
    threads: int | None,
    device: str,
    wait_quiet: float,
    json_path: Path | None,
) -> None:
    """Training throughput (samples/s) of NAME: a hand-written loop as in PyTorch's tutorials,
    zoo's trainer with its defaults, and the trainer with each speed option (--precision,
    --channels-last, --compile and combinations), same model, data and batch.

    Every variant of every round runs alone in a fresh process; warm-up epochs are not timed.
    The table gives each variant's median over rounds, the spread of the rounds, the ratio to
    the hand loop, and the load average and the other processes' share of the CPUs while it
    ran: a busy machine is flagged, not hidden.
    """
    from zoo.bench.outputs import check_output
    from zoo.bench.training import (
        TrainBenchSettings,
        describe,
        markdown_table,
        run_train_bench,
    )

    if json_path is not None:  # before the benchmark: a bad path fails now, not after it
        check_output(json_path, "--json")
    settings = TrainBenchSettings(
        model=model,
        data=data,
        batch_size=batch_size,
        epochs=epochs,
        warmup_epochs=warmup_epochs,
        rounds=rounds,
        variants=csv_values(variants, "--variants") if variants is not None else None,
        threads=threads,
        device=device,
        wait_quiet_s=wait_quiet,
    )
    run = run_train_bench(settings, echo=lambda line: click.echo(line, err=True))
    click.echo(markdown_table(run))
    click.echo()
    for line in describe(run):
        click.echo(line)
    _outputs_failed([_save_results(run, json_path, "--json")] if json_path is not None else [])
    if not run.measured():
        failed = "; ".join(f"{v.name}: {v.reason}" for v in run.variants)
        click.echo(f"zoo: no variant was measured ({failed})", err=True)
        sys.exit(1)


def _serve_args(text: str) -> tuple[str, ...]:
    """--serve-args split as a shell would."""
    try:
        return tuple(shlex.split(text))
    except ValueError as exc:
        raise click.BadParameter(f"{exc} in {text!r}", param_hint="--serve-args") from None
