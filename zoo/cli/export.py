"""``zoo export`` and ``zoo export --check``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from zoo._table import table
from zoo.cli.app import cli
from zoo.cli.params import NON_NEGATIVE, Checked, csv_values, parse_args
from zoo.errors import single_line
from zoo.export.defaults import (
    DEFAULT_ATOL,
    DEFAULT_CALIBRATION_SAMPLES,
    DEFAULT_EVAL_SAMPLES,
    DEFAULT_MAX_DROP,
    DEFAULT_RTOL,
)
from zoo.train.config import Option

if TYPE_CHECKING:
    from zoo.export.accuracy import AccuracyResult
    from zoo.export.gates import ParityResult


@cli.command("export")
@click.argument("name", required=False)
@click.option(
    "--format",
    "formats",
    default=None,
    help="Comma-separated format names (`zoo formats` lists them; default: torchscript, onnx "
    "and pt2, the formats marked default there). aoti compiles for minutes.",
)
@click.option("--out", type=click.Path(file_okay=False), help="Export directory.")
@click.option(
    "--checkpoint",
    type=click.Path(exists=True, file_okay=False),
    help="A run directory (its best checkpoint) or a checkpoint directory.",
)
@click.option("--arg", "args", multiple=True, metavar="KEY=VALUE", help="Model builder option.")
@click.option("--raw", is_flag=True, help="Export the bare model, without preprocessing.")
@click.option(
    "--postprocess",
    type=click.Choice(["none", "softmax", "topk"]),
    default="none",
    show_default=True,
    help="Classifiers: append a softmax (probabilities), or return the --top-k best "
    "probabilities and class indices.",
)
@click.option("--top-k", type=int, default=5, show_default=True, help="k for --postprocess topk.")
@click.option("--opset", type=int, default=20, show_default=True, help="ONNX opset.")
@click.option(
    "--atol",
    type=NON_NEGATIVE,
    default=DEFAULT_ATOL,
    show_default=True,
    help="Parity: absolute tolerance.",
)
@click.option(
    "--rtol",
    type=NON_NEGATIVE,
    default=DEFAULT_RTOL,
    show_default=True,
    help="Parity: relative tolerance.",
)
@click.option(
    "--check",
    "check_dir",
    type=click.Path(file_okay=False),
    help="Re-verify an export directory (hashes and parity) instead of exporting.",
)
@click.option(
    "--check-timeout",
    type=Checked(Option("number", exclusive_minimum=0, maximum=86400)),
    default=300,
    show_default=True,
    help="--check: seconds the artifacts may run in all; past it, the one running is named "
    "and nothing is vouched for.",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace the export already in --out (kept whole until the new one is complete).",
)
@click.option(
    "--precision",
    "precisions",
    default="fp32",
    show_default=True,
    help="Comma-separated: fp32, bf16, fp16, int8. Each format is written in each precision it has "
    "a variant for (`zoo formats`); reduced precision is gated on accuracy (--eval).",
)
@click.option(
    "--eval",
    "eval_dataset",
    default=None,
    metavar="DATASET",
    help="The accuracy gate's held-out data: the test split of DATASET (default: the "
    "checkpoint's dataset, split as it was trained; fresh weights: no gate).",
)
@click.option(
    "--max-drop",
    type=float,
    default=DEFAULT_MAX_DROP,
    show_default=True,
    help="Reduced precision: the most accuracy points it may lose against eager fp32 (for "
    "a lower-is-better metric, percent of eager's value).",
)
@click.option(
    "--calibrate",
    default=None,
    metavar="DATASET",
    help="int8: calibrate on DATASET's training split (default: the --eval dataset).",
)
@click.option(
    "--calibration-samples",
    type=int,
    default=DEFAULT_CALIBRATION_SAMPLES,
    show_default=True,
    help="int8: how many training samples calibrate the activation ranges.",
)
@click.option(
    "--eval-samples",
    type=int,
    default=DEFAULT_EVAL_SAMPLES,
    show_default=True,
    help="The most held-out samples the accuracy gate runs (a seeded subset beyond).",
)
def export_cmd(
    name: str | None,
    formats: str | None,
    out: str | None,
    checkpoint: str | None,
    args: tuple[str, ...],
    raw: bool,
    postprocess: str,
    top_k: int,
    opset: int,
    atol: float,
    rtol: float,
    check_dir: str | None,
    check_timeout: float,
    overwrite: bool,
    precisions: str,
    eval_dataset: str | None,
    max_drop: float,
    calibrate: str | None,
    calibration_samples: int,
    eval_samples: int,
) -> None:
    """Export NAME with its preprocessing, gated on parity: TorchScript, ONNX and .pt2 by
    default, or any registered format.

    Each artifact is loaded in its own runtime and compared with eager PyTorch at batch sizes
    1 and 3 (two sequence lengths for the recurrent models, two image sizes for image
    bundles). An artifact that fails is not written, and the command exits 1 with the
    differences per output. The export directory also holds the weights
    (weights.safetensors), the parity inputs and outputs, and manifest.json.
    """
    from zoo.export.checking import check_bounded
    from zoo.export.exporter import clean_leftovers, export_model, unchecked_here
    from zoo.export.manifest import read_manifest

    if check_dir:
        removed = clean_leftovers(check_dir)
        if removed:
            click.echo(
                f"note: removed what an interrupted export left beside {check_dir}: "
                + ", ".join(removed),
                err=True,
            )
        results, accuracy = check_bounded(check_dir, check_timeout)
        _echo_parity(results)
        _echo_accuracy(accuracy)
        away = unchecked_here(read_manifest(Path(check_dir)))
        for fmt, why in away.items():
            click.echo(f"note: {fmt}: not checked here: {why}", err=True)
        if not all(r.passed for r in results.values()) or not all(
            r.passed for r in accuracy.values()
        ):
            sys.exit(1)
        gated = "parity and the accuracy gates hold" if accuracy else "parity holds"
        if away and not (results or accuracy):
            gated = f"no artifact of it runs here ({', '.join(away)}: not checked)"
        elif away:
            gated += f" (not checked here: {', '.join(away)})"
        click.echo(f"{check_dir}: files match the manifest; {gated}")
        return
    if not name or not out:
        raise click.UsageError("give NAME and --out DIR (or --check DIR)")
    wanted = csv_values(formats, "--format") if formats is not None else None
    report = export_model(
        name,
        out,
        formats=wanted,
        checkpoint=checkpoint,
        model_args=parse_args(args),
        raw=raw,
        postprocess=postprocess,
        top_k=top_k,
        opset=opset,
        atol=atol,
        rtol=rtol,
        overwrite=overwrite,
        precisions=csv_values(precisions, "--precision"),
        eval_dataset=eval_dataset,
        calibrate=calibrate,
        calibration_samples=calibration_samples,
        max_drop=max_drop,
        eval_samples=eval_samples,
    )
    formats_done = report.manifest.formats
    reduced = frozenset(f for f, r in formats_done.items() if r.precision != "fp32")
    _echo_parity({f: r.parity for f, r in formats_done.items() if r.parity is not None}, reduced)
    _echo_accuracy({f: r.accuracy for f, r in formats_done.items() if r.accuracy is not None})
    for note in report.notes:
        click.echo(f"note: {note}", err=True)
    for fmt, record in formats_done.items():
        if not record.ok:
            click.echo(f"zoo: {fmt}: failed: {record.reason}", err=True)
    labels = report.manifest.labels
    if labels is not None:
        shown = ", ".join(labels.classes[:5]) + (", ..." if len(labels.classes) > 5 else "")
        line = f"labels: {len(labels.classes)} classes of {labels.dataset} ({shown})"
        click.echo(single_line(line))
    written = [fmt for fmt, record in formats_done.items() if record.ok]
    click.echo(f"wrote {report.out} ({', '.join(written) or 'no artifact'})")
    if not report.ok:
        sys.exit(1)


def _echo_parity(parity: dict[str, ParityResult], reduced: frozenset[str] = frozenset()) -> None:
    """The parity table; ``reduced``: reduced-precision formats, whose differences are
    recorded and whose accuracy gate decides."""
    rows = []
    for fmt, result in parity.items():
        runs = [(fmt, result), *((f"{fmt} ({v})", r) for v, r in result.variants.items())]
        for label, run in runs:
            for check in run.checks:
                shape = "x".join(map(str, check.input_shape))
                if check.error:
                    rows.append([label, shape, "-", "-", "-", "ERROR " + check.error])
                    continue
                for output, diff in check.outputs.items():
                    rows.append(
                        [
                            label,
                            shape,
                            output,
                            f"{diff.max_abs:.2e}" if diff.max_abs is not None else "-",
                            f"{diff.max_rel:.2e}" if diff.max_rel is not None else "-",
                            "ok"
                            if diff.ok
                            else "differs (gated on accuracy)"
                            if fmt in reduced
                            else "FAIL " + diff.error,
                        ]
                    )
    if rows:
        click.echo(table(["FORMAT", "INPUT", "OUTPUT", "MAX ABS", "MAX REL", "PARITY"], rows))


def _echo_accuracy(results: dict[str, AccuracyResult]) -> None:
    rows = []
    for fmt, r in results.items():
        agree = f"{100 * r.agreement:.2f}%" if r.agreement is not None else "-"
        verdict = "ok" if r.passed else "FAIL"
        value = "-" if r.error else f"{r.value:.4f}"
        drop = "-" if r.error else f"{r.drop:+.2f}"
        rows.append(
            [fmt, r.precision, r.dataset, str(r.samples), r.metric, value, f"{r.eager:.4f}",
             drop, agree, f"{r.max_abs_diff:.2e}", verdict if not r.error else "ERROR " + r.error]
        )  # fmt: skip
    if rows:
        heading = ["FORMAT", "PRECISION", "EVAL DATA", "SAMPLES", "METRIC", "VALUE", "EAGER"]
        heading += ["DROP", "AGREES", "MAX DIFF", "GATE"]
        click.echo(table(heading, rows))
