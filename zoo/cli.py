"""The ``zoo`` command line.

Kept cheap to import: ``zoo --help`` loads no plugin and no torch, so the modules that import
torch (the trainer, the exporter, the benchmark, the model card, the dataset loaders) are
imported by the subcommands that use them. Errors zoo raises on purpose print one line to
stderr and exit 2 (usage) or 1 (runtime); ``zoo --debug ...`` shows the traceback instead.
"""

from __future__ import annotations

import ast
import json
import logging
import math
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from zoo._pluginmanager import PROBE_TIMEOUT, get_plugins, get_spec, probe_plugins
from zoo._version import __version__
from zoo.bench.timing import TimingPolicy
from zoo.capabilities import Capabilities
from zoo.errors import PluginError, UsageError, ZooError
from zoo.registry import ModelSpec, json_value, options_of, suggest
from zoo.train.config import Option, TrainConfig, accepts, load_config_file, options

if TYPE_CHECKING:
    from zoo.export.accuracy import AccuracyResult
    from zoo.export.gates import ParityResult

_YES_NO = {True: "y", False: "-", None: "?"}
_EXPORT_WORD = {True: "yes", False: "no", None: "not measured"}


class _EchoHandler(logging.Handler):
    """Plugin warnings as ``zoo: warning: ...`` on whatever stderr is current."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(f"zoo: warning: {record.getMessage()}", err=True)


class _ImportSafeInterrupt:
    """SIGINT handler: Ctrl-C raises KeyboardInterrupt, except while a module imports.

    torch imports numpy from C and swallows any exception there, KeyboardInterrupt too: zoo
    then went on with half a numpy (``AttributeError: module 'numpy' has no attribute
    'multiply'``). So a Ctrl-C during an import is held (``pending``) until the import is
    done, checked every 50 ms by a timer that sends :data:`RECHECK` (:meth:`recheck`); a
    second Ctrl-C from the user while one is held aborts at once.

    The timer has a signal of its own: it used to send SIGINT again, and a process that was
    not scheduled between the timer's SIGINT and the user's second one got one SIGINT for
    both (the kernel keeps one pending), taken for the timer's: the user's Ctrl-C was lost.
    A CI run under load lost one so (``zoo list`` went on importing for 30 s); this is the
    race that can do it, not reproduced on demand.
    """

    #: What the timer sends to look again (SIGALRM: zoo sets no alarm of its own).
    RECHECK = signal.SIGALRM

    def __init__(self) -> None:
        #: A Ctrl-C is held until the import it landed in is done.
        self.pending = False
        self._timer_armed = False
        self._timer: threading.Timer | None = None
        self._watching = False
        self._profile: Any = None

    def __call__(self, signum: int, frame: Any) -> None:
        """The user's Ctrl-C (SIGINT)."""
        if not _importing(frame):
            self.pending = False
            self.restore()
            raise KeyboardInterrupt
        if self.pending:  # the user's second Ctrl-C during an import
            os.write(2, b"\nzoo: aborted\n")
            os._exit(130)
        self.pending = True
        self._hold()

    def recheck(self, signum: int, frame: Any) -> None:
        """The timer's look (:data:`RECHECK`): deliver a held Ctrl-C once the import is done."""
        self._timer_armed = False
        if not self.pending:  # delivered already (the import returned, or Ctrl-C again)
            return
        if not _importing(frame):
            self.pending = False
            self.restore()
            raise KeyboardInterrupt
        self._hold()

    def _hold(self) -> None:
        self._watch_imports()
        if not self._timer_armed:
            self._timer_armed = True
            self._timer = threading.Timer(0.05, self._recheck)
            self._timer.daemon = True
            self._timer.start()

    def _recheck(self) -> None:
        if not self.pending:  # delivered as its import returned: nothing to send
            self._timer_armed = False
            return
        os.kill(os.getpid(), self.RECHECK)

    def _watch_imports(self) -> None:
        """Delivers a held Ctrl-C as soon as the outermost import returns to the command.

        The timer alone was a race: on a busy machine the command could get from its last
        import to its first write (the run directory) before the timer's next look. A
        profile function sees the return of the import machinery's frame that was called
        from code that is not itself importing, and raises there. It runs only while a
        Ctrl-C is held, in the main thread.
        """
        if self._watching:
            return
        self._watching = True
        self._profile = sys.getprofile()  # cProfile's, say: put back by restore()

        def watch(frame: Any, event: str, arg: Any) -> None:
            if (
                event == "return"
                and self.pending
                and frame.f_code.co_filename.startswith("<frozen importlib")
                and not _importing(frame.f_back)
            ):
                self.pending = False
                self.restore()
                raise KeyboardInterrupt

        sys.setprofile(watch)

    def restore(self) -> None:
        """Stops watching imports (a no-op when no Ctrl-C was held)."""
        if self._watching:
            self._watching = False
            sys.setprofile(self._profile)

    def close(self) -> None:
        """Before the handlers go back: no timer left to send :data:`RECHECK` to a process
        whose handler for it is the default one (which ends the process)."""
        self.pending = False
        timer = self._timer
        if timer is not None:
            timer.cancel()
            timer.join()
        self.restore()


