"""What a trial measured, relative to the baseline it was timed against, and how trials are ranked.

Optuna's objectives are the metric, capped at the baseline's, and the **relative latency**: the candidate's
latency over the baseline's, as a paired ratio (the two alternated in rounds in one window, see
evaluators/device/latency.py), i.e. 1 / speedup.
A latency in milliseconds, divided by a baseline timed minutes earlier, would rank candidates by the moment
they happened to be timed on a machine whose speed drifts by 10-30%.
The cap: the promise is to keep the model's accuracy, not to raise it, and a compressed model that scores above
the baseline does so by a few validation samples of luck. Uncapped, such a point would sit on the Pareto front
for its luck alone and pull the sampler towards it instead of towards speed.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from autocompress.config import SearchSettings
from autocompress.evaluators.base import Measurement
from autocompress.spaces.strategy import Strategy

BASELINE_ATTR = "baseline"
METRICS_ATTR = "metrics"
REFINED_ATTR = "refined_from"  # a depth-step trial (search/refine.py): the trial it deepens
DEPTH_COUNT_ATTR = "blocks_skipped"  # and how many more blocks it skips
OBJECTIVE_ATTR = "latency_objective"
OBJECTIVE = "paired-relative-latency/v1"
EXTRA_PREFIX = "extra."  # the task's reported-only metrics, e.g. extra.min_fidelity


def measurement_record(measurement: Measurement) -> dict[str, Any]:
    """The baseline as stored with the study (JSON-able); its latency alone is for information, never a divisor."""
    return {
        "metric": measurement.metric,
        "latency_ms": measurement.latency.median_ms,
        "latency": measurement.latency.as_dict(),
        "size_bytes": measurement.size_bytes,
        **{EXTRA_PREFIX + name: value for name, value in measurement.extras.items()},
    }


def allowed_drop(settings: SearchSettings, baseline_metric: float) -> float:
    """The bound in the metric's own units (a relative bound scales with the baseline)."""
    return settings.max_drop * abs(baseline_metric) if settings.drop_mode == "relative" else settings.max_drop


def metric_drop(baseline_metric: float, metric: float, settings: SearchSettings) -> float:
    """How much worse than the baseline, in the units of the constraint (absolute, or relative fraction)."""
    drop = baseline_metric - metric
    if settings.drop_mode == "relative":
        return drop / abs(baseline_metric) if baseline_metric else drop
    return drop


def estimate_metrics(
    metrics: dict[str, float], drop: float, speedup: float, baseline_metric: float, settings: SearchSettings
) -> dict[str, float]:
    """How far the sensitivity table's additive estimate (`drop` in the metric's own units, as the table measures
    it; `speedup`) was from the trial's measurement. The drop is compared in the bound's units, as `metric_drop`
    is: with `--drop-mode relative` both are fractions of the baseline metric."""
    estimated = metric_drop(baseline_metric, baseline_metric - drop, settings)
    return {"estimate_drop": estimated, "estimate_speedup": speedup,
            "estimate_drop_error": metrics["metric_drop"] - estimated,
            "estimate_speedup_error": metrics["speedup"] / speedup - 1.0}  # fmt: skip


def trial_metrics(measurement: Measurement, baseline: dict[str, Any], settings: SearchSettings) -> dict[str, float]:
    """Every number logged for a trial: the metric and its drop, the paired speedup and its interval, both
    latencies of that window in ms, and size."""
    latency, paired, concurrent = measurement.latency, measurement.speedup, measurement.baseline_latency
    if paired is None or concurrent is None:
        raise ValueError("a trial's measurement must be paired with the baseline")
    drop = metric_drop(baseline["metric"], measurement.metric, settings)
    return {
        "metric": measurement.metric,
        "metric_drop": drop,
        "metric_capped": min(measurement.metric, baseline["metric"]),
        "speedup": paired.speedup,
        "speedup_ci_low": paired.ci_low,
        "speedup_ci_high": paired.ci_high,
        "relative_latency": 1.0 / paired.speedup,
        "timing_rounds": float(paired.rounds),
        "settled_share": paired.settled_share,
        "latency_noisy": float(paired.noisy),
        "latency_ms": latency.median_ms,
        "latency_p90_ms": latency.p90_ms,
        "latency_ci_low_ms": latency.ci_low_ms,
        "latency_ci_high_ms": latency.ci_high_ms,
        "latency_n": float(latency.n),
        "baseline_latency_ms": concurrent.median_ms,
        "timing_lock_wait_s": measurement.lock_wait_s,
        "size_bytes": float(measurement.size_bytes),
        "size_mb": measurement.size_bytes / 1e6,
        "compression_ratio": baseline["size_bytes"] / measurement.size_bytes,
        "feasible": float(is_within_bounds(drop, measurement.size_bytes, settings)),
        **{EXTRA_PREFIX + name: value for name, value in measurement.extras.items()},
    }


def objective_names(metric_name: str, settings: SearchSettings) -> list[str]:
    """The objectives' names, in `objective_values`' order."""
    return [metric_name, "relative_latency", *(["size_mb"] if settings.size_objective else [])]


def objective_values(metrics: dict[str, float], settings: SearchSettings) -> tuple[float, ...]:
    """What Optuna optimises: maximise the metric up to the baseline's, minimise the relative latency (and the
    size, if asked)."""
    values = [metrics["metric_capped"], metrics["relative_latency"]]
    if settings.size_objective:
        values.append(metrics["size_mb"])
    return tuple(values)


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


def is_compressed(trial: FrozenTrial) -> bool:
    """The uncompressed model (nothing pruned, every layer fp32) is the baseline itself, never a result."""
    return not Strategy(**trial.user_attrs["strategy"]).is_uncompressed


def top_feasible(study: optuna.Study, k: int) -> list[FrozenTrial]:
    """The k fastest compressed trials within the bounds, by their search-time paired speedup."""
    trials = [
        trial
        for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if METRICS_ATTR in trial.user_attrs and trial.user_attrs[METRICS_ATTR]["feasible"] and is_compressed(trial)
    ]
    return sorted(trials, key=lambda trial: trial.user_attrs[METRICS_ATTR]["speedup"], reverse=True)[:k]


def fastest_feasible(study: optuna.Study) -> FrozenTrial | None:
    """The search's estimate of "best": the fastest compressed strategy within the bounds (before confirmation)."""
    top = top_feasible(study, 1)
    return top[0] if top else None
