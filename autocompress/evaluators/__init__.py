"""Evaluators: one module per runtime behind one small interface; latency statistics shared by all."""

from __future__ import annotations

from pathlib import Path


from autocompress.evaluators.base import Evaluator, Measurement, evaluate_metric
from autocompress.evaluators.latency import TimingPolicy, measure
from autocompress.evaluators.onnxruntime import OnnxRuntimeEvaluator
from autocompress.hardware.profile import HardwareProfile
from autocompress.task import Task

EVALUATORS: dict[str, Evaluator] = {"onnxruntime": OnnxRuntimeEvaluator()}


def measure_artifact(
    artifact: Path, task: Task, profile: HardwareProfile, policy: TimingPolicy | None = None
) -> Measurement:
    """The metric on the validation split, latency at the profile's batch size, and the size on disk."""
    session = EVALUATORS[profile.runtime].load(artifact, profile)
    value = evaluate_metric(session, task.data.validation, task.metric)
    repeats = [1] * task.example_input.dim()
    repeats[0] = profile.batch_size
    sample = task.example_input.repeat(*repeats).numpy()
    latency = measure(lambda: session.run(sample), policy)
    return Measurement(metric=value, latency=latency, size_bytes=artifact.stat().st_size)


__all__ = ["EVALUATORS", "Measurement", "measure_artifact"]
