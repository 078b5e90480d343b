"""Refinements between trials, with the study's own trials: a short-distilled probe near the bound promoted to the
full budget (successive halving; Optuna's pruners do not apply to multi-objective studies), and the depth step on
top of the best so far. Both reach the parameters through the knob objects of the steps that own them."""

from __future__ import annotations

import logging
from collections.abc import Callable

import optuna

from autocompress.config import SearchSettings
from autocompress.search.candidates import SEEDED_ATTR
from autocompress.search.results import METRICS_ATTR, fastest_feasible
from autocompress.search.sensitivity import Sensitivity
from autocompress.spaces.space import SearchSpace

log = logging.getLogger(__name__)
PROMOTED_ATTR = "promoted_from"
REFINED_ATTR = "refined_from"


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
