"""``zoo train``: its options are the declared training options (``zoo.train.config``)."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from zoo.cli.app import cli
from zoo.cli.params import Checked, parse_args
from zoo.errors import single_line
from zoo.train.config import TrainConfig, load_config_file, options


def _train_options(command: Any) -> Any:
    declared = options()
    for name in reversed([n for n in declared if n not in ("model_args", "task_args")]):
        option, what = "--" + name.replace("_", "-"), declared[name]
        if what.kind == "boolean":
            decl = f"{option}/--no-{name.replace('_', '-')}"
            command = click.option(decl, name, default=None, help=what.help)(command)
        else:
            command = click.option(option, name, type=Checked(what), default=None, help=what.help)(
                command
            )
    return command


@cli.command("train")
@click.argument("model", required=False)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    help="TOML, YAML or JSON file of these options (the command line wins).",
)
@click.option(
    "--arg",
    "args",
    multiple=True,
    metavar="KEY=VALUE",
    help="Model builder option, e.g. --arg num_layers=2 (repeatable).",
)
@click.option(
    "--task-arg",
    "task_args",
    multiple=True,
    metavar="KEY=VALUE",
    help="Option of the model's task, e.g. --task-arg kld_weight=0.5 (`zoo tasks`).",
)
@click.option(
    "--nproc",
    type=click.IntRange(min=1),
    default=None,
    help="Train data-parallel in N processes on this machine (torchrun --standalone; one per "
    "GPU, or per CPU core). Several machines: `torchrun ... -m zoo train` (docs: Training).",
)
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=None,
    help="With --nproc: the local port of the processes' rendezvous (default: a free one).",
)
@click.option("--amp/--no-amp", "legacy_amp", default=None, hidden=True)  # zoo 0.1's
@_train_options
def train_cmd(
    model: str | None,
    config_file: str | None,
    args: tuple[str, ...],
    task_args: tuple[str, ...],
    nproc: int | None,
    port: int | None,
    legacy_amp: bool | None,
    **given_options: Any,
) -> None:
    """Train MODEL on a dataset; checkpoints, metrics and logs go to the run directory.

    The model's task (`zoo tasks`) decides the loss and metrics. The run directory holds
    `last` and `best` checkpoints (safetensors + state), config.json, metrics.json, what the
    task writes (confusion_matrix.png for classifiers, reconstructions.png for the VAE), and
    tensorboard/. Ctrl-C saves a resumable checkpoint; `--resume auto` continues exactly.

    --precision, --channels-last and --compile change how it computes, not what it learns
    (weights and checkpoints stay fp32); `zoo bench-train MODEL` measures which pays here.
    """
    from zoo.train.trainer import Trainer

    values: dict[str, Any] = load_config_file(config_file) if config_file else {}
    values.update({k: v for k, v in given_options.items() if v is not None})
    if legacy_amp is not None:  # migrated to precision by TrainConfig.from_dict
        click.echo(
            f"note: --{'' if legacy_amp else 'no-'}amp is zoo 0.1's; use --precision "
            f"{'auto' if legacy_amp else 'fp32'}",
            err=True,
        )
        values["amp"] = legacy_amp
    if model:
        values["model"] = model
    values["model_args"] = {**values.get("model_args", {}), **parse_args(args)}
    values["task_args"] = {**values.get("task_args", {}), **parse_args(task_args, "--task-arg")}
    if "model" not in values:
        raise click.UsageError("give a MODEL (or `model = ...` in the --config file)")
    config = TrainConfig.from_dict(values)
    if port is not None and (nproc or 1) < 2:
        raise click.UsageError("--port is the rendezvous port of --nproc N (N >= 2): give both")
    if nproc is not None and nproc > 1 and "LOCAL_WORLD_SIZE" not in os.environ:
        _launch(config, nproc, port)
        return
    if nproc is not None and os.environ.get("LOCAL_WORLD_SIZE", str(nproc)) != str(nproc):
        raise click.UsageError(
            f"--nproc {nproc} under torchrun, which started {os.environ['LOCAL_WORLD_SIZE']} "
            "processes here: leave --nproc out and set torchrun's --nproc-per-node"
        )
    result = Trainer(config, echo=click.echo).fit()
    if result.status == "interrupted":
        sys.exit(130)
    if os.environ.get("RANK", "0") == "0":
        click.echo(f"run directory: {result.run_dir}")


def _launch(config: TrainConfig, nproc: int, port: int | None) -> None:
    """`zoo train --nproc N`: this command line again, in N processes started by torchrun's
    launcher; one line for the first rank that failed, exit 130 when interrupted."""
    from zoo.train.distributed import check_backend, check_nproc, check_port, launch

    check_nproc(nproc, config.device)
    check_backend(config.backend, config.device)
    if port is not None:
        check_port(port)
    ctx = click.get_current_context()
    argv = getattr(ctx.find_root().command, "argv", None) or sys.argv[1:]
    result = launch(argv, nproc, port=port)
    if result.code == 130:
        click.echo("zoo: interrupted", err=True)
        sys.exit(130)
    if result.code:
        click.echo(f"zoo: error: {single_line(result.message)}", err=True)
        sys.exit(result.code)
