"""The search invocation's MLflow run: opened with what was searched, closed with the confirmed figures, the
morning page and the trial counts (one experiment per study, one parent run per invocation, the trials nested)."""

from __future__ import annotations

import json
import platform
from collections import Counter
from datetime import datetime

import optuna

from autocompress.config import SearchSettings
from autocompress.hardware.locks import compute_slot
from autocompress.hardware.profile import HardwareProfile
from autocompress.home import default_tracking_uri
from autocompress.search.confirm import Confirmed, as_record, winner
from autocompress.search.morning_report import render
from autocompress.search.results import BASELINE_ATTR
from autocompress.search.tracking import MlflowTracker
from autocompress.spaces.space import SearchSpace
from autocompress.task import Task


def open_parent_run(
    task: Task, profile: HardwareProfile, settings: SearchSettings, space: SearchSpace, study_name: str
) -> MlflowTracker:
    """The study's experiment (runs left open by a dead worker closed as KILLED) and this invocation's run."""
    tracker = MlflowTracker(settings.tracking_uri or default_tracking_uri(), study_name, _description(task, profile,
                            settings))  # fmt: skip
    tracker.close_orphans()
    tracker.start_parent(run_name=f"search-{datetime.now():%Y%m%d-%H%M%S}", params=_run_params(task, profile,
                         settings, space), tags={"study": study_name, "host": profile.host,
                         "runtime": profile.record.name, "controller": platform.node()})  # fmt: skip
    return tracker


def close_parent_run(
    tracker: MlflowTracker, study: optuna.Study, metric_name: str, confirmed: list[Confirmed], wall_s: float,
    confirm_s: float,
) -> None:  # fmt: skip
    """The confirmed figures, the morning page, the time taken and the trials by state; the run FINISHED."""
    with compute_slot():  # rendering and uploading are work: not during another process's timing
        _log_confirmation(tracker, study, confirmed)
        tracker.log_text(tracker.parent_id or "", render([study], metric_name), "report.html")  # morning page
    states = Counter(t.state.name.lower() for t in study.get_trials(deepcopy=False))
    tracker.log(tracker.parent_id or "", metrics={"wall_s": wall_s, "confirm_s": confirm_s,
                **{f"trials_{state}": float(count) for state, count in states.items()}})  # fmt: skip
    tracker.end_parent("FINISHED")


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
        # how the elastic model the trials extract from is trained ("off": pruned candidates are distilled alone)
        "elastic": "off" if settings.elastic is None else settings.elastic.model_dump_json(exclude_defaults=True),
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
