"""The evaluator interface every runtime implements, and what a measurement returns."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from autocompress.evaluators.latency import LatencyStats
from autocompress.hardware.profile import HardwareProfile
from autocompress.task import Batches, Metric


class RuntimeSession(Protocol):
    """An artifact loaded in its runtime: run a batch, get the model's outputs as numpy."""

    def run(self, inputs: np.ndarray) -> np.ndarray: ...


class Evaluator(Protocol):
    def load(self, artifact: Path, profile: HardwareProfile) -> RuntimeSession: ...


@dataclass(frozen=True)
class Measurement:
    """What one artifact scored on one device: the metric on its own outputs, latency and size on disk."""

    metric: float
    latency: LatencyStats
    size_bytes: int


def evaluate_metric(session: RuntimeSession, batches: Batches, metric: Metric) -> float:
    """Run the validation split through the runtime (never through PyTorch) and score its outputs."""
    outputs, labels = [], []
    for inputs, batch_labels in batches:
        outputs.append(session.run(inputs.numpy()))
        labels.append(batch_labels.numpy())
    value = float(metric(np.concatenate(outputs), np.concatenate(labels)))
    if not np.isfinite(value):
        from autocompress.errors import TrialError

        raise TrialError(f"metric is {value} on the runtime's outputs (the artifact produces non-finite values)")
    return value
