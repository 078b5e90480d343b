"""Evaluators: accuracy, latency and size of an artifact, always measured in the device's own runtime.

The device-side code (`device/`) is shared by local and remote measurement; this module feeds it the
validation inputs, scores the returned outputs with the task's metric, and adds the size on disk.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from autocompress.errors import TrialError
from autocompress.evaluators.base import Measurement
from autocompress.evaluators.device.latency import TimingPolicy
from autocompress.evaluators.device.runner import run_measurement
from autocompress.hardware.profile import HardwareProfile
from autocompress.task import Task


def artifact_size(artifact: Path) -> int:
    """Bytes on disk, weights files included (OpenVINO keeps them in a .bin beside the .xml)."""
    size = artifact.stat().st_size
    weights = artifact.with_suffix(".bin")
    if artifact.suffix == ".xml" and weights.exists():
        size += weights.stat().st_size
    return size


def timing_sample(task: Task, profile: HardwareProfile) -> np.ndarray:
    repeats = [1] * task.example_input.dim()
    repeats[0] = profile.batch_size
    return task.example_input.repeat(*repeats).numpy()


def measure_artifact(
    artifact: Path, task: Task, profile: HardwareProfile, policy: TimingPolicy | None = None
) -> Measurement:
    """The metric on the validation split, latency at the profile's batch size, and the size on disk."""
    policy = policy or TimingPolicy()
    batches = [inputs.numpy() for inputs, _ in task.data.validation]
    labels = np.concatenate([labels.numpy() for _, labels in task.data.validation])
    sample = timing_sample(task, profile)
    try:
        if profile.is_remote:
            from autocompress.hardware.remote import run_remote  # imported on use: paramiko only for SSH devices

            result = run_remote(artifact, profile, batches, sample, policy)
        else:
            result = run_measurement(
                str(artifact), profile.runtime, profile.runtime_options, profile.threads, batches, sample, policy
            )
    except RuntimeError as error:  # the device code reports runtime problems as RuntimeError
        raise TrialError(f"{profile.runtime} on {profile.name}: {str(error).splitlines()[0][:300]}") from error
    outputs = np.concatenate(result.outputs)
    value = float(task.metric(outputs, labels))
    if not np.isfinite(value):
        raise TrialError(f"metric is {value} on the runtime's outputs (the artifact produces non-finite values)")
    extras = {name: float(metric(outputs, labels)) for name, metric in task.extra_metrics.items()}
    return Measurement(value, result.latency, artifact_size(artifact), result.environment, extras)


__all__ = ["Measurement", "TimingPolicy", "artifact_size", "measure_artifact"]
