"""One line per finished trial, for a person following a search off a terminal (a log file, a pipe, a service).

A progress bar is drawn only on a terminal; elsewhere the search writes, as each trial ends, what it tried, its
metric and drop, its paired speedup with the interval, whether it is within the bounds, and why it failed if it
did, e.g.

    trial 7 COMPLETE  prune 0.25 int8 6/6 kd100  accuracy 0.9833 (drop +0.0056)  speedup 3.12x [3.05, 3.20]  feasible

The same lines go to the log file (autocompress/run_log.py) whether or not stdout is a terminal.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import optuna
from optuna.trial import FrozenTrial, TrialState

from autocompress.search.results import BASELINE_ATTR, METRICS_ATTR
from autocompress.search.run_views import run_name
from autocompress.spaces.strategy import Strategy

log = logging.getLogger(__name__)
ORIGINS = (("enqueued", "warm start"), ("seeded", "seed"), ("promoted_from", "promoted from trial"),
           ("polished_from", "polished from trial"), ("retry_of", "retry of trial"))  # fmt: skip


def trial_line(trial: FrozenTrial, metric_name: str = "metric", baseline_metric: float | None = None) -> str:
    """What one finished trial tried and measured (or why it failed), in one line; the drop in the metric's own
    units when the baseline's metric is given (else as recorded, in the bound's units)."""
    recorded = trial.user_attrs.get("strategy")
    tried = run_name(trial.number, Strategy.model_validate(recorded)).split(" ", 1)[1] if recorded else "?"
    parts = [f"trial {trial.number} {trial.state.name}", tried]
    metrics = trial.user_attrs.get(METRICS_ATTR)
    if trial.state == TrialState.COMPLETE and metrics is not None:
        drop = metrics["metric_drop"] if baseline_metric is None else baseline_metric - metrics["metric"]
        parts.append(f"{metric_name} {metrics['metric']:.4f} (drop {drop:+.4f})")
        parts.append(f"speedup {metrics['speedup']:.2f}x [{metrics['speedup_ci_low']:.2f}, "
                     f"{metrics['speedup_ci_high']:.2f}]")  # fmt: skip
        parts.append("feasible" if metrics["feasible"] else "past the bound")
    elif trial.state == TrialState.FAIL:
        parts.append(f"failed: {trial.user_attrs.get('fail_reason', 'unknown')}")
    origin = next(((label, trial.user_attrs[key]) for key, label in ORIGINS if key in trial.user_attrs), None)
    if origin is not None:
        parts.append(f"({origin[0]} {origin[1]})")
    if trial.duration is not None:
        parts.append(f"{trial.duration.total_seconds():.1f} s")
    return "  ".join(parts)


class TrialLines:
    """Optuna callback: each finished trial's line to the log file, and to `stream` (default: stdout, when it is
    not a terminal; a terminal has the progress bar)."""

    def __init__(self, metric_name: str, stream: TextIO | None = None) -> None:
        self.metric_name = metric_name
        self.stream = stream if stream is not None else (None if sys.stdout.isatty() else sys.stdout)

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        baseline = study.user_attrs.get(BASELINE_ATTR, {}).get("metric")
        line = trial_line(trial, self.metric_name, baseline)
        log.info(line)
        if self.stream is not None:
            self.stream.write(line + "\n")
            self.stream.flush()
