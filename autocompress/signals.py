"""Ctrl-C and SIGTERM take one path from the first second of a command: KeyboardInterrupt, caught where the
command can say what was kept (a trial recorded as failed, the MLflow parent closed) and exit 130. And a
time budget's hard stop: work still going past a deadline is stopped where it is."""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from autocompress.errors import TrialError

DEADLINE = "deadline:"  # how a trial failed for the time budget's sake starts its reason

_pending = threading.Event()  # a Ctrl-C/SIGTERM arrived and has not yet ended the command
_depth = 0  # nested interrupts_as_keyboard blocks (the CLI's and the driver's)


class DeadlineExceeded(TrialError):
    """A trial still running past the search's deadline plus its margin."""


@contextmanager
def interrupts_as_keyboard() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt like Ctrl-C does. SIGINT is handled explicitly too: a process started in
    the background by a non-interactive shell inherits it ignored.

    A KeyboardInterrupt raised where Python only prints it (a weakref callback or `__del__` running when the
    signal lands: seen while torch trains) would be lost, and Python would print its traceback; the signal is
    remembered, so the next `raise_if_interrupted()` checkpoint, or at the latest the end of this block, raises
    it again, and the swallowed copy is not printed."""
    global _depth

    def handler(signum: int, frame: FrameType | None) -> None:
        _pending.set()
        raise KeyboardInterrupt

    previous_hook = sys.unraisablehook

    def quiet_about_swallowed_interrupts(unraisable: sys.UnraisableHookArgs) -> None:
        if not (_pending.is_set() and isinstance(unraisable.exc_value, KeyboardInterrupt)):
            previous_hook(unraisable)

    previous = signal.signal(signal.SIGTERM, handler), signal.signal(signal.SIGINT, handler)
    sys.unraisablehook = quiet_about_swallowed_interrupts
    _depth += 1
    try:
        yield
        raise_if_interrupted()  # the body finished although a signal arrived: it was swallowed on the way
    finally:
        _depth -= 1
        if _depth == 0:
            _pending.clear()
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])
        sys.unraisablehook = previous_hook


def raise_if_interrupted() -> None:
    """A checkpoint for long loops (training steps, trials): raise the Ctrl-C/SIGTERM that arrived earlier and was
    swallowed where Python cannot propagate exceptions."""
    if _pending.is_set():
        raise KeyboardInterrupt


def not_after(deadline: float | None, what: str) -> None:
    """Refuse to start `what` past the deadline."""
    if deadline is not None and time.monotonic() >= deadline:
        raise DeadlineExceeded(f"{DEADLINE} {what} not started, the search's time budget and its margin are spent")


@contextmanager
def stop_at(deadline: float | None, what: str) -> Iterator[None]:
    """Raise DeadlineExceeded in this block once `time.monotonic()` passes `deadline` (SIGALRM; only in the main
    thread, where signals arrive; elsewhere the block runs to its end). Only for local work: a block waiting
    on a device's answer must not be cut in the middle of it."""
    if deadline is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    not_after(deadline, what)
    left = deadline - time.monotonic()

    def handler(signum: int, frame: FrameType | None) -> None:
        raise DeadlineExceeded(f"{DEADLINE} {what} stopped, still running past the time budget and its margin")

    previous = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, left)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
