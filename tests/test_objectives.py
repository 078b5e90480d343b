"""What the search ranks trials by: the metric up to the baseline's, and the paired relative latency."""

from __future__ import annotations

import optuna

from autocompress.config import SearchSettings
from autocompress.evaluators.base import Measurement
from autocompress.evaluators.device.latency import LatencyStats, SpeedupStats
from autocompress.search.results import objective_values, trial_metrics

BASELINE = {"metric": 0.98, "size_bytes": 1000}


def _metrics(metric: float, speedup: float) -> dict[str, float]:
    latency = LatencyStats(1.0, 1.1, 1.0, 0.01, 0.99, 1.01, 100, False)
    paired = SpeedupStats(speedup, speedup * 0.99, speedup * 1.01, 40, False)
    measured = Measurement(metric, latency, 500, baseline_latency=latency, speedup=paired)
    return trial_metrics(measured, BASELINE, SearchSettings())


def test_a_lucky_score_above_the_baseline_does_not_buy_a_place_on_the_front() -> None:
    settings = SearchSettings()
    study = optuna.create_study(directions=["maximize", "minimize"])
    lucky_but_slow, kept_and_fast, worse = _metrics(0.99, 2.0), _metrics(0.98, 3.0), _metrics(0.97, 4.0)
    for metrics in (lucky_but_slow, kept_and_fast, worse):
        study.add_trial(optuna.trial.create_trial(values=list(objective_values(metrics, settings))))
    assert lucky_but_slow["metric"] == 0.99 and lucky_but_slow["metric_drop"] < 0  # logged as measured
    assert objective_values(lucky_but_slow, settings)[0] == BASELINE["metric"]
    assert sorted(trial.number for trial in study.best_trials) == [1, 2]  # trial 0 is dominated by trial 1
