"""The SIGINT handler that holds a Ctrl-C: where zoo's command line and its plugin manager meet.

zoo's command line installs a SIGINT handler that holds a Ctrl-C landing in an import until
the import is done (:class:`zoo.cli.interrupts.ImportSafeInterrupt`) and registers it here
with :func:`set_interrupt_handler`. The plugin manager, a layer below the command line,
replaces the SIGINT handler while a plugin loads; :func:`holding_handler` tells it whether
the handler it replaced is that one, whose held Ctrl-C it then delivers after the plugin.
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["HoldingHandler", "holding_handler", "registered_handler", "set_interrupt_handler"]


class HoldingHandler(Protocol):
    """A SIGINT handler that may hold a Ctrl-C instead of raising ``KeyboardInterrupt`` at
    once; whoever delivers the held one sets :attr:`pending` back to False."""

    #: A Ctrl-C arrived and is held, not raised yet.
    pending: bool

    def __call__(self, signum: int, frame: Any) -> object: ...


_registered: HoldingHandler | None = None


def set_interrupt_handler(handler: HoldingHandler | None) -> HoldingHandler | None:
    """Register ``handler`` as zoo's SIGINT handler that holds a Ctrl-C (None: no such
    handler now); return the one registered before, to register again when done."""
    global _registered
    before, _registered = _registered, handler
    return before


def registered_handler() -> HoldingHandler | None:
    """The handler :func:`set_interrupt_handler` registered, if any."""
    return _registered


def holding_handler(handler: object) -> HoldingHandler | None:
    """``handler`` (a SIGINT handler, as ``signal.getsignal`` returns it) if it is zoo's
    handler that holds a Ctrl-C, else None.

    That is the handler the command line registered (:func:`set_interrupt_handler`): no
    other handler is taken for it, whatever attributes it has.
    """
    if handler is not None and handler is _registered:
        return _registered
    return None
