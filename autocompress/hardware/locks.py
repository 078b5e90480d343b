"""Locks that keep timings honest: one timing at a time per machine, and no building or training during one.

Local timing takes this machine's timing lock exclusively; building and training (pruning, distillation,
export, quantization, accuracy runs) take it shared. The lock files live in the machine's temporary folder,
not under one user's home, so every autocompress process on the machine sees them, whatever its
$AUTOCOMPRESS_HOME. A timer announces itself on a gate first, so a stream of builders cannot starve it: once a
timer waits, new builders wait behind it. flock releases everything when a process dies, so a killed worker
never leaves the machine locked. Remote devices keep their own per-device lock (hardware/remote.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)
LOCAL = "local-machine"


def lock_dir() -> Path:
    """Machine-wide (`$AUTOCOMPRESS_LOCK_DIR` overrides it, e.g. for a container sharing one CPU with others)."""
    folder = Path(os.environ.get("AUTOCOMPRESS_LOCK_DIR") or Path(tempfile.gettempdir()) / "autocompress-locks")
    folder.mkdir(parents=True, exist_ok=True)
    with suppress(OSError):
        folder.chmod(0o1777)  # every user's processes share it, like /tmp itself
    return folder


def _open(name: str) -> IO[str]:
    path = lock_dir() / f"{re.sub(r'[^A-Za-z0-9._-]', '_', name)}.lock"
    handle = path.open("a")
    with suppress(OSError):
        path.chmod(0o666)
    return handle


@contextmanager
def _flock(handle: IO[str], mode: int) -> Iterator[None]:
    fcntl.flock(handle, mode)
    try:
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)


class Waited:
    """Seconds spent waiting for a lock, readable after the `with` statement has acquired it."""

    seconds: float = 0.0


@contextmanager
def _acquire(name: str, mode: int, waiting_for: str) -> Iterator[Waited]:
    """Pass the gate in `mode`, take the main lock in `mode`, leave the gate; hold the main lock while in use."""
    waited = Waited()
    started = time.monotonic()
    with ExitStack() as stack:
        gate, main = stack.enter_context(_open(f"{name}.gate")), stack.enter_context(_open(name))
        with _flock(gate, mode):  # a timer holds the gate exclusively until it has the lock: builders queue behind
            fcntl.flock(main, mode)
        try:
            waited.seconds = time.monotonic() - started
            if waited.seconds > 0.5:
                log.debug("waited %.1f s for %s on %s", waited.seconds, waiting_for, name)  # in MLflow too
            yield waited
        finally:
            fcntl.flock(main, fcntl.LOCK_UN)


def timing_lock(name: str = LOCAL) -> contextlib.AbstractContextManager[Waited]:
    """Exclusive: no other timing and no building on this machine (or device `name`) while held."""
    return _acquire(name, fcntl.LOCK_EX, "the timing lock")


def compute_slot(name: str = LOCAL) -> contextlib.AbstractContextManager[Waited]:
    """Shared: builders run side by side, but never while a timing on this machine is running or waiting."""
    return _acquire(name, fcntl.LOCK_SH, "a timing to finish before building")


@contextmanager
def registered_worker() -> Iterator[None]:
    """This process is a search worker on this machine for the block's duration (a held flock, released by the
    kernel if the process dies), so builders can count how many share the machine's cores."""
    path = lock_dir() / f"worker-{os.getpid()}.lock"
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
            with suppress(OSError):
                path.unlink()


def local_workers() -> int:
    """Search workers alive on this machine (at least 1: the caller); a stale registration is removed."""
    alive = 0
    for path in lock_dir().glob("worker-*.lock"):
        with suppress(OSError), path.open("a") as probe:
            try:
                fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                alive += 1
                continue
            fcntl.flock(probe, fcntl.LOCK_UN)
            path.unlink()
    return max(1, alive)


def build_threads() -> int:
    """Threads for one build: the machine's cores shared among its workers. Two PyTorch processes each running
    as many spinning OpenMP threads as there are cores slow each other ~10x (measured: 19 s -> 220 s per trial
    on 2 cores, experiments/results/workers-throughput.md). `$AUTOCOMPRESS_BUILD_THREADS` fixes the number."""
    fixed = os.environ.get("AUTOCOMPRESS_BUILD_THREADS", "").strip()
    if fixed.isdigit() and int(fixed) > 0:
        return int(fixed)
    if fixed:
        log.warning("AUTOCOMPRESS_BUILD_THREADS=%r is not a positive count: ignored", fixed)
    return max(1, (os.cpu_count() or 1) // local_workers())
