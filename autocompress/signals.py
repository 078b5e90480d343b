"""Ctrl-C and SIGTERM take one path from the first second of a command: KeyboardInterrupt, caught where the
command can say what was kept (a trial recorded as failed, the MLflow parent closed) and exit 130."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


@contextmanager
def interrupts_as_keyboard() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt like Ctrl-C does. SIGINT is handled explicitly too: a process started in
    the background by a non-interactive shell inherits it ignored."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler), signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])
