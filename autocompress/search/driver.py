"""The search loop: sample a Strategy, build it, time it against the baseline on the device, tell Optuna, log
to MLflow; at the end, confirm the top candidates together before anything is called best."""

from __future__ import annotations

import json
import logging
import platform
import shutil
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console

from autocompress.compress.pipeline import STAGE_SECONDS, build
from autocompress.config import SearchSettings
from autocompress.evaluators.measure import measure_artifact
from autocompress.hardware.locks import compute_slot, registered_worker
from autocompress.hardware.profile import HardwareProfile
from autocompress.home import default_tracking_uri
from autocompress.search.artifacts import baseline_artifact, trial_dir
from autocompress.search.claim import once_per_study
from autocompress.search.confirm import Confirmed, as_record, confirm, winner
from autocompress.search.failures import BUG_REASON, TRIAL_FAILURES, TrialBug
from autocompress.search.morning_report import METRIC_NAME_ATTR, render
from autocompress.search.polish import polish, polished
from autocompress.search.progress import SearchProgress
from autocompress.search.recovery import WORKER_ATTR, recover_trials, requeue, this_worker
from autocompress.search.results import (
    BASELINE_ATTR,
    METRICS_ATTR,
    constraint_values,
    estimate_metrics,
    feasible_front,
    measurement_record,
    objective_names,
    objective_values,
    top_feasible,
    trial_metrics,
)
from autocompress.search.run_views import LAYERS_TABLE, layer_table, run_name
from autocompress.search.seeds import estimate
from autocompress.search.sensitivity import Sensitivity
from autocompress.search.stages import (
    PromoteProbes,
    SkipFromIncumbent,
    allowed_drop,
    first_candidates,
    sensitivity_table,
    worker_sampler,
)
from autocompress.search.study import open_storage, open_study
from autocompress.search.tracking import RUN_NAME_TAG, MlflowTracker
from autocompress.search.trial_lines import TrialLines
from autocompress.signals import DEADLINE, interrupts_as_keyboard, not_after, raise_if_interrupted, stop_at
from autocompress.spaces.space import SearchSpace
from autocompress.task import Task

log = logging.getLogger(__name__)


class SearchInterrupted(Exception):
    """Ctrl-C or SIGTERM: the running trial was failed and recorded; the next invocation resumes."""


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


class KeepArtifacts:
    """After each trial: log newly non-dominated artifacts to MLflow, and delete the local artifacts of finished
    trials that are neither on the feasible front nor among the top candidates confirmation will re-time.

    Only finished trials' folders are touched, so a trial being built by another worker is never deleted."""

    def __init__(self, tracker: MlflowTracker, study_name: str, keep_top: int) -> None:
        self.tracker = tracker
        self.study_name = study_name
        self.keep_top = keep_top

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        front = {t.number for t in feasible_front(study)}
        if trial.number in front and "mlflow_run_id" in trial.user_attrs:
            for path in trial_dir(self.study_name, trial.number).glob("model.*"):
                self.tracker.log_artifact(trial.user_attrs["mlflow_run_id"], path)
        keep = front | {t.number for t in top_feasible(study, self.keep_top)}
        finished = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}
        for number in finished - keep:
            shutil.rmtree(trial_dir(self.study_name, number), ignore_errors=True)


def measure_baseline(task: Task, profile: HardwareProfile, study: optuna.Study) -> tuple[dict, Path]:
    """The uncompressed model, exported exactly like a candidate and kept on disk for the whole study: its metric
    and size are measured once and stored; its latency is re-timed beside every candidate."""
    path = baseline_artifact(study.study_name, task, profile)
    if BASELINE_ATTR not in study.user_attrs:
        study.set_user_attr(BASELINE_ATTR, measurement_record(measure_artifact(path, task, profile)))
    return study.user_attrs[BASELINE_ATTR], path


@dataclass
class SearchOutcome:
    """The study after this invocation, and the confirmation of its top candidates (best first)."""

    study: optuna.Study
    confirmed: list[Confirmed] = field(default_factory=list)
    wall_s: float = 0.0  # this invocation, confirmation included
    confirm_s: float = 0.0  # the confirmation stage alone
    trials: list[int] = field(default_factory=list)  # the trial numbers this invocation ran

    def failures(self) -> list[str]:
        """Why this invocation's trials failed (one entry per failed trial)."""
        failed = [self.study.trials[n] for n in self.trials if self.study.trials[n].state == TrialState.FAIL]
        return [trial.user_attrs.get("fail_reason", "unknown") for trial in failed]

    def all_failed(self) -> bool:
        """Every trial of this invocation failed, and not only because the time budget ran out."""
        failures = self.failures()
        return bool(self.trials) and len(failures) == len(self.trials) and not all(DEADLINE in f for f in failures)


