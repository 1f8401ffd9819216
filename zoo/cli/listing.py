"""The listing commands: ``zoo list``, ``info``, ``plugins``, ``formats``, ``runtimes``,
``tasks`` and ``datasets``."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import click

from zoo._pluginmanager import PROBE_TIMEOUT, get_plugins, get_spec, probe_plugins
from zoo._table import table
from zoo.capabilities import Capabilities
from zoo.cli.app import cli
from zoo.cli.output import echo_json, echo_listing
from zoo.cli.params import parse_args
from zoo.errors import PluginError, ZooError
from zoo.registry import ModelSpec, json_value, options_of, suggest

_YES_NO = {True: "y", False: "-", None: "?"}
_EXPORT_WORD = {True: "yes", False: "no", None: "not measured"}


@cli.command("list")
@click.argument("pattern", required=False, default="*")
@click.option("--task", help="Only models of this task (`zoo tasks`).")
@click.option("--tag", help="Only models with this tag.")
@click.option("--exclude", multiple=True, metavar="PATTERN", help="Leave out matching names.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (a list of specs).")
def list_cmd(
    pattern: str, task: str | None, tag: str | None, exclude: tuple[str, ...], as_json: bool
) -> None:
    """List registered models; PATTERN takes wildcards (`resnet*`).

    One column per export format (`zoo formats`), and DYN: whether `zoo export` works for the
    model in that format, and whether exported graphs take any batch size (y yes, - no, ? not
    measured). The built-in models' are measured (`make capabilities`); a plugin's model is
    not measured until its author measures it. `zoo info NAME` says why a format is missing.
    """
    plugins = get_plugins()
    registry = plugins.models
    names = registry.list(pattern, exclude=exclude, task=task, tag=tag)
    specs = [registry.get(n) for n in names]
    if as_json:
        echo_json([s.to_dict() for s in specs])
        return
    if not names:
        hint = suggest(pattern, registry.list()) if not any(ch in pattern for ch in "*?[") else []
        extra = f"; did you mean {', '.join(hint)}?" if hint else ""
        tasks = sorted({s.task for s in registry})
        if task is not None and task not in tasks:
            extra += f" (no model has task {task!r}; the models' tasks: {', '.join(tasks)})"
        click.echo(f"zoo: no model matches {pattern!r} with these filters{extra}", err=True)
        sys.exit(1)
    formats = plugins.formats.full_precision()  # the formats a capability record measures
    rows = []
    for s in specs:
        caps = s.capabilities
        rows.append(
            [
                s.name,
                s.task,
                s.input.describe(),
                str(s.num_classes or ""),
                *(_YES_NO[caps.works(f.name)] for f in formats),
                _YES_NO[caps.dynamic_batch],
                s.plugin,
                s.summary,
            ]
        )
    headers = [
        "NAME",
        "TASK",
        "INPUT",
        "CLASSES",
        *(f.column for f in formats),
        "DYN",
        "PLUGIN",
        "SUMMARY",
    ]
    click.echo(table(headers, rows))


def _exports_line(caps: Capabilities, formats: Sequence[str]) -> str:
    """``torchscript yes (script), onnx no, ...`` for every registered format."""
    cells = []
    for fmt in [*formats, *(f for f in caps.formats if f not in formats)]:
        outcome = caps.outcome(fmt)
        how = f" ({outcome.method})" if outcome.method else ""
        cells.append(f"{fmt} {_EXPORT_WORD[outcome.works]}{how}")
    cells.append(f"dynamic batch {_EXPORT_WORD[caps.dynamic_batch]}")
    return ", ".join(cells) + f" ({caps.measured or 'not measured'})"


def _precisions(spec: ModelSpec) -> tuple[dict[str, list[str]], str | None]:
    """Per fp32 format the model exports to (or not measured) that can write here, the
    precisions its variants add; and why the model has no reduced precision at all (None
    when it has)."""
    plugins = get_plugins()
    precisions = {
        fmt.name: [
            f.precision
            for f in plugins.formats
            if f.name == fmt.name or (f.variant_of == fmt.name and f.unavailable() is None)
        ]
        for fmt in plugins.formats.full_precision()
        if spec.capabilities.outcome(fmt.name).works is not False and fmt.unavailable() is None
    }
    try:
        task = plugins.tasks.create(spec.task, {})
    except ZooError:
        return precisions, f"task {spec.task!r} is not installed"
    if task.gate_metric is None:
        return {f: ["fp32"] for f in precisions}, (
            f"task {spec.task!r} measures no accuracy to gate reduced precision on"
        )
    return precisions, None


def _precisions_line(precisions: dict[str, list[str]], reduced: str | None) -> str:
    """``onnx fp32/int8, pt2 fp32/bf16, ...; bf16 and int8 are gated on accuracy...``."""
    cells = ", ".join(f"{fmt} {'/'.join(p)}" for fmt, p in precisions.items()) or "-"
    if reduced is not None:
        return f"{cells} (fp32 only: {reduced})"
    return f"{cells} (reduced precision: from a checkpoint, gated on held-out accuracy)"


def _format_count(n: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return str(n)


@cli.command("info")
@click.argument("name")
@click.option(
    "--arg",
    "args",
    multiple=True,
    metavar="KEY=VALUE",
    help="Builder option, e.g. --arg num_classes=1000 (repeatable).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the card as JSON.")
def info_cmd(name: str, args: tuple[str, ...], as_json: bool) -> None:
    """Show the card of model NAME: its spec, parameters and FLOPs (measured at batch 1)."""
    from zoo.card import model_card

    spec = get_spec(name)
    card = model_card(spec, **parse_args(args))
    record = get_plugins().record(card["plugin"])
    if record is not None and record.distribution:
        card["distribution"] = {"name": record.distribution, "version": record.version}
    card["precisions"], card["reduced_precision"] = _precisions(spec)
    if as_json:
        echo_json(card)
        return
    m = card["measured"]
    inp = card["input"]
    outputs = ", ".join(
        f"{o['name']} [B, {', '.join(map(str, o['shape']))}]" for o in card["outputs"]
    )
    options = ", ".join(
        f"{k}={v!r}" for k, v in {**card["options"], **card["options_used"]}.items()
    )
    lines = [
        f"{card['name']}: {card['summary']}",
        ("task", card["task"]),
        (
            "plugin",
            card["plugin"]
            + (
                " ({name} {version})".format(**card["distribution"])
                if "distribution" in card
                else ""
            ),
        ),
        ("input", f"{inp['name']}: {spec.input.describe()}"),
        ("outputs", outputs),
        ("classes", str(card["num_classes"] or "-")),
        ("tags", ", ".join(card["tags"]) or "-"),
        ("source", card["source"] or "-"),
        ("options", options or "-"),
        (
            "exports",
            _exports_line(
                spec.capabilities, [f.name for f in get_plugins().formats.full_precision()]
            ),
        ),
        ("precisions", _precisions_line(card["precisions"], card["reduced_precision"])),
        ("parameters", f"{m['parameters']:,} ({m['trainable_parameters']:,} trainable)"),
        (
            "FLOPs",
            f"{_format_count(m['flops'])}FLOPs per sample ({_format_count(m['flops'] // 2)}MACs)",
        ),
        ("module", m["class"]),
    ]
    if spec.capabilities.notes:
        lines.append(("notes", spec.capabilities.notes))
    click.echo(lines[0])
    for key, value in lines[1:]:
        click.echo(f"  {key:<11} {value}")


@cli.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (a list of plugin records).")
@click.option(
    "--isolated",
    is_flag=True,
    help="Load each plugin in a child process of its own and report the ones that crash the "
    "interpreter, hang or fail; exit 1 if any does.",
)
@click.option(
    "--timeout",
    type=float,
    default=PROBE_TIMEOUT,
    show_default=True,
    help="With --isolated: seconds a plugin may take to load before it counts as hung.",
)
def plugins_cmd(as_json: bool, isolated: bool, timeout: float) -> None:
    """List plugins: name, status, distribution, version, what each registered (models,
    formats, runtimes, tasks, datasets), and why a failed one failed.

    Plugins are code that runs when zoo loads them: ZOO_DISABLE_PLUGINS=a,b skips plugins by
    name or distribution. A plugin that kills or hangs the interpreter while it loads takes
    every zoo command with it: --isolated finds it without loading any plugin in this process.
    """
    if isolated and not (math.isfinite(timeout) and timeout > 0):
        raise click.BadParameter(
            f"{timeout} is not a positive number of seconds", param_hint="--timeout"
        )
    records = probe_plugins(timeout=timeout) if isolated else get_plugins().records
    if as_json:
        echo_json([r.to_dict() for r in records])
    else:
        rows = [
            [
                r.name,
                r.status,
                r.distribution or "-",
                r.version or "-",
                "; ".join(f"{kind} {', '.join(names)}" for kind, names in r.provides().items())
                or "-",
            ]
            for r in records
        ]
        click.echo(table(["PLUGIN", "STATUS", "DISTRIBUTION", "VERSION", "PROVIDES"], rows))
        for r in records:
            if r.error or r.warning:
                how = _PLUGIN_TROUBLE.get(r.status, r.status)
                click.echo(f"\n{r.name} ({r.entry_point}) {how}: {r.error or r.warning}")
    broken = [r for r in records if r.status in ("failed", "crashed", "hung")]
    if isolated and broken:
        names = ",".join(r.name for r in broken)
        raise PluginError(
            f"{len(broken)} of {len(records)} plugins broken: "
            + ", ".join(f"{r.name} ({r.status})" for r in broken)
            + f"; uninstall or fix them, or set ZOO_DISABLE_PLUGINS={names} to skip them"
        )


_PLUGIN_TROUBLE = {"empty": "registers nothing", "crashed": "killed the interpreter"}


@dataclass(frozen=True)
class Listing:
    """A command that lists what plugins registered of one kind: ``--json`` prints the
    entries, otherwise a table of ``columns`` (heading -> an entry's cell)."""

    command: str
    help: str
    entries: Callable[[], list[dict[str, Any]]]
    columns: dict[str, Callable[[dict[str, Any]], str]]

    def add_to(self, group: click.Group) -> None:
        def command(as_json: bool) -> None:
            echo_listing(self.entries(), as_json, self.columns)

        command.__doc__ = self.help
        option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
        group.command(self.command)(option(command))


def _formats() -> list[dict[str, Any]]:
    registry = get_plugins().formats
    return [
        {
            "name": f.name,
            "files": list(f.files),
            "default": f.default,
            "isolated": f.isolated,
            "devices": list(f.devices),
            "precision": f.precision,
            "variant_of": f.variant_of,
            "plugin": registry.plugin_of(f.name),
            "unavailable": f.unavailable(),
            "description": f.description,
        }
        for f in registry
    ]


def _runtimes() -> list[dict[str, Any]]:
    registry = get_plugins().runtimes
    return [
        {
            "name": r.name,
            "format": r.format,
            "devices": list(r.devices),
            "reference": r.reference,
            "peer": r.peer,
            "plugin": registry.plugin_of(r.name),
            "description": r.description,
        }
        for r in registry
    ]


def _tasks() -> list[dict[str, Any]]:
    registry = get_plugins().tasks
    return [
        {
            "name": t.name,
            "metrics": dict(t.metrics),
            "monitor": t.monitor,
            "options": {k: json_value(v) for k, v in options_of(t).items()},
            "plugin": registry.plugin_of(t.name),
            "description": t.description,
        }
        for t in registry
    ]


def _datasets() -> list[dict[str, Any]]:
    from zoo.data import default_dataset_registry  # here: the loaders import torch

    return [
        {"name": e.display_name, "kind": e.kind, "plugin": e.plugin, "description": e.description}
        for e in default_dataset_registry()
    ]


def _name(entry: dict[str, Any]) -> str:
    return str(entry["name"])


def _plugin(entry: dict[str, Any]) -> str:
    return str(entry["plugin"])


def _description(entry: dict[str, Any]) -> str:
    return str(entry["description"])


LISTINGS = (
    Listing(
        "formats",
        "List the export formats `zoo export --format` accepts, from every plugin.",
        _formats,
        {
            "FORMAT": _name,
            "DEFAULT": lambda e: "yes" if e["default"] else "-",
            "PRECISION": lambda e: e["precision"],
            "FILES": lambda e: ", ".join(e["files"]),
            "PLUGIN": _plugin,
            "DESCRIPTION": lambda e: (
                f"UNAVAILABLE: {e['unavailable']}" if e["unavailable"] else e["description"]
            ),
        },
    ),
    Listing(
        "runtimes",
        "List the runtimes `zoo bench --runtime` accepts, from every plugin.",
        _runtimes,
        {
            "RUNTIME": _name,
            "FORMAT": lambda e: e["format"] or "-",
            "DEVICES": lambda e: ",".join(e["devices"]),
            "PLUGIN": _plugin,
            "DESCRIPTION": _description,
        },
    ),
    Listing(
        "tasks",
        "List the training tasks models can name, from every plugin, with their options.",
        _tasks,
        {
            "TASK": _name,
            "MONITOR": lambda e: f"val_{e['monitor']}",
            "OPTIONS": lambda e: ", ".join(f"{k}={v!r}" for k, v in e["options"].items()) or "-",
            "PLUGIN": _plugin,
            "DESCRIPTION": _description,
        },
    ),
    Listing(
        "datasets",
        "List the datasets `zoo train --data` accepts, from every plugin.",
        _datasets,
        {"DATASET": _name, "PLUGIN": _plugin, "DESCRIPTION": _description},
    ),
)
for _listing in LISTINGS:
    _listing.add_to(cli)
