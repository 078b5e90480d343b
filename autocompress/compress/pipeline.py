"""Apply a Strategy end to end: prune -> distill (teacher = original) -> export -> quantize per layer.

Pure with respect to its inputs: the same task, strategy and profile give the same artifact, which is
what lets `autocompress apply strategy.yaml` rebuild a search result without the study.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from autocompress.compress import quantize_onnxruntime
from autocompress.compress.distill import distill
from autocompress.compress.export import export_onnx
from autocompress.compress.prune import parameter_count, prune
from autocompress.hardware.profile import HardwareProfile
from autocompress.spaces.strategy import QuantizeSettings, Strategy
from autocompress.task import Batches, Task

log = logging.getLogger(__name__)

Quantizer = Callable[[Path, Path, QuantizeSettings, Batches], None]
QUANTIZERS: dict[str, Quantizer] = {"onnxruntime": quantize_onnxruntime.quantize}
ARTIFACT_NAMES = {"onnx": "model.onnx"}


@dataclass(frozen=True)
class Artifact:
    """A built candidate on disk, in the device's runtime format."""

    path: Path
    format: str
    metadata: dict[str, int | float | str] = field(default_factory=dict)


def build(task: Task, strategy: Strategy, profile: HardwareProfile, workdir: Path) -> Artifact:
    """Build the artifact a strategy describes for one device, under `workdir`."""
    workdir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(strategy.seed)
    student = prune(task.model, task.example_input, strategy.prune, round_to=profile.channel_round_to)
    student = distill(student, task.model, task.data.train, strategy.distill, strategy.seed)
    float_path = workdir / "float.onnx"
    export_onnx(student, task.example_input, float_path)
    artifact_path = workdir / ARTIFACT_NAMES[profile.export_format]
    QUANTIZERS[profile.runtime](float_path, artifact_path, strategy.quantize, task.data.calibration)
    float_path.unlink()
    return Artifact(
        path=artifact_path,
        format=profile.export_format,
        metadata={"parameters": parameter_count(student), "original_parameters": parameter_count(task.model)},
    )
