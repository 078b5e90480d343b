"""The polish stage: after the budget, the pruned candidate nearest the bound (and faster than the best) is run
once more with a long distillation; a re-run of an interrupted polish keeps its steps."""

from __future__ import annotations

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState

from autocompress.compress.distill import DistillKnobs, DistillSettings
from autocompress.compress.prune import PruneSettings
from autocompress.search.polish import (
    POLISH_STEPS_ATTR,
    POLISHED_ATTR,
    polish,
    polish_candidate,
    polish_params,
    polished,
)
from autocompress.search.recovery import requeue
from autocompress.spaces.strategy import Strategy

ALLOWED = 0.01
DISTILL = DistillKnobs(distill_steps=(0, 25, 50))  # the distillation knobs of the studies below
BASELINE = 0.9


def _baseline(study: optuna.Study) -> float:
    """The baseline metric the study recorded (set on first use, as the search's set-up does)."""
    if "baseline" not in study.user_attrs:
        study.set_user_attr("baseline", {"metric": BASELINE})
    return study.user_attrs["baseline"]["metric"]


def _trial(
    study: optuna.Study, ratio: float, steps: int, drop: float, speedup: float, lr: float = 1e-3,
    relative: bool = False, **attrs: object
) -> int:
    """A finished trial as the search records one: parameters (the lr only where it distilled), strategy, metrics
    (`drop` in the metric's own units; `metric_drop`, in the bound's, a fraction of the baseline if `relative`)."""
    params = {"prune/all": ratio, "distill/steps": steps} | ({"distill/lr": lr} if steps else {})
    distributions = {
        "prune/all": FloatDistribution(0, 0.75, step=0.125),
        "distill/steps": CategoricalDistribution([0, 25, 50]),
        "distill/lr": FloatDistribution(1e-4, 1e-2),
    }
    distributions = {name: distributions[name] for name in params}
    strategy = Strategy(prune=PruneSettings(ratios={"conv": ratio}), distill=DistillSettings(steps=steps, lr=lr))
    baseline = _baseline(study)
    metrics = {"metric": baseline - drop, "metric_drop": drop / baseline if relative else drop, "speedup": speedup,
               "feasible": float(drop <= ALLOWED)}  # fmt: skip
    study.add_trial(optuna.trial.create_trial(
        params=params, distributions=distributions, values=[1 - drop, 1 / speedup],
        user_attrs={"metrics": metrics, "strategy": strategy.model_dump(), **attrs}))  # fmt: skip
    return study.trials[-1].number


def _study() -> optuna.Study:
    study = optuna.create_study(directions=["maximize", "minimize"])
    _trial(study, 0.25, 25, drop=0.005, speedup=2.0, lr=3e-4)  # the fastest feasible: the floor
    _trial(study, 0.5, 25, drop=0.015, speedup=3.0)  # near the bound, faster
    _trial(study, 0.375, 50, drop=0.012, speedup=2.5)  # nearer, faster: the candidate
    _trial(study, 0.125, 25, drop=0.011, speedup=1.5)  # near but slower than the best: nothing to gain
    _trial(study, 0.5, 0, drop=0.013, speedup=4.0)  # re-fitted, never distilled: next in line
    _trial(study, 0.0, 50, drop=0.011, speedup=4.0)  # nothing pruned: nothing for distillation to recover
    _trial(study, 0.75, 50, drop=0.05, speedup=5.0)  # too far from the bound
    return study


def test_the_candidate_is_the_least_damaged_pruned_trial_faster_than_the_best():
    study = _study()
    assert polish_candidate(study, ALLOWED, steps=1000).number == 2
    assert polish_candidate(study, ALLOWED, steps=50).number == 4  # 50 steps are no more than trial 2 had
    _trial(study, 0.375, 50, drop=0.004, speedup=2.6, **{POLISHED_ATTR: 2})  # trial 2 polished: the new best
    assert polish_candidate(study, ALLOWED, steps=1000).number == 4  # faster than that, and next in line
    _trial(study, 0.5, 50, drop=0.02, speedup=4.0, **{POLISHED_ATTR: 4})  # polished, and still short
    assert polish_candidate(study, ALLOWED, steps=1000).number == 1
    _trial(study, 0.5, 50, drop=0.02, speedup=3.0, **{POLISHED_ATTR: 1})
    assert polish_candidate(study, ALLOWED, steps=1000) is None  # each candidate is polished once


