"""The trial loop: sample a Strategy, build it, time it against the baseline on the device, tell Optuna, log to
MLflow. A trial's strategy is logged before it is built, so even a crash leaves what was tried."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from optuna.trial import TrialState

from autocompress.compress.pipeline import STAGE_SECONDS, build
from autocompress.config import SearchSettings
from autocompress.evaluators.measure import measure_artifact
from autocompress.hardware.profile import HardwareProfile
from autocompress.search.artifacts import trial_dir
from autocompress.search.failures import BUG_REASON, TRIAL_FAILURES, TrialBug
from autocompress.search.heap import trials_heap
from autocompress.search.housekeeping import KeepArtifacts
from autocompress.search.polish import polished
from autocompress.search.progress import SearchProgress
from autocompress.search.recovery import WORKER_ATTR, requeue, this_worker
from autocompress.search.results import (
    METRICS_ATTR,
    constraint_values,
    estimate_metrics,
    objective_values,
    trial_metrics,
)
from autocompress.search.run_views import LAYERS_TABLE, layer_table, run_name
from autocompress.search.seeds import estimate
from autocompress.search.sensitivity import Sensitivity
from autocompress.search.stage import Callback, SearchContext
from autocompress.search.tracking import RUN_NAME_TAG, MlflowTracker
from autocompress.search.trial_lines import TrialLines
from autocompress.signals import DEADLINE, not_after, raise_if_interrupted, stop_at
from autocompress.spaces.space import SearchSpace
from autocompress.task import Task

log = logging.getLogger(__name__)


def trial_seed(study_seed: int, trial_number: int) -> int:
    return (study_seed * 1_000_003 + trial_number * 7919) % (2**31 - 1)


def one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:500]


@dataclass
class Objective:
    """One trial: the Strategy is logged before it is built, so even a crash leaves what was tried."""

    task: Task
    profile: HardwareProfile
    settings: SearchSettings
    space: SearchSpace
    study_name: str
    baseline: dict
    baseline_path: Path
    tracker: MlflowTracker
    table: Sensitivity | None = None
    ran: list[int] = field(default_factory=list)  # the trials of this invocation
    deadline: float | None = None  # monotonic: the time budget's end plus its margin; a trial past it fails

    def __call__(self, trial: optuna.Trial) -> tuple[float, ...]:
        trial.set_user_attr(WORKER_ATTR, this_worker())  # so a worker that dies is recognised (recovery.py)
        self.ran.append(trial.number)
        strategy = polished(self.space.sample(trial, seed=trial_seed(self.settings.seed, trial.number)), trial)
        trial.set_user_attr("strategy", strategy.model_dump())
        run_id = self.tracker.start_trial(trial.number, tags={"device": self.profile.name})
        trial.set_user_attr("mlflow_run_id", run_id)
        name = run_name(trial.number, strategy, self.space.added)
        self.tracker.log(run_id, params=strategy.summary(), tags={RUN_NAME_TAG: name})
        self.tracker.log_text(run_id, strategy.to_yaml(), "strategy.yaml")
        layers = layer_table(strategy, self.space.quantize.layers, self.space.added)
        self.tracker.log_table(run_id, layers, LAYERS_TABLE)
        try:
            raise_if_interrupted()  # a Ctrl-C swallowed since the last trial: this one is requeued, not built
            with stop_at(self.deadline, "building the candidate"):
                artifact = build(self.task, strategy, self.profile, trial_dir(self.study_name, trial.number))
            not_after(self.deadline, "measuring the candidate")  # never cut mid-way: it talks to the device
            measuring = time.monotonic()
            measurement = measure_artifact(artifact.path, self.task, self.profile, baseline=self.baseline_path)
            metrics = trial_metrics(measurement, self.baseline, self.settings)
            metrics["parameters"] = float(artifact.metadata["parameters"])
            metrics["build_threads"] = float(artifact.metadata["build_threads"])
            metrics |= {f"time_{stage}": float(artifact.metadata[stage]) for stage in STAGE_SECONDS}
            metrics["time_measure_s"] = time.monotonic() - measuring  # where the trial's time went
            if self.table is not None:  # how far the sensitivity table's additive estimate was from the truth
                drop, speedup = estimate(self.space, self.table, strategy)
                metrics |= estimate_metrics(metrics, drop, speedup, self.baseline["metric"], self.settings)
            trial.set_user_attr(METRICS_ATTR, metrics)
            for key, value in constraint_values(metrics["metric_drop"], measurement.size_bytes, self.settings).items():
                trial.set_constraint(key, value)
            named = {self.task.metric_name: metrics["metric"], f"{self.task.metric_name}_drop": metrics["metric_drop"]}
            environment = {f"env.{key}": value for key, value in measurement.environment.items()}
            self.tracker.log(run_id, metrics=metrics | named, tags={"state": "COMPLETE", **environment})
            self.tracker.end_trial(run_id, "FINISHED")
        except KeyboardInterrupt:
            self._record_failure(
                trial, run_id, "interrupted by the user (SIGINT/SIGTERM); queued to run again", "KILLED"
            )
            requeue(trial.study, trial)
            raise
        except TRIAL_FAILURES as error:  # what a candidate may legitimately meet: the trial fails, the search goes on
            self._record_failure(trial, run_id, one_line(error), "FAILED")
            raise
        except Exception as error:  # a bug: the search stops; the candidate waits for the run after the fix
            self._record_failure(trial, run_id, f"{BUG_REASON} {one_line(error)}", "FAILED")
            requeue(trial.study, trial)
            raise TrialBug(trial.number, one_line(error)) from error
        return objective_values(metrics, self.settings)

    def _record_failure(self, trial: optuna.Trial, run_id: str, reason: str, status: str) -> None:
        log.warning("trial %d failed: %s", trial.number, reason)
        trial.set_user_attr("fail_reason", reason)
        self.tracker.log(run_id, tags={"state": "FAIL", "error": reason})
        self.tracker.end_trial(run_id, status)
        shutil.rmtree(trial_dir(self.study_name, trial.number), ignore_errors=True)


def run_trials(context: SearchContext, between: Sequence[Callback]) -> None:
    """Trials until this invocation's budget: `trials` more, or its time budget, which counts from the start of the
    invocation (set-up and sensitivity included: a budget is the wall-clock a user gives, and methods compared at
    equal budget pay for all they do). `between`: the later stages' callbacks, called after each trial."""
    settings = context.settings
    assert context.baseline_path is not None
    objective = Objective(context.task, context.profile, settings, context.space, context.study_name,
                          context.baseline, context.baseline_path, context.tracker, context.table,
                          context.ran)  # fmt: skip
    context.objective = objective
    timeout = None if settings.timeout is None else max(1.0, settings.timeout - (time.monotonic() - context.started))
    if timeout is not None:
        objective.deadline = time.monotonic() + timeout + settings.deadline_margin
    lines = TrialLines(context.task.metric_name)
    with SearchProgress(settings.trials, timeout, context.console) as progress, trials_heap():
        context.study.optimize(
            objective,
            n_trials=settings.trials,
            timeout=timeout,
            catch=TRIAL_FAILURES,
            callbacks=[KeepArtifacts(context.tracker, context.study_name, settings.confirm), *between, progress, lines],
            gc_after_trial=True,
        )


def failures(study: optuna.Study, trials: Sequence[int]) -> list[str]:
    """Why these trials failed (one entry per failed trial)."""
    failed = [study.trials[n] for n in trials if study.trials[n].state == TrialState.FAIL]
    return [trial.user_attrs.get("fail_reason", "unknown") for trial in failed]


def all_failed(study: optuna.Study, trials: Sequence[int]) -> bool:
    """Every one of these trials failed, and not only because the time budget ran out."""
    found = failures(study, trials)
    return bool(trials) and len(found) == len(trials) and not all(DEADLINE in reason for reason in found)