def run_search(
    task: Task,
    profile: HardwareProfile,
    settings: SearchSettings,
    study_name: str,
    console: Console | None = None,
) -> SearchOutcome:
    """Run (or resume) a study until `trials` more trials or `timeout`, then confirm the top candidates; Ctrl-C
    raises SearchInterrupted."""
    started = time.monotonic()
    space = SearchSpace.for_task(task, profile, settings.granularity)
    storage = open_storage(settings.storage)
    study = open_study(study_name, storage, settings, space)
    opened_with = len(study.get_trials(deepcopy=False))  # a resumed study must not replay its draws
    recover_trials(study, storage)
    tracker = MlflowTracker(settings.tracking_uri or default_tracking_uri(), study_name, _description(task, profile,
                            settings))  # fmt: skip
    tracker.close_orphans()
    tracker.start_parent(run_name=f"search-{datetime.now():%Y%m%d-%H%M%S}", params=_run_params(task, profile,
                         settings, space), tags={"study": study_name, "host": profile.host,
                         "runtime": profile.record.name, "controller": platform.node()})  # fmt: skip
    try:
        with interrupts_as_keyboard(), registered_worker():

            def set_up() -> None:  # once per study, in whichever worker claims it (search/claim.py)
                study.set_user_attr(METRIC_NAME_ATTR, task.metric_name)
                name_objectives(study, objective_names(task.metric_name, settings))
                baseline, baseline_path = measure_baseline(task, profile, study)
                table = _table(study, task, profile, space, baseline, baseline_path, settings, tracker)
                if settings.sampler == "tpe":
                    first_candidates(study, space, settings, table, baseline["metric"])

            setup = once_per_study(study, storage, set_up)
            worker_sampler(study, settings, setup, settings.seed + opened_with)
            baseline, baseline_path = measure_baseline(task, profile, study)  # stored: this worker's local file
            if notice := task.data.carving_notice():  # once the search is under way (not before a refusal)
                log.warning(notice)
            table = _table(study, task, profile, space, baseline, baseline_path, settings, tracker)
            tracker.log(tracker.parent_id or "", metrics={
                "baseline_metric": baseline["metric"], "baseline_latency_ms": baseline["latency_ms"],
                "baseline_size_bytes": float(baseline["size_bytes"])})  # fmt: skip
            objective = Objective(task, profile, settings, space, study_name, baseline, baseline_path, tracker, table)
            left = lambda: None if settings.trials is None else settings.trials - len(objective.ran)  # noqa: E731
            refine = [PromoteProbes(space, settings), SkipFromIncumbent(space, table, left)]
            promote = refine if settings.sampler == "tpe" else []  # random stays plain
            # the time budget counts from the start of this invocation: set-up (baseline, sensitivity) included,
            # so a budget is the wall-clock a user gives, and methods compared at equal budget pay for all they do
            timeout = None if settings.timeout is None else max(1.0, settings.timeout - (time.monotonic() - started))
            if timeout is not None:
                objective.deadline = time.monotonic() + timeout + settings.deadline_margin
            lines = TrialLines(task.metric_name)
            with SearchProgress(settings.trials, timeout, console) as progress:
                study.optimize(
                    objective,
                    n_trials=settings.trials,
                    timeout=timeout,
                    catch=TRIAL_FAILURES,
                    callbacks=[KeepArtifacts(tracker, study_name, settings.confirm), *promote, progress, lines],
                    gc_after_trial=True,
                )
            if settings.polish_steps and settings.sampler == "tpe":  # after the budget, its deadline lifted
                objective.deadline = None
                keep = KeepArtifacts(tracker, study_name, settings.confirm)
                polish(study, objective, settings.polish_steps, allowed_drop(settings, baseline["metric"]),
                       space.distill, callbacks=[keep, lines])  # fmt: skip
            confirming = time.monotonic()
            confirmed = (
                confirm(study, task, profile, settings.confirm, attempts=settings.confirm_windows, settings=settings)
                if settings.confirm
                else []
            )
            confirm_s = time.monotonic() - confirming
    except KeyboardInterrupt:
        tracker.end_parent("KILLED")
        raise SearchInterrupted(f"search '{study_name}' interrupted; run the same command again to resume") from None
    except Exception:  # a user's mistake or a bug: the study is kept, the next invocation resumes it
        tracker.end_parent("FAILED")
        raise
    wall_s = time.monotonic() - started
    with compute_slot():  # rendering and uploading are work: not during another process's timing
        _log_confirmation(tracker, study, confirmed)
        tracker.log_text(tracker.parent_id or "", render([study], task.metric_name), "report.html")  # morning page
    states = Counter(t.state.name.lower() for t in study.get_trials(deepcopy=False))
    tracker.log(tracker.parent_id or "", metrics={"wall_s": wall_s, "confirm_s": confirm_s,
                **{f"trials_{state}": float(count) for state, count in states.items()}})  # fmt: skip
    tracker.end_parent("FINISHED")
    return SearchOutcome(study, confirmed, wall_s, confirm_s, objective.ran)


