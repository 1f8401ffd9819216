"""Every SIGINT (Ctrl-C) handler of zoo, in one module.

- :class:`ImportSafeInterrupt`: the command line's (:func:`import_safe_interrupts`). A Ctrl-C
  raises ``KeyboardInterrupt``, except while a module imports: torch imports numpy from C and
  swallows any exception there, so a Ctrl-C landing in an import is held until it is done.
- :class:`PluginInterruptWatch`: the plugin manager's, while a plugin loads. It tells a real
  Ctrl-C from a plugin raising ``KeyboardInterrupt`` itself, and delivers a Ctrl-C that the
  command line's handler held while the plugin imported (the plugin manager, a layer below
  the command line, finds that handler through :func:`set_interrupt_handler` and
  :func:`holding_handler`, not by its attributes).
- :class:`StopRequest`: the trainer's, while it trains. The first Ctrl-C stops at the next
  batch (with a checkpoint); a second one forces, except while a checkpoint is written.
- :func:`stop_on_signals`: a server's (``zoo serve``): SIGINT and SIGTERM ask it to shut down.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType, TracebackType
from typing import Any, Protocol

__all__ = [
    "HoldingHandler",
    "ImportSafeInterrupt",
    "PluginInterruptWatch",
    "StopRequest",
    "holding_handler",
    "import_safe_interrupts",
    "importing",
    "registered_handler",
    "set_interrupt_handler",
    "stop_on_signals",
]


class ImportSafeInterrupt:
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
        if not importing(frame):
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
        if not importing(frame):
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
                and not importing(frame.f_back)
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


def importing(frame: Any) -> bool:
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


@contextlib.contextmanager
def import_safe_interrupts() -> Iterator[ImportSafeInterrupt]:
    """The command line's Ctrl-C handling for the block: an :class:`ImportSafeInterrupt` as
    the SIGINT handler (with its recheck signal), registered for the plugin manager; all as it
    was afterwards (a command called in-process: tests, scripts). Outside the main thread,
    which receives no signals, the handler is made but neither installed nor registered."""
    interrupt = ImportSafeInterrupt()
    if threading.current_thread() is not threading.main_thread():
        try:
            yield interrupt
        finally:
            interrupt.close()
        return
    previous = signal.signal(signal.SIGINT, interrupt)
    previous_recheck = signal.signal(interrupt.RECHECK, interrupt.recheck)
    registered_before = set_interrupt_handler(interrupt)
    try:
        yield interrupt
    finally:
        interrupt.close()
        set_interrupt_handler(registered_before)
        if previous is not None:  # None: the handler was not installed from Python
            signal.signal(signal.SIGINT, previous)
        if previous_recheck is not None:
            signal.signal(interrupt.RECHECK, previous_recheck)


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


class PluginInterruptWatch:
    """Tells a real Ctrl-C from a plugin raising ``KeyboardInterrupt`` itself.

    Both reach zoo as the same exception. While a plugin loads, a SIGINT handler that notes
    the signal and then calls the handler that was there before (Python's own raises
    ``KeyboardInterrupt``) is installed: an exception escaping the plugin after a SIGINT
    arrived is the user's interrupt and propagates (zoo aborts); any other is the plugin's
    failure. A real SIGINT that the plugin swallowed still aborts once the plugin returns.
    Only the main thread receives signals, so elsewhere nothing is installed and every
    exception is the plugin's; where SIGINT is ignored or not handled by Python, likewise.
    """

    def __init__(self) -> None:
        self.arrived = False
        self._previous: Callable[[int, FrameType | None], Any] | None = None
        self._handler = self._note  # one bound method, to recognise it later

    def __enter__(self) -> PluginInterruptWatch:
        if threading.current_thread() is threading.main_thread():
            previous = signal.getsignal(signal.SIGINT)
            if callable(previous):
                self._previous = previous
                signal.signal(signal.SIGINT, self._handler)
        return self

    def _note(self, signum: int, frame: FrameType | None) -> None:
        self.arrived = True
        assert self._previous is not None
        self._previous(signum, frame)

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # A plugin that installed a handler of its own keeps it.
        if self._previous is not None and signal.getsignal(signal.SIGINT) == self._handler:
            signal.signal(signal.SIGINT, self._previous)

    def reraise_if_interrupted(self, exc: BaseException) -> None:
        """Let ``exc`` propagate if the user interrupted: a SIGINT arrived while it loaded."""
        if self.arrived:
            if isinstance(exc, KeyboardInterrupt):
                raise exc
            raise KeyboardInterrupt from exc

    def raise_if_swallowed(self) -> None:
        """Abort after a plugin during which the user pressed Ctrl-C and nothing was raised:
        the plugin caught the KeyboardInterrupt, or zoo's command-line handler held it while
        the plugin imported (that handler is found through :mod:`zoo._interrupts`)."""
        if not self.arrived:
            return
        previous = self._previous
        if previous is signal.default_int_handler:
            raise KeyboardInterrupt
        held = holding_handler(previous)
        if held is not None:
            # zoo's command line handler: it raised (and the plugin swallowed it), or it holds
            # the interrupt of an import to deliver later; deliver it now, once.
            held.pending = False
            raise KeyboardInterrupt


class StopRequest:
    """First Ctrl-C asks the loop to stop at the next batch boundary; a second one forces,
    except while a checkpoint is being committed: then it waits for the commit to finish."""

    def __init__(self) -> None:
        self.requested = False
        self.forced = False
        self.shielded = False

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        try:
            previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: leave Ctrl-C alone
            yield
            return
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    @contextlib.contextmanager
    def shield(self) -> Iterator[None]:
        """Defer a forcing Ctrl-C to the end of the block."""
        self.shielded = True
        try:
            yield
        finally:
            self.shielded = False

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            self.forced = True
            if not self.shielded:
                raise KeyboardInterrupt
        self.requested = True


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[threading.Event]:
    """For the block, SIGINT (Ctrl-C) and SIGTERM set ``stop`` instead of raising: a server's
    main thread waits on it and then shuts down in order (``zoo serve``); a second signal
    while it shuts down ends the process at once (exit 130). The handlers go back after.
    Outside the main thread, which receives no signals, nothing is installed."""
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            os.write(2, b"\nzoo: stopped\n")
            os._exit(128 + signum)
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, before in previous.items():
            if before is not None:
                signal.signal(sig, before)
