"""How the command takes Ctrl-C: at once, every time, as one line and exit code 130.

Only the standard library and mempipe.errors are imported here: the entry point takes
Ctrl-C with it before it loads anything else."""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any

from mempipe.errors import exit_with


def exit_now(signum: int = signal.SIGINT, frame: object = None) -> None:
    """The one line and exit code 130 (also a signal handler)."""
    exit_with("interrupted", 130)


def stop_where_it_stands(signum: int, frame: object) -> None:
    """Raise KeyboardInterrupt wherever the main thread stands. asyncio's own handler only
    cancels the main task, which waits for its next await: a stage still importing torch
    or loading a model (20 s on a busy machine) would hold the user there. A second
    Ctrl-C, during the cleanup that follows, exits at once."""
    signal.signal(signal.SIGINT, exit_now)
    raise KeyboardInterrupt


def take_over() -> None:
    """Ctrl-C stops what runs from now on; a Ctrl-C that Python drops is raised again."""
    signal.signal(signal.SIGINT, stop_where_it_stands)
    sys.unraisablehook = _raise_dropped_interrupts(sys.unraisablehook)


def _raise_dropped_interrupts(default: Any) -> Any:
    """Python ignores an exception raised in a finalizer (a `__del__`, a weakref callback)
    and prints it as "Exception ignored". A Ctrl-C that lands in one while the garbage
    collector runs would be lost so, and the run would go on to its end (a 2,000-token
    generation for another minute). Such a Ctrl-C is sent again a moment later, once this
    hook has returned (raised inside it, it would be dropped for good)."""

    def hook(unraisable: Any) -> None:
        if not issubclass(unraisable.exc_type, KeyboardInterrupt):
            return default(unraisable)
        signal.signal(signal.SIGINT, stop_where_it_stands)
        main = threading.main_thread().ident
        again = threading.Timer(0.1, signal.pthread_kill, (main, signal.SIGINT))
        again.daemon = True
        again.start()

    return hook
