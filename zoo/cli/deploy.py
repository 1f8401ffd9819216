"""``zoo predict``: an export's answer on your files; ``zoo serve``: the export over HTTP."""

from __future__ import annotations

import csv
import re
import sys
from pathlib import Path

import click

from zoo._table import table
from zoo.cli.app import cli
from zoo.cli.output import echo_json

#: A model name in v2 URLs (Triton's model names).
_MODEL_NAME = re.compile(r"[A-Za-z0-9_.-]{1,128}")


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


@cli.command("serve")
@click.argument("export", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--runtime",
    default=None,
    help="The runtime each replica runs the export with (`zoo runtimes`; default: as zoo "
    "predict's).",
)
@click.option(
    "--precision",
    type=click.Choice(["fp32", "bf16", "fp16", "int8"]),
    default="fp32",
    show_default=True,
    help="Serve the runtime format's variant in this precision (exported with --precision).",
)
@click.option(
    "--device",
    type=click.Choice(["cpu", "cuda"]),
    default=None,
    help="Where the replicas run the model (default: cuda where present, else cpu).",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="The address to listen on; 0.0.0.0 opens it to the network (no authentication).",
)
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option(
    "--replicas",
    type=click.IntRange(1, 1024),
    default=1,
    show_default=True,
    help="Copies of the model, each in a process of its own. One answers on --port itself; "
    "more are reached through Ray's proxy, which spreads requests among them (and costs "
    "milliseconds of CPU per request).",
)
@click.option(
    "--threads",
    type=click.IntRange(1, 1024),
    default=1,
    show_default=True,
    help="Threads each replica's runtime computes with (and the CPUs Ray reserves for it).",
)
@click.option(
    "--max-batch",
    type=click.IntRange(1, 1024),
    default=8,
    show_default=True,
    help="Requests a replica runs as one batch at most.",
)
@click.option(
    "--batch-wait-ms",
    type=click.FloatRange(0, 1000),
    default=2.0,
    show_default=True,
    help="How long the first request of a batch waits for others (ms).",
)
@click.option(
    "--max-request-mb",
    type=click.FloatRange(0.001, 4096),
    default=16.0,
    show_default=True,
    help="A larger request body is refused (413) before it is read.",
)
@click.option("--name", default=None, help="The model's name in URLs (default: the model's).")
@click.option(
    "--address",
    default=None,
    help="A running Ray cluster to deploy to (`ray start`, KubeRay); default: start Ray "
    "here, and stop it when the server stops. Every node must see EXPORT at the same path.",
)
def serve_cmd(
    export: Path,
    runtime: str | None,
    precision: str,
    device: str | None,
    host: str,
    port: int,
    replicas: int,
    threads: int,
    max_batch: int,
    batch_wait_ms: float,
    max_request_mb: float,
    name: str | None,
    address: str | None,
) -> None:
    """Serve an export over HTTP with the Open Inference Protocol (KServe v2), on Ray Serve.

    Triton's client (tritonclient.http), KServe's and curl work against it: GET
    /v2/health/ready, GET /v2/models/NAME (metadata), POST /v2/models/NAME/infer (JSON or
    binary tensors). Requests that arrive together run as one batch. The export is vetted
    as zoo predict vets one before anything listens; SIGINT or SIGTERM stops the server.
    Needs the serve extra: pip install 'zoo[serve]'.
    """
    import importlib.util

    if importlib.util.find_spec("ray") is None or importlib.util.find_spec("ray.serve") is None:
        raise click.UsageError("zoo serve runs on Ray Serve: pip install 'zoo[serve]'")
    if name is not None and not _MODEL_NAME.fullmatch(name):
        raise click.BadParameter(
            "letters, digits, '_', '-' and '.' only (it is part of URLs)", param_hint="--name"
        )
    from zoo.deploy.loading import open_export
    from zoo.deploy.serve import ServeOptions, serve_forever
    from zoo.deploy.v2 import V2Model

    if device is None:
        from zoo.runtimes import cuda_present

        device = "cuda" if cuda_present() else "cpu"
    options = ServeOptions(
        runtime=runtime,
        precision=precision,
        device=device,
        threads=threads,
        replicas=replicas,
        max_batch=max_batch,
        batch_wait_ms=batch_wait_ms,
        max_request_bytes=int(max_request_mb * 2**20),
        name=name,
    )
    # Vetted and loaded once here, before Ray starts: a bad export is one line, not a
    # replica that fails in a loop.
    opened = open_export(export, runtime, device=device, threads=threads, precision=precision)
    try:
        model = V2Model(opened.manifest, name=name)
        described = (
            f"{opened.manifest.model} on {opened.runtime.name} ({opened.precision}, {device})"
        )
    finally:
        opened.close()
    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(
            f"zoo: listening on {host}: anyone who reaches it can call the model "
            "(zoo serve has no authentication; put it behind your gateway)",
            err=True,
        )

    def ready(url: str) -> None:
        click.echo(
            f"zoo: serving {described} at {url}/v2/models/{model.name} "
            f"({replicas} replica{'s' if replicas > 1 else ''}, batches of up to {max_batch}); "
            "Ctrl-C or SIGTERM stops it",
            err=True,
        )

    serve_forever(export, options, host=host, port=port, address=address, ready=ready)
    click.echo("zoo: stopped", err=True)
