"""Apply a Strategy end to end: prune -> distill (teacher = original) -> export -> quantize per layer.

Pure with respect to its inputs: the same task, strategy and profile give the same artifact, which is
what lets `autocompress apply strategy.yaml` rebuild a search result without the study.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from autocompress.compress.distill import distill
from autocompress.compress.prune import parameter_count, prune
from autocompress.errors import ConfigError
from autocompress.hardware.locks import compute_slot
from autocompress.hardware.profile import HardwareProfile
from autocompress.spaces.strategy import Strategy
from autocompress.task import Task

log = logging.getLogger(__name__)

# One module per runtime, each with build_artifact(model, example_input, quantize_settings, calibration, workdir,
# dynamic_axes=...) -> path of the artifact. Imported on use, so a runtime's packages are needed only when it is used.
ARTIFACT_BUILDERS = {
    "onnxruntime": "autocompress.compress.quantize_onnxruntime",
    "openvino": "autocompress.compress.quantize_openvino",
    "tflite": "autocompress.compress.quantize_tflite",
}


def artifact_builder(runtime: str) -> Callable[..., Path]:
    return importlib.import_module(ARTIFACT_BUILDERS[runtime]).build_artifact


@dataclass(frozen=True)
class Artifact:
    """A built candidate on disk, in the device's runtime format."""

    path: Path
    format: str
    metadata: dict[str, int | float | str] = field(default_factory=dict)


def check_runtime(task: Task, profile: HardwareProfile) -> None:
    """Refuse, in one line, a device whose runtime the task cannot be exported to."""
    if task.runtimes is not None and profile.runtime not in task.runtimes:
        raise ConfigError(
            f"task '{task.name}' cannot run on {profile.runtime} (device '{profile.name}'): "
            f"it supports {', '.join(task.runtimes)}; pick a device with one of those runtimes"
        )


def build(task: Task, strategy: Strategy, profile: HardwareProfile, workdir: Path) -> Artifact:
    """Build the artifact a strategy describes for one device, under `workdir`; never while this machine times
    something (the machine's compute slot, hardware/locks.py)."""
    workdir.mkdir(parents=True, exist_ok=True)
    check_runtime(task, profile)
    with compute_slot():
        return _build(task, strategy, profile, workdir)


def _build(task: Task, strategy: Strategy, profile: HardwareProfile, workdir: Path) -> Artifact:
    torch.manual_seed(strategy.seed)
    student = prune(
        task.model, task.example_input, strategy.prune, round_to=profile.channel_round_to, hints=task.prune_hints
    )
    student = distill(student, task.model, task.data.train, strategy.distill, strategy.seed, task.distill_layers)
    build_artifact = artifact_builder(profile.runtime)
    artifact_path = build_artifact(
        student, task.example_input, strategy.quantize, task.data.calibration, workdir, dynamic_axes=task.dynamic_axes
    )
    return Artifact(
        path=artifact_path,
        format=profile.export_format,
        metadata={"parameters": parameter_count(student), "original_parameters": parameter_count(task.model)},
    )