def name_objectives(study: optuna.Study, names: list[str]) -> None:
    """Optuna's own objective names, so optuna-dashboard labels its axes (an API still marked experimental)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(names)


def _table(
    study: optuna.Study,
    task: Task,
    profile: HardwareProfile,
    space: SearchSpace,
    baseline: dict,
    baseline_path: Path,
    settings: SearchSettings,
    tracker: MlflowTracker,
) -> Sensitivity | None:
    """The study's sensitivity table (measured once, then read from the study); random search stays plain."""
    if settings.sampler == "tpe" and settings.sensitivity:
        return sensitivity_table(study, task, profile, space, baseline, baseline_path, settings, tracker)
    return None


def _run_params(task: Task, profile: HardwareProfile, settings: SearchSettings, space: SearchSpace) -> dict:
    return {
        "device": profile.name,
        "task": task.name,
        "trials": settings.trials or 0,
        "max_drop": settings.max_drop,
        "drop_mode": settings.drop_mode,
        "granularity": space.granularity,
        "sampler": settings.sampler,
        "seed": settings.seed,
        "confirm": settings.confirm,
        "confirm_windows": settings.confirm_windows,
    }


def _description(task: Task, profile: HardwareProfile, settings: SearchSettings) -> str:
    bound = f"{settings.max_drop:g}" + (" (relative)" if settings.drop_mode == "relative" else "")
    return (f"autocompress search: model `{task.name}` on device `{profile.name}` ({profile.record.name}); "
            f"{task.metric_name} may drop by at most {bound}. One run per search, nested runs per trial; "
            "the best confirmed trial is tagged best = true.")  # fmt: skip


def _log_confirmation(tracker: MlflowTracker, study: optuna.Study, confirmed: list[Confirmed]) -> None:
    """The parent run carries the confirmed figures: the best, and every candidate as a JSON table; the winner's
    trial run is tagged `best` so the UI can filter on it."""
    if not confirmed or tracker.parent_id is None:
        return
    chosen = winner(confirmed)
    run_id = study.trials[chosen.trial].user_attrs.get("mlflow_run_id") if chosen else None
    if run_id is not None:
        tracker.log(run_id, tags={"best": "true"})
    if chosen is not None:
        tracker.log(tracker.parent_id, metrics=confirmed_metrics(chosen, study.user_attrs[BASELINE_ATTR]),
                    tags={"confirmed_best_trial": str(chosen.trial),
                          "speedup_noisy": str(chosen.final is not None and chosen.final.noisy).lower()})  # fmt: skip
    if run_id is not None and chosen is not None and chosen.test_metric is not None:
        tracker.log(run_id, metrics={"test_metric": chosen.test_metric, "test_drop": chosen.test_drop or 0.0})
    records = [as_record(item) for item in confirmed]
    tracker.log_text(tracker.parent_id, json.dumps(records, indent=2), "confirmation.json")


def confirmed_metrics(chosen: Confirmed, baseline: dict) -> dict[str, float]:
    """The winner's figures as MLflow metrics, named by split and by baseline."""
    metrics = {"selection_speedup": chosen.speedup, "confirm_rounds": float(chosen.rounds)}
    if chosen.metric is not None:
        metrics |= {"validation_metric": chosen.metric, "baseline_validation_metric": baseline["metric"]}
    if chosen.test_metric is not None:
        metrics |= {"test_metric": chosen.test_metric, "baseline_test_metric": baseline.get("test_metric", 0.0),
                    "test_drop": chosen.test_drop or 0.0}  # fmt: skip
    final = chosen.final
    if final is not None:
        metrics |= {"confirmed_speedup": final.default.speedup, "confirmed_speedup_ci_low": final.default.ci_low,
                    "confirmed_speedup_ci_high": final.default.ci_high, "speedup_over_fp32": final.fp32.speedup,
                    "speedup_over_fp32_ci_low": final.fp32.ci_low, "speedup_over_fp32_ci_high": final.fp32.ci_high,
                    "confirm_windows": float(final.windows), "confirm_windows_left_out": float(final.left_out),
                    "speedup_noisy": float(final.noisy),
                    "threads": float(final.threads)}  # fmt: skip
    return metrics
