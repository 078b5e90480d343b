"""What a measurement of one artifact on one device returns."""

from __future__ import annotations

from dataclasses import dataclass, field

from autocompress.evaluators.device.latency import LatencyStats


@dataclass(frozen=True)
class Measurement:
    """The metric (and any extra ones) on the runtime's own outputs, latency, size on disk, and the environment."""

    metric: float
    latency: LatencyStats
    size_bytes: int
    environment: dict[str, str] = field(default_factory=dict)
    extras: dict[str, float] = field(default_factory=dict)  # the task's reported-only metrics
