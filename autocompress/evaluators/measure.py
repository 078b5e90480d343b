"""Measure artifacts on a device: the task's metric on the runtime's own outputs, paired latency, size on disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from autocompress.errors import NonFiniteMetric
from autocompress.evaluators.base import Measurement
from autocompress.evaluators.device.latency import Interleaved, TimingPolicy
from autocompress.evaluators.device.runner import DeviceRequest, DeviceResult
from autocompress.hardware.profile import HardwareProfile
from autocompress.hardware.runners import runner_for
from autocompress.search.failures import device_failure
from autocompress.task import Batches, Task

# During a search: every trial paired with the baseline, 2% interval or 4 s (twice, if still wide).
SEARCH_POLICY = TimingPolicy()
# Before export: the top candidates and the baseline together, a tighter interval and more rounds.
CONFIRM_POLICY = TimingPolicy(min_rounds=30, target_rel_ci=0.015, time_cap_s=10.0)


def artifact_size(artifact: Path, profile: HardwareProfile) -> int:
    """Bytes on disk of every file of the artifact (OpenVINO keeps its weights in a .bin beside the .xml)."""
    return sum(path.stat().st_size for path in profile.record.artifact_files(artifact))


def timing_sample(task: Task, profile: HardwareProfile) -> np.ndarray:
    repeats = [1] * task.example_input.dim()
    repeats[0] = profile.batch_size
    return task.example_input.repeat(*repeats).numpy()


def split_batches(task: Task, split: str) -> Batches:
    """The task's loader for `split` (validation or test)."""
    loader = getattr(task.data, split)
    if loader is None:
        raise ValueError(f"the task has no {split} split")
    return loader


def loading_options(
    profile: HardwareProfile,
    artifacts: list[Path],
    options: list[dict | None] | None,
    shapes: list[tuple[int, ...]],
    timed: tuple[int, ...],
) -> list[dict | None] | None:
    """Per artifact, the runtime options it is loaded with: the runtime's own per-artifact settings where its record
    has them (TensorRT's engine cache, int8 flag and shape profile), over the profile's or the given options."""
    made = profile.record.artifact_options
    if made is None:
        return options
    given = options or [None] * len(artifacts)
    return [made(profile.runtime_options if own is None else own, Path(path), shapes, timed)
            for path, own in zip(artifacts, given, strict=True)]  # fmt: skip


def _run(
    profile: HardwareProfile,
    artifacts: list[Path],
    score: list[int],
    task: Task,
    policy: TimingPolicy,
    split: str = "validation",
    options: list[dict | None] | None = None,
    timed: bool = True,
    fresh: bool = False,
) -> DeviceResult:
    session = str(profile.record.session_file)
    batches = [inputs.numpy() for inputs, _ in split_batches(task, split)] if score else []
    sample = timing_sample(task, profile)
    options = loading_options(profile, artifacts, options, [batch.shape for batch in batches], sample.shape)
    request = DeviceRequest([str(path) for path in artifacts], session, profile.runtime_options, profile.threads,
                            policy, score, options, timed, fresh)  # fmt: skip
    try:
        return runner_for(profile).run(request, batches, sample)
    except RuntimeError as error:  # the device code reports what it raised as RuntimeError("Type: message")
        first = str(error).splitlines()[0][:300] if str(error) else type(error).__name__
        raise device_failure(f"{profile.record.name} on {profile.name}", first) from error


def _labels(task: Task, split: str) -> np.ndarray:
    return np.concatenate([labels.numpy() for _, labels in split_batches(task, split)])


def _score(task: Task, outputs: list[np.ndarray], labels: np.ndarray) -> float:
    value = float(task.metric(np.concatenate(outputs), labels))
    if not np.isfinite(value):
        raise NonFiniteMetric(f"metric is {value} on the runtime's outputs (the artifact produces non-finite values)")
    return value


def score_artifacts(
    artifacts: list[Path], task: Task, profile: HardwareProfile, split: str, options: list[dict | None] | None = None
) -> list[float]:
    """The metric of each artifact on one split, run in the device's runtime (no timing). `options` runs an
    artifact under other runtime options (e.g. the runtime's defaults)."""
    result = _run(profile, artifacts, list(range(len(artifacts))), task, SEARCH_POLICY, split, options, timed=False)
    labels = _labels(task, split)
    return [_score(task, result.outputs[index], labels) for index in range(len(artifacts))]


def measure_artifact(
    artifact: Path,
    task: Task,
    profile: HardwareProfile,
    baseline: Path | None = None,
    policy: TimingPolicy | None = None,
) -> Measurement:
    """The metric on the validation split, latency at the profile's batch size, and the size on disk; with a
    `baseline` artifact, the speedup over it, timed in alternating rounds in the same window."""
    artifacts = [baseline, artifact] if baseline is not None else [artifact]
    result = _run(profile, artifacts, [len(artifacts) - 1], task, policy or SEARCH_POLICY)
    labels = _labels(task, "validation")
    value = _score(task, result.outputs[len(artifacts) - 1], labels)
    outputs = np.concatenate(result.outputs[len(artifacts) - 1])
    extras = {name: float(metric(outputs, labels)) for name, metric in task.extra_metrics.items()}
    timing = result.timing
    assert timing is not None
    return Measurement(
        value,
        timing.latencies[-1],
        artifact_size(artifact, profile),
        result.environment,
        extras,
        baseline_latency=timing.latencies[0] if baseline is not None else None,
        speedup=timing.speedups[-1],
        lock_wait_s=result.lock_wait_s,
    )


def time_together(
    baseline: Path,
    candidates: list[Path],
    task: Task,
    profile: HardwareProfile,
    policy: TimingPolicy | None = None,
    options: list[dict | None] | None = None,
    fresh: bool = False,
) -> Interleaved:
    """Latency only: the baseline and every candidate in the same interleaved rounds (confirmation); `options`
    per artifact, e.g. the baseline once more under the runtime's default settings; `fresh`: the baseline's
    session loaded anew, not the one kept on the device."""
    timing = _run(profile, [baseline, *candidates], [], task, policy or CONFIRM_POLICY, options=options,
                  fresh=fresh).timing  # fmt: skip
    assert timing is not None
    return timing


__all__ = ["CONFIRM_POLICY", "SEARCH_POLICY", "Measurement", "artifact_size", "measure_artifact", "score_artifacts",
           "time_together"]
