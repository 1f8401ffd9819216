"""The ``zoo`` group: every user error becomes one line on stderr and an exit code (2 usage,
1 runtime), and a Ctrl-C while zoo imports is held until the import is done."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

import click

from zoo._interrupts import ImportSafeInterrupt, import_safe_interrupts
from zoo._version import __version__
from zoo.errors import UsageError, ZooError, single_line

__all__ = ["ZooGroup", "cli"]


class _EchoHandler(logging.Handler):
    """Plugin warnings as ``zoo: warning: ...`` on whatever stderr is current."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(f"zoo: warning: {record.getMessage()}", err=True)


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
        with import_safe_interrupts() as interrupt:
            return self._main(interrupt, args, prog_name, complete_var, **extra)

    def _main(
        self,
        interrupt: ImportSafeInterrupt,
        args: Sequence[str] | None,
        prog_name: str | None,
        complete_var: str | None,
        **extra: Any,
    ) -> Any:
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
            if interrupt.pending:  # a Ctrl-C held through an import the command ended in
                raise click.Abort
        except click.exceptions.NoArgsIsHelpError as exc:  # `zoo` alone: help, not an error
            exc.show()  # as click does: the help on stderr, exit 2
            sys.exit(exc.exit_code)
        except click.UsageError as exc:  # click's own: missing argument, unknown option...
            hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx else ""
            click.echo(f"zoo: error: {single_line(exc.format_message())}{hint}", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            click.echo(f"zoo: error: {single_line(exc.format_message())}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("zoo: aborted", err=True)
            sys.exit(130)
        except BrokenPipeError:  # `zoo list | head`: the reader left; say nothing
            # Python's documented recipe: point stdout at devnull so the exit flush is silent.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort, BrokenPipeError):
            raise
        except ZooError as exc:
            _record_for_torchrun(exc, single_line(str(exc)))
            if ctx.params.get("debug"):
                raise
            click.echo(f"zoo: error: {single_line(str(exc))}", err=True)
            ctx.exit(2 if isinstance(exc, UsageError) else 1)
        except Exception as exc:
            _record_for_torchrun(exc, f"{type(exc).__name__}: {single_line(str(exc))}")
            if ctx.params.get("debug"):
                raise
            click.echo(
                f"zoo: error: {type(exc).__name__}: {single_line(str(exc))} "
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
