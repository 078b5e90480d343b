"""What a stage of a search is: one protocol, and the small loop that runs a declared sequence of them.

A stage reads what earlier stages added to the search's context and adds its own (`needs`, `adds`: names of
`SearchContext` fields, checked as the sequence runs); `cache_key` names the study attribute its result is kept
under, so a resumed search or another worker reads it instead of measuring again; a stage `once_per_study` does
its `set_up` in the one worker that claims the study's set-up (search/claim.py). A stage that works between
trials (promotion, the depth step) gives the trial loop a callback (`between_trials`). The sequence itself is
declared in search/plan.py.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import optuna
    from optuna.storages import BaseStorage
    from optuna.trial import FrozenTrial
    from rich.console import Console

    from autocompress.config import SearchSettings
    from autocompress.hardware.profile import HardwareProfile
    from autocompress.search.confirm import Confirmed
    from autocompress.search.sensitivity import Sensitivity
    from autocompress.search.tracking import MlflowTracker
    from autocompress.spaces.space import SearchSpace
    from autocompress.task import Task

Callback = Callable[["optuna.Study", "FrozenTrial"], None]


class TrialObjective(Protocol):
    """What the trial loop runs per trial (search/trials.py's Objective): a deadline the polish stage lifts."""

    deadline: float | None

    def __call__(self, trial: optuna.Trial) -> tuple[float, ...]: ...


@dataclass
class SearchContext:
    """One invocation of a search: its inputs, then what the stages add (see each stage's `adds`)."""

    task: Task
    profile: HardwareProfile
    settings: SearchSettings
    study_name: str
    space: SearchSpace
    storage: BaseStorage
    study: optuna.Study
    tracker: MlflowTracker
    started: float  # time.monotonic() at the start of the invocation: a time budget counts from here
    opened_with: int  # trials the study had when this invocation opened it (a resumed study draws anew)
    plan: Sequence[Stage] = ()
    console: Console | None = None
    out: Path | None = None  # export the confirmed winner here (none: no export stage)
    register: bool = True
    # added by the stages
    setup: str = ""  # what the set-up claim did here: "ran", "waited" or "done"
    baseline: dict[str, Any] = field(default_factory=dict)
    baseline_path: Path | None = None
    table: Sensitivity | None = None
    objective: TrialObjective | None = None
    ran: list[int] = field(default_factory=list)  # the trials of this invocation
    confirmed: list[Confirmed] = field(default_factory=list)
    confirm_s: float = 0.0
    wall_s: float = 0.0  # from the start to the end of confirmation
    exported: Path | None = None
    export_note: str | None = None  # why nothing was exported (no candidate beats the baseline)
    registered: str | None = None  # the Model Registry's answer
    added: set[str] = field(default_factory=set)  # the fields the stages run so far have added


class Stage(Protocol):
    """One step of a search. `name` is how README's "How it works" lists it."""

    name: str
    needs: tuple[str, ...]
    adds: tuple[str, ...]
    cache_key: str | None
    once_per_study: bool

    def set_up(self, context: SearchContext) -> None:
        """Once per study, in the worker that claims its set-up (only if `once_per_study`)."""
        ...

    def run(self, context: SearchContext) -> None:
        """In every worker, every invocation."""
        ...

    def between_trials(self, context: SearchContext) -> Callback | None:
        """A callback for the trial loop (after each trial), or None."""
        ...


class BaseStage:
    """Defaults: nothing to set up, nothing between trials."""

    needs: tuple[str, ...] = ()
    adds: tuple[str, ...] = ()
    cache_key: str | None = None
    once_per_study = False

    def set_up(self, context: SearchContext) -> None:
        return None

    def run(self, context: SearchContext) -> None:
        return None

    def between_trials(self, context: SearchContext) -> Callback | None:
        return None


def run_stages(stages: Sequence[Stage], context: SearchContext, phase: str = "run") -> None:
    """Run each stage's `phase` ("run" or "set_up") in order; a stage whose needs no earlier stage added is a bug
    in the declared sequence, said before anything runs out of order."""
    for stage in stages:
        missing = [name for name in stage.needs if name not in context.added]
        if missing:
            raise RuntimeError(f"stage '{stage.name}' needs {', '.join(missing)}, which no earlier stage adds")
        getattr(stage, phase)(context)
        context.added |= set(stage.adds)
