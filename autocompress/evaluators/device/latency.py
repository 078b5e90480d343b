"""Latency you can trust, shared by every runtime: warm-up, repeated runs until the median is pinned down.

The stopping rule uses a distribution-free confidence interval of the median (order statistics of a
binomial(n, 1/2)), so it needs no normality assumption and ignores a few slow outliers (a context switch,
a page fault) that would drag a mean.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class LatencyStats:
    """Milliseconds per call; `noisy` when the CI was still wider than the target at the time cap."""

    median_ms: float
    p90_ms: float
    mean_ms: float
    std_ms: float
    ci_low_ms: float
    ci_high_ms: float
    n: int
    noisy: bool

    @property
    def ci_half_width_ms(self) -> float:
        return (self.ci_high_ms - self.ci_low_ms) / 2

    def as_dict(self) -> dict[str, float | int | bool]:
        return asdict(self)


@dataclass(frozen=True)
class TimingPolicy:
    """How long to measure: stop when the 95% CI half-width is within `target_rel_ci` of the median."""

    warmup_runs: int = 20
    min_runs: int = 50
    min_time_s: float = 0.5  # a burst of contention on a shared machine must not be the whole sample
    max_runs: int = 5000
    chunk_runs: int = 25
    target_rel_ci: float = 0.02
    time_cap_s: float = 3.0


def median_ci(samples: np.ndarray, confidence_z: float = 1.96) -> tuple[float, float]:
    """95% CI of the median from order statistics: ranks n/2 -/+ z*sqrt(n)/2 of the sorted samples."""
    ordered = np.sort(samples)
    n = len(ordered)
    half = confidence_z * math.sqrt(n) / 2
    low = max(0, math.floor(n / 2 - half))
    high = min(n - 1, math.ceil(n / 2 + half))
    return float(ordered[low]), float(ordered[high])


def summarize(samples_s: np.ndarray, noisy: bool) -> LatencyStats:
    samples = np.asarray(samples_s, dtype=float) * 1e3
    low, high = median_ci(samples)
    return LatencyStats(
        median_ms=float(np.median(samples)),
        p90_ms=float(np.percentile(samples, 90)),
        mean_ms=float(np.mean(samples)),
        std_ms=float(np.std(samples, ddof=1)) if len(samples) > 1 else 0.0,
        ci_low_ms=low,
        ci_high_ms=high,
        n=len(samples),
        noisy=noisy,
    )


def _converged(samples: list[float], policy: TimingPolicy) -> bool:
    if len(samples) < policy.min_runs or sum(samples) < policy.min_time_s:
        return False
    low, high = median_ci(np.asarray(samples))
    median = float(np.median(samples))
    return (high - low) / 2 <= policy.target_rel_ci * median


def measure(run: Callable[[], object], policy: TimingPolicy | None = None) -> LatencyStats:
    """Time `run` (one inference) after warm-up; if the CI never tightens, measure once more and keep the better."""
    policy = policy or TimingPolicy()
    first = _measure_once(run, policy)
    if not first.noisy:
        return first
    second = _measure_once(run, policy)
    return min(first, second, key=lambda stats: stats.ci_half_width_ms / stats.median_ms)


def _measure_once(run: Callable[[], object], policy: TimingPolicy) -> LatencyStats:
    for _ in range(policy.warmup_runs):
        run()
    samples: list[float] = []
    deadline = time.perf_counter() + policy.time_cap_s
    clock = time.perf_counter
    while len(samples) < policy.max_runs:
        for _ in range(policy.chunk_runs):
            start = clock()
            run()
            samples.append(clock() - start)
        if _converged(samples, policy):
            return summarize(np.asarray(samples), noisy=False)
        if clock() > deadline:
            break
    return summarize(np.asarray(samples), noisy=not _converged(samples, policy))
