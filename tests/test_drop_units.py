"""A drop and a bound are compared in one unit. With `--drop-mode relative`, `metric_drop` (the constraint) is a
fraction of the baseline metric, while the sensitivity table and every drop reported beside a metric are in the
metric's own units; these tests fail where the two were mixed. (The polish stage's case is in test_polish.py.)"""

from __future__ import annotations

import pytest

from autocompress.config import SearchSettings
from autocompress.search.confirm import held_out_verdict
from autocompress.search.results import estimate_metrics, metric_drop

RELATIVE = SearchSettings(drop_mode="relative", max_drop=0.02)
ABSOLUTE = SearchSettings(drop_mode="absolute", max_drop=0.01)


@pytest.mark.parametrize("settings", [RELATIVE, ABSOLUTE])
def test_an_exact_estimate_has_no_drop_error_in_either_mode(settings):
    """Baseline 0.5; the table estimated a drop of 0.01 (metric units) and the trial measured 0.49."""
    measured = {"metric_drop": metric_drop(0.5, 0.49, settings), "speedup": 2.0}
    estimated = estimate_metrics(measured, drop=0.01, speedup=2.0, baseline_metric=0.5, settings=settings)
    assert estimated["estimate_drop_error"] == pytest.approx(0.0, abs=1e-12)
    assert estimated["estimate_drop"] == pytest.approx(measured["metric_drop"])
    assert estimated["estimate_speedup_error"] == pytest.approx(0.0)


def test_a_relative_estimate_error_is_a_fraction_of_the_baseline():
    measured = {"metric_drop": metric_drop(0.5, 0.48, RELATIVE), "speedup": 3.0}  # 4% of the baseline
    estimated = estimate_metrics(measured, drop=0.01, speedup=2.0, baseline_metric=0.5, settings=RELATIVE)
    assert estimated["estimate_drop_error"] == pytest.approx(0.02)  # 4% measured - 2% estimated
    assert estimated["estimate_speedup_error"] == pytest.approx(0.5)


def test_the_test_drop_is_reported_in_metric_units_and_judged_in_the_bound_units():
    """Baseline 0.5 on test, candidate 0.492: 0.008 below it, 1.6% of it; a 2% relative bound holds."""
    drop, within = held_out_verdict(0.5, 0.492, RELATIVE)
    assert drop == pytest.approx(0.008) and within
    drop, within = held_out_verdict(0.5, 0.485, RELATIVE)  # 3%: past the bound
    assert drop == pytest.approx(0.015) and not within
    drop, within = held_out_verdict(0.5, 0.492, ABSOLUTE)
    assert drop == pytest.approx(0.008) and within


def test_the_summary_says_both_drops_in_the_same_units():
    """Validation and test drops stand side by side in the summary line: both in the metric's own units."""
    import optuna

    from autocompress.compress.prune import PruneSettings
    from autocompress.search.confirm import Confirmed
    from autocompress.search.summary import summary_lines
    from autocompress.spaces.strategy import Strategy

    study = optuna.create_study(directions=["maximize", "minimize"])
    metrics = {"metric": 0.49, "metric_drop": metric_drop(0.5, 0.49, RELATIVE), "speedup": 2.0, "feasible": 1.0,
               "size_mb": 1.0, "speedup_ci_low": 1.9, "speedup_ci_high": 2.1}  # fmt: skip
    strategy = Strategy(prune=PruneSettings(ratios={"conv": 0.5}))
    study.add_trial(optuna.trial.create_trial(values=[0.49, 0.5], user_attrs={"metrics": metrics,
                                              "strategy": strategy.model_dump()}))  # fmt: skip
    study.set_user_attr("baseline", {"metric": 0.5, "test_metric": 0.5})
    drop, within = held_out_verdict(0.5, 0.492, RELATIVE)
    confirmed = Confirmed(trial=0, speedup=2.0, ci_low=1.9, ci_high=2.1, rounds=10, noisy=False, latency_ms=1.0,
                          baseline_latency_ms=2.0, search_speedup=2.0, search_speedup_ci=(1.9, 2.1), metric=0.49,
                          test_metric=0.492, test_drop=drop, test_within_bound=within)  # fmt: skip
    (first, *_) = summary_lines(study, [confirmed], "cpu", "accuracy")
    assert "validation 0.4900 (drop +0.0100), test 0.4920 (drop +0.0080, within the bound)" in first, first
