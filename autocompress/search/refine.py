"""Refinements between trials, with the study's own trials: a short-distilled probe near the bound promoted to the
full budget (successive halving; Optuna's pruners do not apply to multi-objective studies), and the depth step on
top of the best so far. Both reach the parameters through the knob objects of the steps that own them."""

from __future__ import annotations

import logging
from collections.abc import Callable

import optuna

from autocompress.config import SearchSettings
from autocompress.search.candidates import SEEDED_ATTR
from autocompress.search.recovery import RETRY_ATTR
from autocompress.search.results import DEPTH_COUNT_ATTR, METRICS_ATTR, REFINED_ATTR, fastest_feasible
from autocompress.search.sensitivity import Sensitivity
from autocompress.spaces.space import SearchSpace

log = logging.getLogger(__name__)
PROMOTED_ATTR = "promoted_from"
DEPTH_ATTR = "depth_step"  # the bisection's state: the blocks in order, the deepest count that held, the shallowest not


class PromoteProbes:
    """Short distillation as a probe, the full budget only for the promising: a pruned candidate distilled for
    fewer than the most steps that lands within `margin` times the allowed drop, and faster than the best
    feasible trial so far, is queued again with the most steps (same parameters otherwise). Optuna's pruners do
    not work for multi-objective studies; this is successive halving done with the study's own trials."""

    def __init__(self, space: SearchSpace, settings: SearchSettings, margin: float = 3.0) -> None:
        self.most = max(space.distill.distill_steps)
        self.steps = space.distill.steps_knob(recover=True)  # an elastic space's pruned candidates: distill/steps
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
    fastest feasible trial is queued again with the skippable blocks skipped that the table measured faster,
    cheapest first, distilled for the most steps. Skipping is the one choice that thinner layers cannot stand in
    for (it removes operators); the table ranks the blocks by cost without fine-tuning, but its drops say nothing
    of what distillation recovers (digits: 0.14-0.89 each, yet four skipped hold within 0.01 after 100 steps), so
    the depth that holds is found by bisection over the count: all of them first, then halfway between the
    deepest that held and the shallowest that did not, one trial at a time (log2 of the blocks instead of one
    trial per count). Once per study, never more trials than this invocation's budget has left (`left`: None
    when only time bounds it)."""

    def __init__(self, space: SearchSpace, table: Sensitivity | None, left: Callable[[], int | None]) -> None:
        self.most = max(space.distill.distill_steps)
        self.steps = space.distill.steps_knob(recover=True)  # an elastic space's pruned candidates: distill/steps
        self.left = left
        self.knobs = {knob.unit: knob for knob in space.prune.skip_knobs()}
        faster = [row for row in (table.rows if table else []) if row.kind == "skip" and row.unit in self.knobs
                  and row.speedup_ci[0] > 1.0]  # fmt: skip
        self.blocks = [self.knobs[row.unit] for row in sorted(faster, key=lambda row: row.drop)]

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if REFINED_ATTR in study.user_attrs:
            self._narrow(study, trial)
        elif self.blocks and not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)):
            self._start(study)  # the first candidates are all measured

    def _start(self, study: optuna.Study) -> None:
        best = fastest_feasible(study)
        if best is None or self.left() == 0:
            return  # nothing holds yet, or no budget left in this invocation: a resumed search takes the step
        remaining = [knob.unit for knob in self.blocks if not knob.read(best.params)]
        if not remaining:
            return
        study.set_user_attr(REFINED_ATTR, best.number)
        study.set_user_attr(DEPTH_ATTR, {"from": best.number, "blocks": remaining, "holds": 0,
                                         "fails": len(remaining) + 1})  # fmt: skip
        self._queue(study, best, remaining, len(remaining))
        log.info("depth step: trial %d again with %d more blocks skipped, then bisecting", best.number, len(remaining))

    def _narrow(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        """A depth trial has finished: move the bound it decides, and queue the middle of what is left open."""
        depth = study.user_attrs.get(DEPTH_ATTR)
        count = trial.user_attrs.get(DEPTH_COUNT_ATTR)
        if depth is None or count is None or not trial.state.is_finished():
            return  # not a finished depth trial
        if trial.user_attrs.get(REFINED_ATTR) != depth["from"]:
            return
        waiting = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))
        if any(queued.user_attrs.get(RETRY_ATTR) == trial.number for queued in waiting):
            return  # interrupted and queued again: the retry, which carries the count, decides
        metrics = trial.user_attrs.get(METRICS_ATTR)
        if trial.state == optuna.trial.TrialState.COMPLETE and metrics is not None and metrics["feasible"]:
            depth["holds"] = max(depth["holds"], count)
        else:  # past the bound, or failed for good (e.g. a runtime refusing the candidate)
            depth["fails"] = min(depth["fails"], count)
        study.set_user_attr(DEPTH_ATTR, depth)
        if depth["fails"] - depth["holds"] <= 1:
            log.info("depth step: %d more blocks skipped hold, %d do not", depth["holds"], depth["fails"])
            return
        if self.left() == 0:
            return
        base = study.get_trials(deepcopy=False)[depth["from"]]
        self._queue(study, base, depth["blocks"], (depth["holds"] + depth["fails"]) // 2)

    def _queue(self, study: optuna.Study, base: optuna.trial.FrozenTrial, blocks: list[str], count: int) -> None:
        params = dict(base.params)
        for unit in blocks[:count]:
            params |= self.knobs[unit].param(True)
        params |= self.steps.param(self.most)
        label = f"trial {base.number} + {count} block{'s' if count > 1 else ''} skipped"
        attrs = {SEEDED_ATTR: label, REFINED_ATTR: base.number, DEPTH_COUNT_ATTR: count}
        study.enqueue_trial(params, user_attrs=attrs, skip_if_exists=True)
