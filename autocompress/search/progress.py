"""A rich progress bar: trials done, the best feasible speedup so far, and the time left."""

from __future__ import annotations

import time

import optuna
from optuna.trial import FrozenTrial
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from autocompress.search.results import METRICS_ATTR, fastest_feasible


class SearchProgress:
    """Optuna callback that advances the bar after each trial; the bar total is the trial budget."""

    def __init__(self, trials: int | None, timeout: float | None, console: Console | None = None) -> None:
        self.started = time.monotonic()
        self.timeout = timeout
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]trials"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[best]}"),
            TextColumn("{task.fields[left]}"),
            console=console,
            transient=False,
        )
        self.task_id = self.progress.add_task("search", total=trials, best="best feasible: -", left=self._left())

    def _left(self) -> str:
        if self.timeout is None:
            return ""
        remaining = max(0.0, self.timeout - (time.monotonic() - self.started))
        return f"time left {int(remaining // 60)}m{int(remaining % 60):02d}s"

    def __enter__(self) -> SearchProgress:
        if self.progress.console.is_terminal:  # off a terminal the trial lines say it (search/trial_lines.py)
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress.console.is_terminal:
            self.progress.stop()

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        best = fastest_feasible(study)
        text = "best feasible: -"
        if best is not None:
            text = f"best feasible: {best.user_attrs[METRICS_ATTR]['speedup']:.2f}x (trial {best.number})"
        self.progress.update(self.task_id, advance=1, best=text, left=self._left())
