"""``zoo predict``: an export's answer on your files."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import click

from zoo._table import table
from zoo.cli.app import cli
from zoo.cli.output import echo_json


@cli.command("predict")
@click.argument("export", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--runtime",
    default=None,
    help="The runtime that runs the export (`zoo runtimes`; default: the first of "
    "onnxruntime, torchscript, pt2, eager whose artifact the export holds).",
)
@click.option(
    "--topk",
    type=click.IntRange(min=1, max=1000),
    default=5,
    show_default=True,
    help="Classes to show per input, best first.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1, max=4096),
    default=32,
    show_default=True,
    help="Inputs per call.",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1, max=1024),
    default=1,
    show_default=True,
    help="Threads the runtime computes with.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the predictions as JSON.")
@click.option("--csv", "as_csv", is_flag=True, help="Print input,rank,label,index,score rows.")
def predict_cmd(
    export: Path,
    inputs: tuple[Path, ...],
    runtime: str | None,
    topk: int,
    batch_size: int,
    threads: int,
    as_json: bool,
    as_csv: bool,
) -> None:
    """Classify files with an export: images (PNG, JPEG...) for image models, text files
    (one input per line) for sequence models.

    The export is vetted as `zoo bench --artifacts` vets one (hashes, weights, what its
    artifact would read or run), then one of zoo's runtimes runs its artifact, whose own
    preprocessing resizes and normalises the decoded images. Classes are named by the labels
    the export carries (the dataset it was trained on), else by their index.
    """
    from zoo.deploy.predict import Predictor

    if as_json and as_csv:
        raise click.UsageError("give --json or --csv, not both")
    predictor = Predictor(export, runtime, threads=threads)
    try:
        predictions = list(predictor.predict(inputs, topk=topk, batch_size=batch_size))
    finally:
        predictor.close()
    if predictor.labels is None:
        click.echo(f"note: {export} carries no labels: classes are their indices", err=True)
    if as_json:
        echo_json(
            {
                "export": str(export),
                "model": predictor.manifest.model,
                "runtime": predictor.runtime.name,
                "results": [p.to_dict() for p in predictions],
            }
        )
        return
    rows = [
        [p.input, str(rank), label, str(index), f"{score:.4f}"]
        for p in predictions
        for rank, (label, index, score) in enumerate(p.classes, 1)
    ]
    if as_csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(["input", "rank", "label", "index", "score"])
        writer.writerows(rows)
        return
    click.echo(table(["INPUT", "RANK", "LABEL", "INDEX", "SCORE"], rows, align="lrlrr"))
    click.echo(f"{predictor.manifest.model} on {predictor.runtime.name}", err=True)
