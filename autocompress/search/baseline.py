"""The baseline: the uncompressed model, exported exactly like a candidate, measured once per study and kept on
disk, since its latency is re-timed beside every candidate; and the study's objective names."""

from __future__ import annotations

import warnings
from pathlib import Path

import optuna

from autocompress.evaluators.measure import measure_artifact
from autocompress.hardware.profile import HardwareProfile
from autocompress.search.artifacts import baseline_artifact
from autocompress.search.results import BASELINE_ATTR, measurement_record
from autocompress.task import Task


def measure_baseline(task: Task, profile: HardwareProfile, study: optuna.Study) -> tuple[dict, Path]:
    """The uncompressed model, exported exactly like a candidate and kept on disk for the whole study: its metric
    and size are measured once and stored; its latency is re-timed beside every candidate."""
    path = baseline_artifact(study.study_name, task, profile)
    if BASELINE_ATTR not in study.user_attrs:
        study.set_user_attr(BASELINE_ATTR, measurement_record(measure_artifact(path, task, profile)))
    return study.user_attrs[BASELINE_ATTR], path


def name_objectives(study: optuna.Study, names: list[str]) -> None:
    """Optuna's own objective names, so optuna-dashboard labels its axes (an API still marked experimental)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(names)
