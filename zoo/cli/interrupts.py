"""Ctrl-C while zoo starts: a SIGINT that lands in an import is held until the import is
done (torch imports numpy from C and swallows any exception raised there)."""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any

__all__ = ["ImportSafeInterrupt", "importing"]


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


#: Every character ``str.splitlines`` breaks a line at, and how an error message shows it.


def importing(frame: Any) -> bool:
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False
