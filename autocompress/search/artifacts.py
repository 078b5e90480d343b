"""Where a study keeps its artifacts on disk: the baseline, and the trials worth keeping (front and top candidates).

Every artifact can be rebuilt from its strategy (builds are deterministic), so a folder that was cleaned up,
or a study resumed on another machine, costs a rebuild, never a wrong answer.
"""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.trial import FrozenTrial

from autocompress.compress.pipeline import build
from autocompress.hardware.profile import HardwareProfile
from autocompress.home import study_dir
from autocompress.spaces.strategy import Strategy
from autocompress.task import Task

MAIN_SUFFIXES = (".onnx", ".xml", ".tflite")  # an artifact's main file (OpenVINO's weights .bin sits beside it)


def trial_dir(study_name: str, number: int) -> Path:
    return study_dir(study_name) / "trials" / f"{number:05d}"


def baseline_dir(study_name: str) -> Path:
    return study_dir(study_name) / "baseline"


def main_file(folder: Path) -> Path | None:
    """The artifact's main file in a build folder, or None if the folder holds no complete artifact."""
    found = [path for path in sorted(folder.glob("model.*")) if path.suffix in MAIN_SUFFIXES]
    return found[0] if found else None


def artifact_files(artifact: Path) -> list[Path]:
    """The artifact and its siblings of the same stem (OpenVINO's model.bin, ONNX external data)."""
    return sorted({artifact, *artifact.parent.glob(f"{artifact.stem}.*")})


def _ensure(folder: Path, strategy: Strategy, task: Task, profile: HardwareProfile) -> Path:
    existing = main_file(folder)
    if existing is not None:
        return existing
    return build(task, strategy, profile, folder).path


def baseline_artifact(study_name: str, task: Task, profile: HardwareProfile) -> Path:
    """The uncompressed model, exported like every candidate; kept for the whole study (candidates are timed
    against it), rebuilt if it is missing."""
    return _ensure(baseline_dir(study_name), Strategy(), task, profile)


def trial_artifact(study: optuna.Study, trial: FrozenTrial, task: Task, profile: HardwareProfile) -> Path:
    """A completed trial's artifact: kept from the search, or rebuilt from its strategy."""
    strategy = Strategy(**trial.user_attrs["strategy"])
    return _ensure(trial_dir(study.study_name, trial.number), strategy, task, profile)