#: Every character ``str.splitlines`` breaks a line at, and how an error message shows it.
_LINE_BREAKS = str.maketrans(
    {c: c.encode("unicode_escape").decode() for c in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"}
)


def _one_line(message: str) -> str:
    """An error stays on one line, whatever it quotes (a value typed with a newline, or with
    any other character that ends a line: a record separator, a Unicode line separator)."""
    return message.translate(_LINE_BREAKS)


def _importing(frame: Any) -> bool:
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


class ZooGroup(click.Group):
    """Turns every user error into one line on stderr and an exit code (2 usage, 1 runtime)."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        # What `zoo train --nproc N` hands each process it starts.
        self.argv = list(args) if args is not None else sys.argv[1:]
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        interrupt = _ImportSafeInterrupt()
        previous = previous_recheck = None
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGINT, interrupt)
            previous_recheck = signal.signal(interrupt.RECHECK, interrupt.recheck)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
            if interrupt.pending:  # a Ctrl-C held through an import the command ended in
                raise click.Abort
        except click.exceptions.NoArgsIsHelpError as exc:  # `zoo` alone: help, not an error
            exc.show()  # as click does: the help on stderr, exit 2
            sys.exit(exc.exit_code)
        except click.UsageError as exc:  # click's own: missing argument, unknown option...
            hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx else ""
            click.echo(f"zoo: error: {_one_line(exc.format_message())}{hint}", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            click.echo(f"zoo: error: {_one_line(exc.format_message())}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("zoo: aborted", err=True)
            sys.exit(130)
        except BrokenPipeError:  # `zoo list | head`: the reader left; say nothing
            # Python's documented recipe: point stdout at devnull so the exit flush is silent.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(1)
        finally:
            interrupt.close()
            if previous is not None:  # called in-process (tests, scripts): as it was
                signal.signal(signal.SIGINT, previous)
            if previous_recheck is not None:
                signal.signal(interrupt.RECHECK, previous_recheck)
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort, BrokenPipeError):
            raise
        except ZooError as exc:
            _record_for_torchrun(exc, _one_line(str(exc)))
            if ctx.params.get("debug"):
                raise
            click.echo(f"zoo: error: {_one_line(str(exc))}", err=True)
            ctx.exit(2 if isinstance(exc, UsageError) else 1)
        except Exception as exc:
            _record_for_torchrun(exc, f"{type(exc).__name__}: {_one_line(str(exc))}")
            if ctx.params.get("debug"):
                raise
            click.echo(
                f"zoo: error: {type(exc).__name__}: {_one_line(str(exc))} "
                "(run `zoo --debug ...` to see the traceback)",
                err=True,
            )
            ctx.exit(1)


def _record_for_torchrun(exc: BaseException, message: str) -> None:
    """In a process torchrun started: leave the one-line error where torchrun (and
    `zoo train --nproc`) read which rank failed and why."""
    if os.environ.get("TORCHELASTIC_ERROR_FILE"):
        from zoo.train.distributed import is_peer_failure, record_error

        record_error(message, peer=is_peer_failure(exc))


@click.group(cls=ZooGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="zoo")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
def cli(debug: bool) -> None:
    """zoo: register, train, export and benchmark PyTorch models through plugins.

    Models come from plugins declared in the `zoo` entry-point group, zoo's built-ins
    included. ZOO_DISABLE_PLUGINS=a,b skips plugins by name or distribution;
    ZOO_STRICT_PLUGINS=1 makes a failing plugin an error instead of a warning.
    """
    logger = logging.getLogger("zoo")
    if not any(isinstance(h, _EchoHandler) for h in logger.handlers):
        logger.addHandler(_EchoHandler())
        logger.propagate = False


def _parse_args(pairs: Sequence[str], option: str = "--arg") -> dict[str, Any]:
    """``KEY=VALUE`` pairs; values are Python literals where they parse, else strings."""
    kwargs: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint=option)
        try:
            value: Any = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw
        kwargs[key.strip()] = value
    return kwargs


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=True)]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
        for line in [headers, *rows]
    ]
    return "\n".join(lines)


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False))


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
        _echo_json([s.to_dict() for s in specs])
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
    click.echo(_table(headers, rows))


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
    card = model_card(spec, **_parse_args(args))
    record = get_plugins().record(card["plugin"])
    if record is not None and record.distribution:
        card["distribution"] = {"name": record.distribution, "version": record.version}
    card["precisions"], card["reduced_precision"] = _precisions(spec)
    if as_json:
        _echo_json(card)
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
        _echo_json([r.to_dict() for r in records])
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
        click.echo(_table(["PLUGIN", "STATUS", "DISTRIBUTION", "VERSION", "PROVIDES"], rows))
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


class _Checked(click.ParamType):
    """A value from the command line, parsed and checked against its declared
    :class:`~zoo.train.config.Option` (the schema config files are checked against): the
    same type, range and message wherever the value comes from."""

    def __init__(self, declared: Option) -> None:
        self.declared = declared
        self.name = {"integer": "integer", "number": "float", "integers": "integers"}.get(
            declared.kind, "text"
        )

    def get_metavar(self, param: click.Parameter, ctx: click.Context) -> str | None:
        choices = self.declared.choices
        return f"[{'|'.join(choices)}]" if choices else None

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        parsers: dict[str, Callable[[str], Any]] = {
            "integer": int,
            "number": float,
            "integers": lambda text: [int(v) for v in text.split(",") if v.strip()],
        }
        parse = parsers.get(self.declared.kind, str)
        try:
            parsed = parse(value)
        except ValueError:
            parsed = None
        if parsed is None or not accepts(self.declared, parsed):
            self.fail(f"must be {self.declared.expects()}, got {value!r}", param, ctx)
        return parsed


#: Tolerances, thresholds and durations: finite, and not negative.
_NON_NEGATIVE = _Checked(Option("number", minimum=0))


def _train_options(command: Any) -> Any:
    declared = options()
    for name in reversed([n for n in declared if n not in ("model_args", "task_args")]):
        option, what = "--" + name.replace("_", "-"), declared[name]
        if what.kind == "boolean":
            decl = f"{option}/--no-{name.replace('_', '-')}"
            command = click.option(decl, name, default=None, help=what.help)(command)
        else:
            command = click.option(option, name, type=_Checked(what), default=None, help=what.help)(
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
    values["model_args"] = {**values.get("model_args", {}), **_parse_args(args)}
    values["task_args"] = {**values.get("task_args", {}), **_parse_args(task_args, "--task-arg")}
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
        click.echo(f"zoo: error: {_one_line(result.message)}", err=True)
        sys.exit(result.code)


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
    type=_NON_NEGATIVE,
    default=1e-4,
    show_default=True,
    help="Parity: absolute tolerance.",
)
@click.option(
    "--rtol",
    type=_NON_NEGATIVE,
    default=1e-3,
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
    type=_Checked(Option("number", exclusive_minimum=0, maximum=86400)),
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
    default=0.5,
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
    default=256,
    show_default=True,
    help="int8: how many training samples calibrate the activation ranges.",
)
@click.option(
    "--eval-samples",
    type=int,
    default=2000,
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
    wanted = _csv(formats, "--format") if formats is not None else None
    report = export_model(
        name,
        out,
        formats=wanted,
        checkpoint=checkpoint,
        model_args=_parse_args(args),
        raw=raw,
        postprocess=postprocess,
        top_k=top_k,
        opset=opset,
        atol=atol,
        rtol=rtol,
        overwrite=overwrite,
        precisions=_csv(precisions, "--precision"),
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
        click.echo(_table(["FORMAT", "INPUT", "OUTPUT", "MAX ABS", "MAX REL", "PARITY"], rows))


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
        click.echo(_table(heading, rows))


def _echo_listing(
    entries: list[dict[str, Any]],
    as_json: bool,
    columns: dict[str, Callable[[dict[str, Any]], str]],
) -> None:
    """``--json``: the entries; otherwise a table of ``columns`` (heading -> an entry's cell)."""
    if as_json:
        _echo_json(entries)
        return
    rows = [[cell(entry) for cell in columns.values()] for entry in entries]
    click.echo(_table(list(columns), rows))


@cli.command("formats")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def formats_cmd(as_json: bool) -> None:
    """List the export formats `zoo export --format` accepts, from every plugin."""
    registry = get_plugins().formats
    entries = [
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
    _echo_listing(
        entries,
        as_json,
        {
            "FORMAT": lambda e: e["name"],
            "DEFAULT": lambda e: "yes" if e["default"] else "-",
            "PRECISION": lambda e: e["precision"],
            "FILES": lambda e: ", ".join(e["files"]),
            "PLUGIN": lambda e: e["plugin"],
            "DESCRIPTION": lambda e: (
                f"UNAVAILABLE: {e['unavailable']}" if e["unavailable"] else e["description"]
            ),
        },
    )


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


def _csv(value: str, option: str, cast: Any = str) -> tuple[Any, ...]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    try:
        return tuple(cast(v) for v in items)
    except ValueError:
        raise click.BadParameter(
            f"comma-separated values, got {value!r}", param_hint=option
        ) from None


#: ``zoo bench`` and ``zoo bench-train``: wait for a quiet machine before each worker.
_WAIT_QUIET = click.option(
    "--wait-quiet",
    type=_NON_NEGATIVE,
    default=0.0,
    show_default=True,
    help="Before each worker, wait up to this many seconds for other processes to use under "
    "10% of the CPUs (a shared machine).",
)


def _splits(value: str) -> tuple[tuple[int, int], ...]:
    """``1x2,2x1`` -> ((1, 2), (2, 1))."""
    splits = []
    for item in _csv(value, "--splits"):
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
    type=_NON_NEGATIVE,
    default=0.10,
    show_default=True,
    help="Regression threshold for --compare (0.10 = 10% slower).",
)
@click.option(
    "--min-time",
    type=_NON_NEGATIVE,
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
    type=_NON_NEGATIVE,
    default=0.05,
    show_default=True,
    help="How close the best two quiet rounds must be (0.05 = 5%).",
)
@click.option(
    "--max-time",
    type=_NON_NEGATIVE,
    default=600.0,
    show_default=True,
    help="Seconds after which no round beyond --rounds starts (the rows say so).",
)
@click.option(
    "--tail-bound",
    type=_NON_NEGATIVE,
    default=2.0,
    show_default=True,
    help="A row whose p90 is more than this many times its p50 is unstable.",
)
@_WAIT_QUIET
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
    type=_NON_NEGATIVE,
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
    the best samples/s and the highest QPS under --latency-bound, over thread splits.
    """
    from zoo.bench.outputs import check_output
    from zoo.bench.report import compare_runs, plot_run, print_table
    from zoo.bench.results import load_run
    from zoo.bench.runner import BenchSettings, run_bench
    from zoo.bench.scenarios import ServerPolicy

    if server_requests < 1:
        raise click.BadParameter(
            f"must be at least 1, got {server_requests}", param_hint="--server-requests"
        )
    chosen = None if runtimes == "all" else _csv(runtimes, "--runtime")
    base = load_run(baseline) if baseline is not None else None  # fail early on a bad file
    for path, option in ((json_path, "--json"), (plot_path, "--plot")):
        if path is not None:  # before the benchmark: a bad path fails now, not after it
            check_output(path, option)
    settings = BenchSettings(
        models=list(models),
        runtimes=chosen,
        devices=_csv(devices, "--device") if devices else None,
        batches=_csv(batches, "--batch", int),
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
        precisions=_csv(precisions, "--precision"),
        eval_dataset=eval_dataset,
        scenarios=_csv(scenarios, "--scenario"),
        splits=_splits(splits) if splits else None,
        latency_bound_ms=latency_bound,
        server=ServerPolicy(min_requests=server_requests, min_time_s=min_time),
        tf32=tf32,
    )
    run = run_bench(settings, echo=lambda line: click.echo(line, err=True))
    print_table(run)
    lost: list[str | None] = (
        [_save_results(run, json_path, "--json")] if json_path is not None else []
    )
    if not any(row.status == "ok" for row in run.rows):
        failed = sorted({r.runtime for r in run.rows if r.status == "failed"})
        skipped = sorted({r.runtime for r in run.rows if r.status == "skipped"})
        what = [f"{len(failed)} failed ({', '.join(failed)})"] if failed else []
        what += [f"{len(skipped)} skipped ({', '.join(skipped)})"] if skipped else []
        click.echo(f"zoo: no runtime was measured: {'; '.join(what)}", err=True)
        _outputs_failed(lost)
        sys.exit(1)
    if plot_path is not None:
        try:
            plot_run(run, plot_path)
            click.echo(f"wrote {plot_path}")
        except OSError as exc:
            why = f"cannot write --plot {plot_path} ({exc.strerror or exc})"
            if json_path is None:  # the results are nowhere yet
                lost.append(_save_results(run, plot_path, "--plot", exc))
            elif not any(lost):
                lost.append(f"{why}; the results are in {json_path}")
            else:  # the --json line says where they are
                lost.append(why)
    _outputs_failed(lost)
    if base is not None:
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
    help="Comma-separated: hand (the notes' loop), trainer (zoo's defaults), or speed options "
    "joined by + from fp32, bf16, fp16, channels-last, compile (default: hand, trainer, bf16, "
    "channels-last, compile, bf16+channels-last, channels-last+compile).",
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
@_WAIT_QUIET
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
    """Training throughput (samples/s) of NAME: the notes' hand-written loop, zoo's trainer
    with its defaults, and the trainer with each speed option (--precision, --channels-last,
    --compile and combinations), same model, data and batch.

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
        variants=_csv(variants, "--variants") if variants is not None else None,
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

    wanted = _csv(formats, "--format") if formats is not None else None
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
        _echo_json(report.to_json())
    else:
        click.echo(report.verdict())
    if record is not None and report.capabilities:
        report.write_record(record)
        click.echo(f"wrote {record}", err=as_json)
    if not report.ok:
        sys.exit(1)


@cli.command("runtimes")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def runtimes_cmd(as_json: bool) -> None:
    """List the runtimes `zoo bench --runtime` accepts, from every plugin."""
    registry = get_plugins().runtimes
    entries = [
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
    _echo_listing(
        entries,
        as_json,
        {
            "RUNTIME": lambda e: e["name"],
            "FORMAT": lambda e: e["format"] or "-",
            "DEVICES": lambda e: ",".join(e["devices"]),
            "PLUGIN": lambda e: e["plugin"],
            "DESCRIPTION": lambda e: e["description"],
        },
    )


@cli.command("tasks")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def tasks_cmd(as_json: bool) -> None:
    """List the training tasks models can name, from every plugin, with their options."""
    registry = get_plugins().tasks
    entries = [
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
    _echo_listing(
        entries,
        as_json,
        {
            "TASK": lambda e: e["name"],
            "MONITOR": lambda e: f"val_{e['monitor']}",
            "OPTIONS": lambda e: ", ".join(f"{k}={v!r}" for k, v in e["options"].items()) or "-",
            "PLUGIN": lambda e: e["plugin"],
            "DESCRIPTION": lambda e: e["description"],
        },
    )


@cli.command("datasets")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def datasets_cmd(as_json: bool) -> None:
    """List the datasets `zoo train --data` accepts, from every plugin."""
    from zoo.data import default_dataset_registry  # here: the loaders import torch

    entries = [
        {
            "name": e.display_name,
            "kind": e.kind,
            "plugin": e.plugin,
            "description": e.description,
        }
        for e in default_dataset_registry()
    ]
    _echo_listing(
        entries,
        as_json,
        {
            "DATASET": lambda e: e["name"],
            "PLUGIN": lambda e: e["plugin"],
            "DESCRIPTION": lambda e: e["description"],
        },
    )


def main(argv: Sequence[str] | None = None) -> None:
    cli.main(args=list(argv) if argv is not None else None, prog_name="zoo")


if __name__ == "__main__":  # pragma: no cover
    main()