def test_a_relative_bound_takes_the_drop_in_the_metric_own_units():
    """--drop-mode relative: a trial records `metric_drop` as a fraction of the baseline (0.019 / 0.9 = 0.021),
    while the stage is given the allowed drop in the metric's own units (0.01). Compared across units, the trial
    0.019 below the baseline looked past 2 x 0.01 and no candidate was found; in one unit it is the candidate,
    as it is in absolute mode."""
    relative = optuna.create_study(directions=["maximize", "minimize"])
    _trial(relative, 0.25, 25, drop=0.005, speedup=2.0, relative=True)  # the floor
    _trial(relative, 0.5, 25, drop=0.019, speedup=3.0, relative=True)  # within 2 x 0.01: near
    _trial(relative, 0.375, 25, drop=0.021, speedup=3.5, relative=True)  # past 2 x 0.01
    assert polish_candidate(relative, ALLOWED, steps=1000).number == 1
    absolute = optuna.create_study(directions=["maximize", "minimize"])
    _trial(absolute, 0.25, 25, drop=0.005, speedup=2.0)
    _trial(absolute, 0.5, 25, drop=0.019, speedup=3.0)
    _trial(absolute, 0.375, 25, drop=0.021, speedup=3.5)
    assert polish_candidate(absolute, ALLOWED, steps=1000).number == 1  # the same trial in either mode


def test_a_candidate_that_took_no_distillation_borrows_the_settings_that_worked_best():
    study = _study()
    own = polish_params(study, study.trials[2], DISTILL)
    assert own == study.trials[2].params  # distilled: its own settings
    borrowed = polish_params(study, study.trials[4], DISTILL)  # re-fitted, 0 steps: trial 0's (drop 0.005, 25 steps)
    assert borrowed == {"prune/all": 0.5, "distill/steps": 25, "distill/lr": 3e-4}
    lone = optuna.create_study(directions=["maximize", "minimize"])
    _trial(lone, 0.5, 0, drop=0.013, speedup=4.0)
    assert polish_params(lone, lone.trials[0], DISTILL) is None  # nothing distilled to learn the settings from


def test_the_polish_runs_after_what_was_queued_with_the_candidates_parameters_and_its_steps():
    study = _study()
    study.enqueue_trial({"prune/all": 0.125, "distill/steps": 25, "distill/lr": 1e-3})  # queued by the budget
    ran: list[tuple[int, dict, int]] = []

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        ratio = trial.suggest_float("prune/all", 0, 0.75, step=0.125)
        steps = trial.suggest_categorical("distill/steps", [0, 25, 50])
        trial.suggest_float("distill/lr", 1e-4, 1e-2)
        strategy = Strategy(prune=PruneSettings(ratios={"conv": ratio}), distill=DistillSettings(steps=steps))
        ran.append((trial.number, dict(trial.params), polished(strategy, trial).distill.steps))
        return 0.99, 0.5

    assert polish(study, objective, steps=1000, allowed_drop=ALLOWED, distill=DISTILL) == 2
    assert [number for number, _, _ in ran] == [7, 8]  # what was queued first, then the polish
    _, params, steps = ran[1]
    assert params == study.trials[2].params and steps == 1000
    assert study.trials[8].user_attrs[POLISHED_ATTR] == 2 and study.trials[8].state == TrialState.COMPLETE


def test_an_interrupted_polish_is_queued_again_with_its_steps():
    study = _study()
    study.enqueue_trial(study.trials[2].params, user_attrs={POLISHED_ATTR: 2, POLISH_STEPS_ATTR: 1000})
    trial = study.ask()
    study.tell(trial, state=TrialState.FAIL)
    requeue(study, study.trials[trial.number])
    (again,) = study.get_trials(states=(TrialState.WAITING,))
    assert again.user_attrs[POLISH_STEPS_ATTR] == 1000 and again.user_attrs[POLISHED_ATTR] == 2


def test_a_candidate_extracted_from_the_elastic_model_is_polished_with_the_elastic_distillation():
    """An extracted candidate that took no fine-tune keeps its own parameters, and the polish distils it as its
    elastic model was trained (loss, temperature, lr); one that was fine-tuned keeps its own settings."""
    from autocompress.spaces.sections import ElasticSettings

    elastic = ElasticSettings(steps=100, loss="cosine", alpha=1.0, lr=2e-4)
    study = optuna.create_study(directions=["maximize", "minimize"])
    _trial(study, 0.25, 0, drop=0.005, speedup=2.0)
    extracted = Strategy(prune=PruneSettings(ratios={"conv": 0.5}), elastic=elastic)
    _trial(study, 0.5, 0, drop=0.015, speedup=3.0, strategy=extracted.model_dump())
    candidate = polish_candidate(study, ALLOWED, steps=400)
    assert candidate is not None and candidate.number == 1
    assert polish_params(study, candidate, DistillKnobs(distill_steps=(0,))) == candidate.params
    queued = optuna.trial.FixedTrial({}, number=2)
    queued.set_user_attr(POLISH_STEPS_ATTR, 400)
    distill = polished(extracted, queued).distill
    assert (distill.steps, distill.loss, distill.alpha, distill.lr) == (400, "cosine", 1.0, 2e-4)
    plain = polished(Strategy(prune=PruneSettings(ratios={"conv": 0.5})), queued).distill
    assert (plain.steps, plain.loss) == (400, "kl")  # a candidate pruned alone keeps its own settings
    tuned = extracted.model_copy(update={"distill": DistillSettings(steps=50, loss="mse", lr=5e-4)})
    assert (polished(tuned, queued).distill.loss, polished(tuned, queued).distill.lr) == ("mse", 5e-4)
