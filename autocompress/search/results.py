"""What a trial measured, relative to the study's baseline, and the feasible Pareto front of a study."""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from autocompress.config import SearchSettings
from autocompress.evaluators.base import Measurement

BASELINE_ATTR = "baseline"
METRICS_ATTR = "metrics"
EXTRA_PREFIX = "extra."  # the task's reported-only metrics, e.g. extra.min_fidelity


def measurement_record(measurement: Measurement) -> dict[str, Any]:
    """The baseline as stored with the study (JSON-able)."""
    return {
        "metric": measurement.metric,
        "latency_ms": measurement.latency.median_ms,
        "latency": measurement.latency.as_dict(),
        "size_bytes": measurement.size_bytes,
        **{EXTRA_PREFIX + name: value for name, value in measurement.extras.items()},
    }


def metric_drop(baseline_metric: float, metric: float, settings: SearchSettings) -> float:
    """How much worse than the baseline, in the units of the constraint (absolute, or relative fraction)."""
    drop = baseline_metric - metric
    if settings.drop_mode == "relative":
        return drop / abs(baseline_metric) if baseline_metric else drop
    return drop


def trial_metrics(measurement: Measurement, baseline: dict[str, Any], settings: SearchSettings) -> dict[str, float]:
    """Every number logged for a trial: the metric and its drop, latency statistics, speedup, size."""
    latency = measurement.latency
    drop = metric_drop(baseline["metric"], measurement.metric, settings)
    return {
        "metric": measurement.metric,
        "metric_drop": drop,
        "latency_ms": latency.median_ms,
        "latency_p90_ms": latency.p90_ms,
        "latency_mean_ms": latency.mean_ms,
        "latency_std_ms": latency.std_ms,
        "latency_ci_low_ms": latency.ci_low_ms,
        "latency_ci_high_ms": latency.ci_high_ms,
        "latency_n": float(latency.n),
        "latency_noisy": float(latency.noisy),
        "speedup": baseline["latency_ms"] / latency.median_ms,
        "size_bytes": float(measurement.size_bytes),
        "size_mb": measurement.size_bytes / 1e6,
        "compression_ratio": baseline["size_bytes"] / measurement.size_bytes,
        "feasible": float(is_within_bounds(drop, measurement.size_bytes, settings)),
        **{EXTRA_PREFIX + name: value for name, value in measurement.extras.items()},
    }


def constraint_values(drop: float, size_bytes: int, settings: SearchSettings) -> dict[str, float]:
    """Optuna constraints (feasible when <= 0): the metric drop bound and the optional size cap."""
    values = {"metric_drop": drop - settings.max_drop}
    if settings.max_size_mb is not None:
        values["size_mb"] = size_bytes / 1e6 - settings.max_size_mb
    return values


def is_within_bounds(drop: float, size_bytes: int, settings: SearchSettings) -> bool:
    return all(value <= 0 for value in constraint_values(drop, size_bytes, settings).values())


def feasible_front(study: optuna.Study) -> list[FrozenTrial]:
    """Completed, feasible, non-dominated trials (Optuna applies the constraints in best_trials)."""
    return [trial for trial in study.best_trials if trial.state == TrialState.COMPLETE]


def fastest_feasible(study: optuna.Study) -> FrozenTrial | None:
    """ "Best" = the fastest strategy within the accuracy constraint."""
    front = feasible_front(study)
    return min(front, key=lambda trial: trial.user_attrs[METRICS_ATTR]["latency_ms"]) if front else None
