"""The stages before the sampler takes over: the sensitivity table (once per study) and the first candidates.

The first candidates are what a user would try by hand and the runtime's one-click recipes (warm starts,
labelled `enqueued`), then the candidates the table's solver proposes (labelled `seeded`: the search's own
proposals, not hand-made). With seeds, TPE starts modelling right after them instead of spending trials at random.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna

from autocompress.config import SearchSettings
from autocompress.hardware.profile import HardwareProfile
from autocompress.home import study_dir
from autocompress.search.results import METRICS_ATTR, fastest_feasible
from autocompress.search.seeds import Seed, seeds
from autocompress.search.sensitivity import SENSITIVITY_ATTR, Sensitivity, analyse
from autocompress.search.sensitivity_report import write
from autocompress.search.study import make_sampler
from autocompress.search.tracking import MlflowTracker
from autocompress.spaces.space import SearchSpace
from autocompress.task import Task

log = logging.getLogger(__name__)
SEEDED_ATTR = "seeded"
ESTIMATE_ATTR = "estimate"
PROMOTED_ATTR = "promoted_from"
REFINED_ATTR = "refined_from"
STARTUP_ATTR = "startup_trials"


def allowed_drop(settings: SearchSettings, baseline_metric: float) -> float:
    """The bound in the metric's own units (a relative bound scales with the baseline)."""
    return settings.max_drop * abs(baseline_metric) if settings.drop_mode == "relative" else settings.max_drop


def sensitivity_table(
    study: optuna.Study,
    task: Task,
    profile: HardwareProfile,
    space: SearchSpace,
    baseline: dict[str, Any],
    baseline_path: Path,
    settings: SearchSettings,
    tracker: MlflowTracker | None = None,
) -> Sensitivity:
    """The study's table: measured once and stored with the study; each measurement is logged to MLflow."""
    cached = study.user_attrs.get(SENSITIVITY_ATTR)
    if cached is not None:
        return Sensitivity.from_dict(cached)
    log.info("sensitivity analysis: each choice alone, measured on %s", profile.name)
    table = analyse(
        task, profile, space, baseline_path, baseline["metric"], study_dir(study.study_name) / "sensitivity"
    )
    study.set_user_attr(SENSITIVITY_ATTR, table.as_dict())
    if tracker is not None and tracker.parent_id is not None:
        with tempfile.TemporaryDirectory() as scratch:
            bound = allowed_drop(settings, baseline["metric"])
            for path in write(table, Path(scratch), task.metric_name, bound, f"{task.name} on {profile.name}"):
                tracker.log_artifact(tracker.parent_id, path)
        tracker.log(tracker.parent_id, metrics={"sensitivity_s": table.seconds, "sensitivity_choices": len(table.rows)})
    return table


def first_candidates(
    study: optuna.Study, space: SearchSpace, settings: SearchSettings, table: Sensitivity | None, baseline_metric: float
) -> int:
    """Enqueue warm starts, then seeds, within the trial budget; give the sampler that many start-up trials.
    Returns how many were enqueued."""
    starts: list[tuple[dict[str, Any], dict[str, Any]]] = [
        (params, {"enqueued": label}) for label, params in (space.warm_starts() if settings.warm_starts else [])
    ]
    planted: list[Seed] = seeds(space, table, allowed_drop(settings, baseline_metric)) if table else []
    starts += [
        (seed.params, {SEEDED_ATTR: seed.label, ESTIMATE_ATTR: {"drop": seed.drop, "speedup": seed.speedup}})
        for seed in planted
    ]
    known: set[str] = set()
    queued = 0
    for params, attrs in starts[: settings.trials or None]:  # never more than the budget
        key = repr(sorted(params.items()))
        if key not in known:
            known.add(key)
            study.enqueue_trial(params, user_attrs=attrs)
            queued += 1
    if planted:
        study.set_user_attr(STARTUP_ATTR, queued)  # every worker's sampler starts modelling after the seeds
    return queued


