"""Optuna's `gc_after_trial` frees a trial's models (reference cycles in exported graphs and pruning hooks) before
the next trial is built, but a full collection walks every object the process holds: torch, the libraries, the
task and its data, about 0.4 s a trial on the built-in example. Objects alive before the trials start are frozen
(`gc.freeze`), so each collection walks only what the trials allocated."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

_depth = 0  # trials inside trials (a stage that runs its own trials from a callback): the outermost unfreezes


@contextmanager
def trials_heap() -> Iterator[None]:
    """Collect once, freeze what survives for the trials' duration, then hand it back to the collector."""
    global _depth
    if _depth == 0:
        gc.collect()
        gc.freeze()
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0:
            gc.unfreeze()
