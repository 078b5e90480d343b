"""The stages before the sampler takes over: the sensitivity table (once per study) and the first candidates.

The first candidates are what a user would try by hand and the runtime's one-click recipes (warm starts,
labelled `enqueued`), then the candidates the table's solver proposes (labelled `seeded`: the search's own
proposals, not hand-made). With seeds, TPE starts modelling right after them instead of spending trials at random.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import optuna

from autocompress.config import SearchSettings
from autocompress.evaluators.measure import CONFIRM_POLICY
from autocompress.hardware.profile import HardwareProfile
from autocompress.home import study_dir
from autocompress.search.results import allowed_drop
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
STARTUP_ATTR = "startup_trials"
# At most this share of a time budget (--timeout) builds the sensitivity table: digits' 38 choices took 105 s on
# cpu (35% of 5 minutes, and its seeds made the search 2.4x faster) but 155 s on openvino-cpu, 86% of a 3-minute
# budget, and none of its seeds ran (experiments/results/benchmark-equal-budget/).
SENSITIVITY_SHARE = 0.4


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
    policy = replace(CONFIRM_POLICY, time_cap_s=settings.confirm_seconds)
    budget_s = settings.timeout * SENSITIVITY_SHARE if settings.timeout is not None else None
    workdir = study_dir(study.study_name) / "sensitivity"
    table = analyse(task, profile, space, baseline_path, baseline["metric"], workdir, policy, budget_s)
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
    """Enqueue warm starts and seeds within the trial budget; give the sampler that many start-up trials.
    Returns how many were enqueued.

    The order: the warm starts that do not prune, the seed that adds the table's pruning to the runtime's recipe,
    the pruned warm starts, the other seeds. A time budget may end inside this list, and a pruned warm start is the
    one that costs most where it fails: on MiniLM/openvino-cpu at 5 minutes, uniform pruning 50% (with and without
    int8, 35-44 s each, both past the bound) took the last of the budget, and the recipe seed, which measured 2.94x
    in the study without warm starts, never ran (experiments/results/benchmark-ablations/)."""
    warm = space.warm_starts() if settings.warm_starts else []
    pruned = [(label, params) for label, params in warm if space.strategy(params).prune.any]
    planted: list[Seed] = seeds(space, table, allowed_drop(settings, baseline_metric)) if table else []
    starts = [_warm(start) for start in warm if start not in pruned]
    starts += [_seeded(seed) for seed in planted if seed.refines_recipe]
    starts += [_warm(start) for start in pruned]
    starts += [_seeded(seed) for seed in planted if not seed.refines_recipe]
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


def _warm(start: tuple[str, dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    label, params = start
    return params, {"enqueued": label}


def _seeded(seed: Seed) -> tuple[dict[str, Any], dict[str, Any]]:
    return seed.params, {SEEDED_ATTR: seed.label, ESTIMATE_ATTR: {"drop": seed.drop, "speedup": seed.speedup}}


def worker_sampler(study: optuna.Study, settings: SearchSettings, setup: str, seed: int) -> None:
    """This worker's sampler: one that starts modelling right after a seeded study's seeds, and, beside other
    workers, a seed of its own (two workers with one seed and one history would draw the same candidates)."""
    others_running = any(t.state == optuna.trial.TrialState.RUNNING for t in study.get_trials(deepcopy=False))
    if setup == "waited" or others_running:
        seed += 1009 * (os.getpid() % 9973)
    startup = study.user_attrs.get(STARTUP_ATTR)
    study.sampler = make_sampler(settings, seed, startup=None if startup is None else int(startup))
