"""The shared latency statistics: order-statistic CI of the median and the stopping rule."""

from __future__ import annotations

import time

import numpy as np

from autocompress.evaluators.device.latency import TimingPolicy, measure, median_ci, summarize


def test_median_ci_uses_order_statistics():
    samples = np.arange(1, 101, dtype=float)  # median 50.5
    low, high = median_ci(samples)
    # ranks 50 -/+ 1.96*sqrt(100)/2 = 50 -/+ 9.8 -> sorted[40] and sorted[60]
    assert (low, high) == (41.0, 61.0)


def test_outliers_do_not_move_the_median_statistics():
    rng = np.random.default_rng(0)
    clean = rng.normal(1e-3, 1e-5, 400)
    spiky = clean.copy()
    spiky[::50] = 0.05  # a few context switches
    a, b = summarize(clean, noisy=False), summarize(spiky, noisy=False)
    assert abs(a.median_ms - b.median_ms) / a.median_ms < 0.01
    assert b.mean_ms > 1.5 * a.mean_ms  # the mean would have been fooled
    assert b.p90_ms < 1.1 * a.p90_ms


def test_stable_work_converges_and_reports_a_tight_ci():
    def busy() -> None:
        end = time.perf_counter() + 2e-4
        while time.perf_counter() < end:
            pass

    stats = measure(busy, TimingPolicy(warmup_runs=5, min_runs=50, time_cap_s=2.0))
    assert stats.ci_low_ms <= stats.median_ms <= stats.ci_high_ms
    assert stats.n >= 50
    assert stats.n * stats.mean_ms / 1e3 >= 0.5  # at least min_time_s of samples, not just min_runs
    assert 0.19 < stats.median_ms < 2.0
    if not stats.noisy:
        assert stats.ci_half_width_ms <= 0.02 * stats.median_ms


def test_unconvergeable_work_is_flagged_noisy_at_the_cap():
    rng = np.random.default_rng(1)

    def erratic() -> None:
        time.sleep(float(rng.choice([0.0, 0.002])))

    stats = measure(erratic, TimingPolicy(warmup_runs=1, min_runs=20, chunk_runs=10, time_cap_s=0.2))
    assert stats.noisy
    assert stats.n >= 20
