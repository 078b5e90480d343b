"""Which failures a trial may have, and what a bug does instead.

A trial may legitimately fail: the exporter or the runtime's quantizer refuses the candidate, the device cannot
load, run or time it, its metric is not finite, the time budget ends inside it (every one a `TrialError`,
autocompress/errors.py), the SSH device stops answering (`DeviceError`), or the machine runs out of memory for
it. Such a trial is recorded as failed with its reason and the search goes on.

Anything else raised inside a trial — a TypeError, an AttributeError, a KeyError, in autocompress or in the
user's own code — is a bug: recorded as failed the same way it would fail every later trial, and a search that
ends with "every trial failed" hides it behind a summary. So the search stops at once: the trial is recorded as
failed ("bug: ..."), its candidate is queued again, the MLflow runs are closed, and the command says one line
naming the log file that holds the traceback (autocompress/run_log.py). After the fix, the same command resumes
the same study with the next trial number, starting with that candidate.
"""

from __future__ import annotations

import torch

from autocompress.errors import DeviceError, TrialError

TRIAL_FAILURES: tuple[type[BaseException], ...] = (TrialError, DeviceError, MemoryError, torch.OutOfMemoryError)
BUG_REASON = "bug, the search stopped:"  # how the fail_reason of a trial that stopped the search starts


class TrialBug(Exception):
    """A trial raised what no candidate may legitimately raise; the search stops (not an AutocompressError: the
    command logs its traceback)."""

    def __init__(self, trial: int, summary: str) -> None:
        super().__init__(f"trial {trial} raised {summary}")
        self.trial = trial
        self.summary = summary


def is_trial_failure(error: BaseException) -> bool:
    """Whether `error` is a failure a trial may have (as opposed to a bug)."""
    return isinstance(error, TRIAL_FAILURES)
