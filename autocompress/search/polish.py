"""The last stage of a search given a long-training budget (`--polish-steps`): one candidate, distilled far longer.

A trial's short distillation cannot buy what thousands of steps can. MiniLM with a quarter of its FFN channels
pruned (and re-fitted) is at fidelity 0.9898 in torch; 100 steps leave it at 0.984-0.990 (by learning rate),
6000 steps of 32 sentences take it to 0.9931 (experiments/minilm_distill.py): across the 0.99 bound in
OpenVINO, 1.14x faster than NNCF's preset. An overnight search spends that time on the one candidate most likely
to become the new best: a pruned trial, faster than the fastest feasible one, within `margin` times the allowed
drop, the least damaged of those. It runs as one more trial with the same parameters and the longer distillation
(a re-fitted candidate that took none borrows the distillation settings of the study's least damaged distilled
trial; a candidate extracted from the elastic model, with the distillation its elastic model was trained with),
recorded in its strategy (so the exported strategy re-applies it), and it is confirmed like any other trial.
Successive halving's last rung, after the budget.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from autocompress.compress.distill import DistillKnobs
from autocompress.search.failures import TRIAL_FAILURES
from autocompress.search.heap import trials_heap
from autocompress.search.results import BASELINE_ATTR, METRICS_ATTR, fastest_feasible
from autocompress.spaces.knobs import only, without
from autocompress.spaces.strategy import Strategy

log = logging.getLogger(__name__)
POLISHED_ATTR = "polished_from"
POLISH_STEPS_ATTR = "polish_steps"


def _pruned_steps(trial: FrozenTrial) -> int | None:
    """The trial's distillation steps if it pruned something, else None."""
    recorded = trial.user_attrs.get("strategy")
    if recorded is None:
        return None
    strategy = Strategy.model_validate(recorded)
    return strategy.distill.steps if strategy.prune.any else None


def _drop(study: optuna.Study, trial: FrozenTrial) -> float:
    """The trial's drop in the metric's own units, those of `allowed_drop` (the recorded `metric_drop` is in the
    bound's units: a fraction of the baseline with `--drop-mode relative`)."""
    return study.user_attrs[BASELINE_ATTR]["metric"] - trial.user_attrs[METRICS_ATTR]["metric"]


def polish_candidate(study: optuna.Study, allowed_drop: float, steps: int, margin: float = 2.0) -> FrozenTrial | None:
    """The pruned, infeasible trial within `margin` x `allowed_drop` (in the metric's own units) that is faster
    than the fastest feasible one and the least damaged of those; None if there is none (or it was polished
    already)."""
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    already = {trial.user_attrs.get(POLISHED_ATTR) for trial in study.get_trials(deepcopy=False)}
    best = fastest_feasible(study)
    floor = best.user_attrs[METRICS_ATTR]["speedup"] if best is not None else 1.0
    candidates = []
    for trial in trials:
        metrics = trial.user_attrs.get(METRICS_ATTR)
        if metrics is None or metrics["feasible"] or trial.number in already or POLISHED_ATTR in trial.user_attrs:
            continue
        near = _drop(study, trial) <= margin * allowed_drop and metrics["speedup"] > floor
        had = _pruned_steps(trial)
        if near and had is not None and had < steps:
            candidates.append(trial)
    return min(candidates, key=lambda trial: _drop(study, trial), default=None)


def polish_params(study: optuna.Study, candidate: FrozenTrial, distill: DistillKnobs) -> dict[str, Any] | None:
    """The candidate's parameters with distillation settings to polish with: its own if it was distilled; else
    (a re-fitted candidate that took none) those of the study's least damaged distilled pruned trial, the
    settings that worked best here, under the steps knob the candidate was asked. None when the study has no such
    trial."""
    if _pruned_steps(candidate) or candidate.user_attrs["strategy"].get("elastic"):  # an extracted candidate is
        return dict(candidate.params)  # distilled as its elastic model was trained (`polished`)
    distilled = [trial for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                 if METRICS_ATTR in trial.user_attrs and _pruned_steps(trial)]  # fmt: skip
    if not distilled:
        return None
    donor = min(distilled, key=lambda trial: _drop(study, trial))
    steps_knobs = distill.steps_knobs()
    steps = next(knob.read(donor.params) for knob in steps_knobs if knob.read(donor.params) is not None)
    borrowed = without(only(donor.params, distill.knobs()), steps_knobs)
    asked = next((knob for knob in steps_knobs if knob.read(candidate.params) is not None), steps_knobs[0])
    return without(candidate.params, distill.knobs()) | borrowed | asked.param(steps)


def polish(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], Any],
    steps: int,
    allowed_drop: float,
    distill: DistillKnobs,
    callbacks: Sequence[Callable[[optuna.Study, FrozenTrial], None]] = (),
) -> int | None:
    """Queue the candidate again with `steps` of distillation and run it (after any trial queued before it, which
    Optuna runs first); returns the candidate's number. `distill`: the space's distillation knobs."""
    candidate = polish_candidate(study, allowed_drop, steps)
    params = polish_params(study, candidate, distill) if candidate is not None else None
    if candidate is None or params is None:
        log.info("polish: no pruned candidate near the bound and faster than the best feasible one")
        return None
    log.info("polish: trial %d again with %d distillation steps", candidate.number, steps)
    attrs = {POLISHED_ATTR: candidate.number, POLISH_STEPS_ATTR: steps}
    queued = len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))  # Optuna runs the oldest first
    study.enqueue_trial(params, user_attrs=attrs, skip_if_exists=False)
    with trials_heap():
        study.optimize(objective, n_trials=queued + 1, catch=TRIAL_FAILURES, callbacks=list(callbacks),
                       gc_after_trial=True)
    return candidate.number


def polished(strategy: Strategy, trial: optuna.Trial) -> Strategy:
    """The strategy with the polish stage's distillation steps, for a trial the stage queued."""
    steps = trial.user_attrs.get(POLISH_STEPS_ATTR)
    if steps is None:
        return strategy
    # an extracted candidate that took no fine-tune: as its elastic model was trained
    tuned = strategy.elastic is None or strategy.distill.steps
    distill = strategy.distill if tuned else strategy.elastic.distill
    return strategy.model_copy(update={"distill": distill.model_copy(update={"steps": int(steps)})})