def worker_sampler(study: optuna.Study, settings: SearchSettings, setup: str, seed: int) -> None:
    """This worker's sampler: one that starts modelling right after a seeded study's seeds, and, beside other
    workers, a seed of its own (two workers with one seed and one history would draw the same candidates)."""
    others_running = any(t.state == optuna.trial.TrialState.RUNNING for t in study.get_trials(deepcopy=False))
    if setup == "waited" or others_running:
        seed += 1009 * (os.getpid() % 9973)
    startup = study.user_attrs.get(STARTUP_ATTR)
    study.sampler = make_sampler(settings, seed, startup=None if startup is None else int(startup))


class PromoteProbes:
    """Short distillation as a probe, the full budget only for the promising: a pruned candidate distilled for
    fewer than the most steps that lands within `margin` times the allowed drop, and faster than the best
    feasible trial so far, is queued again with the most steps (same parameters otherwise). Optuna's pruners do
    not work for multi-objective studies; this is successive halving done with the study's own trials."""

    def __init__(self, space: SearchSpace, settings: SearchSettings, margin: float = 3.0) -> None:
        self.most = max(space.distill.distill_steps)
        self.steps = space.distill.after_pruning
        self.limit = settings.max_drop * margin

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        steps = self.steps.read(trial.params)
        metrics = trial.user_attrs.get(METRICS_ATTR)
        if metrics is None or steps is None or steps >= self.most or metrics["feasible"]:
            return
        best = fastest_feasible(study)
        faster = best is None or metrics["speedup"] > best.user_attrs[METRICS_ATTR]["speedup"]
        if metrics["metric_drop"] <= self.limit and faster:  # drop and max_drop share units
            params = dict(trial.params) | self.steps.param(self.most)
            study.enqueue_trial(params, user_attrs={PROMOTED_ATTR: trial.number}, skip_if_exists=True)
            log.info("trial %d promoted: its parameters again with %d distillation steps", trial.number, self.most)


class SkipFromIncumbent:
    """Depth on top of the best so far: once the first candidates are measured (nothing queued is left), the
    fastest feasible trial is queued again with the skippable blocks skipped that the table says cost least —
    the cheapest one, then the cheapest two, and so on — distilled for the most steps. Skipping is the one
    choice that thinner layers cannot stand in for (it removes operators), and the table ranks the blocks by
    cost without fine-tuning; distillation decides which depth still holds. Once per study, and never more
    trials than this invocation's budget has left (`left`: None when only time bounds it)."""

    def __init__(self, space: SearchSpace, table: Sensitivity | None, left: Callable[[], int | None]) -> None:
        self.most = max(space.distill.distill_steps)
        self.steps = space.distill.after_pruning
        self.left = left
        knobs = {(knob.kind, knob.unit): knob for knob in space.prune.skip_knobs()}
        faster = [row for row in (table.rows if table else []) if (row.kind, row.unit) in knobs
                  and row.speedup_ci[0] > 1.0]  # fmt: skip
        self.blocks = [knobs[(row.kind, row.unit)] for row in sorted(faster, key=lambda row: row.drop)]

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if not self.blocks or REFINED_ATTR in study.user_attrs:
            return
        if study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)):
            return  # the first candidates are not all measured yet
        best = fastest_feasible(study)
        if best is None:
            return
        remaining = [knob for knob in self.blocks if not knob.read(best.params)]
        left = self.left()
        most = len(remaining) if left is None else min(len(remaining), left)
        if most == 0:
            return  # no budget left in this invocation: a resumed search with more trials takes the step
        study.set_user_attr(REFINED_ATTR, best.number)
        for count in range(1, most + 1):
            params = dict(best.params)
            for knob in remaining[:count]:
                params |= knob.param(True)
            params |= self.steps.param(self.most)
            label = f"trial {best.number} + {count} block{'s' if count > 1 else ''} skipped"
            study.enqueue_trial(params, user_attrs={SEEDED_ATTR: label, REFINED_ATTR: best.number}, skip_if_exists=True)
        log.info("queued trial %d again with 1 to %d more blocks skipped", best.number, most)
