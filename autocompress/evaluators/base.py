"""What a measurement of one artifact on one device returns."""

from __future__ import annotations

from dataclasses import dataclass, field

from autocompress.evaluators.device.latency import LatencyStats, SpeedupStats


@dataclass(frozen=True)
class Measurement:
    """The metric (and any extra ones) on the runtime's own outputs, latency, size on disk, and the environment.

    With a baseline, `speedup` is the paired ratio (baseline and candidate timed in alternating rounds in one
    window) and `baseline_latency` the baseline's latency in that same window; without one, both are None.
    """

    metric: float
    latency: LatencyStats
    size_bytes: int
    environment: dict[str, str] = field(default_factory=dict)
    extras: dict[str, float] = field(default_factory=dict)  # the task's reported-only metrics
    baseline_latency: LatencyStats | None = None
    speedup: SpeedupStats | None = None
    lock_wait_s: float = 0.0  # waiting for the device's timing lock (another worker was timing or building)
