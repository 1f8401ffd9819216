"""``zoo check-plugin``: the conformance kit on the command line."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from zoo.cli.app import cli
from zoo.cli.output import echo_json
from zoo.cli.params import csv_values
from zoo.errors import UsageError


@cli.command("check-plugin")
@click.argument("target", metavar="PLUGIN|DISTRIBUTION")
@click.option(
    "--format",
    "formats",
    default=None,
    help="Comma-separated formats to export its models to (default: every registered one).",
)
@click.option(
    "--record",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the measured capabilities of its models to this JSON file (a spec reads it "
    "with zoo.capabilities.recorded).",
)
@click.option(
    "--keep",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep the exports and checkpoints in this directory (default: a temporary one).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def check_plugin_cmd(
    target: str, formats: str | None, record: Path | None, keep: Path | None, as_json: bool
) -> None:
    """Check that a plugin works with everything zoo does: the conformance kit.

    Every model, format, runtime, task and dataset that PLUGIN (an entry-point name, or every
    plugin of DISTRIBUTION) registers goes through what `zoo train`, `zoo export` and `zoo
    bench` do with it: spec and real outputs, a training step, deterministic eval, a
    checkpoint round trip, export to every format with the parity gate, dynamic batch; a
    format, runtime, task or dataset against a built-in model. One line per check (pass, fail
    or skip, with the reason); exit 1 if any check fails.
    """
    from zoo.bench.outputs import check_output
    from zoo.capabilities import read_record
    from zoo.conformance.kit import check_plugin, describe_result  # here: imports torch

    wanted = csv_values(formats, "--format") if formats is not None else None
    if wanted == ():
        raise click.BadParameter("give at least one format", param_hint="--format")
    if record is not None:  # before the checks, which take minutes
        check_output(record, "--record")
        record = Path(os.path.realpath(record))  # a link: its target is the record
        if record.exists():
            if not record.is_file():
                raise UsageError(f"--record {record}: not a regular file (zoo updates it)")
            try:
                read_record(record)
            except ValueError as exc:
                raise UsageError(f"--record: {exc}; give a new file") from None
    report = check_plugin(
        target,
        formats=wanted,
        workdir=keep,
        echo=None if as_json else lambda result: click.echo(describe_result(result)),
    )
    if as_json:  # the report first: a failure to write the record must not lose it
        echo_json(report.to_dict())
    else:
        click.echo(report.verdict())
    if record is not None and report.capabilities:
        report.write_record(record)
        click.echo(f"wrote {record}", err=as_json)
    if not report.ok:
        sys.exit(1)
