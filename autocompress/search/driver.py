"""A search invocation: open the study and its MLflow run, run the declared stages (search/plan.py) in order,
close the run. Ctrl-C or SIGTERM closes it as KILLED and raises SearchInterrupted; the same command resumes."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from rich.console import Console

from autocompress.config import SearchSettings
from autocompress.hardware.locks import registered_worker
from autocompress.hardware.profile import HardwareProfile
from autocompress.search import trials as trial_loop
from autocompress.search.confirm import Confirmed
from autocompress.search.parent_run import close_parent_run, open_parent_run
from autocompress.search.plan import SEARCH
from autocompress.search.recovery import recover_trials
from autocompress.search.stage import SearchContext, Stage, run_stages
from autocompress.search.study import open_storage, open_study
from autocompress.signals import interrupts_as_keyboard
from autocompress.spaces.space import SearchSpace
from autocompress.task import Task


class SearchInterrupted(Exception):
    """Ctrl-C or SIGTERM: the running trial was failed and recorded; the next invocation resumes."""


@dataclass
class SearchOutcome:
    """The study after this invocation, the confirmation of its top candidates (best first), and the export."""

    study: optuna.Study
    confirmed: list[Confirmed] = field(default_factory=list)
    wall_s: float = 0.0  # this invocation up to the end of confirmation
    confirm_s: float = 0.0  # the confirmation stage alone
    trials: list[int] = field(default_factory=list)  # the trial numbers this invocation ran
    exported: Path | None = None  # where the winner was exported (with `out`)
    export_note: str | None = None  # why nothing was exported (no candidate beats the baseline)
    registered: str | None = None  # the Model Registry's answer

    def failures(self) -> list[str]:
        """Why this invocation's trials failed (one entry per failed trial)."""
        return trial_loop.failures(self.study, self.trials)

    def all_failed(self) -> bool:
        """Every trial of this invocation failed, and not only because the time budget ran out."""
        return trial_loop.all_failed(self.study, self.trials)


def with_model_elastic(settings: SearchSettings, task: Task) -> SearchSettings:
    """The elastic model's training settings under the model's own (`Task.elastic`): resolved once, here, so that
    the training, its cache key, the space and every strategy see the same."""
    if settings.elastic is None:
        return settings
    return settings.model_copy(update={"elastic": settings.elastic.over(task.elastic)})


def run_search(
    task: Task,
    profile: HardwareProfile,
    settings: SearchSettings,
    study_name: str,
    console: Console | None = None,
    out: Path | None = None,
    register: bool = True,
    plan: Sequence[Stage] = SEARCH,
) -> SearchOutcome:
    """Run (or resume) a study: every stage of `plan` in order (set-up, `trials` more trials or `timeout`, polish,
    confirmation, and with `out` the export); Ctrl-C raises SearchInterrupted."""
    started = time.monotonic()
    settings = with_model_elastic(settings, task)
    space = SearchSpace.for_task(task, profile, settings.granularity, settings.elastic)
    storage = open_storage(settings.storage)
    study = open_study(study_name, storage, settings, space)
    opened_with = len(study.get_trials(deepcopy=False))  # a resumed study must not replay its draws
    recover_trials(study, storage)
    tracker = open_parent_run(task, profile, settings, space, study_name)
    context = SearchContext(task, profile, settings, study_name, space, storage, study, tracker, started,
                            opened_with, plan, console, out, register)  # fmt: skip
    try:
        with interrupts_as_keyboard(), registered_worker():
            run_stages(plan, context)
    except KeyboardInterrupt:
        tracker.end_parent("KILLED")
        raise SearchInterrupted(f"search '{study_name}' interrupted; run the same command again to resume") from None
    except Exception:  # a user's mistake or a bug: the study is kept, the next invocation resumes it
        tracker.end_parent("FAILED")
        raise
    close_parent_run(tracker, study, task.metric_name, context.confirmed, context.wall_s, context.confirm_s)
    return SearchOutcome(study, context.confirmed, context.wall_s, context.confirm_s, context.ran, context.exported,
                         context.export_note, context.registered)  # fmt: skip
