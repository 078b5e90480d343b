"""Export the best strategy of a study for one device: strategy.yaml, the artifact, report.json, pareto.json."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from autocompress.compress.pipeline import build
from autocompress.errors import AutocompressError
from autocompress.hardware.profile import HardwareProfile
from autocompress.home import study_dir
from autocompress.search.results import BASELINE_ATTR, EXTRA_PREFIX, METRICS_ATTR, fastest_feasible, feasible_front
from autocompress.spaces.strategy import Strategy
from autocompress.task import Task


def trial_dir(study_name: str, number: int) -> Path:
    return study_dir(study_name) / "trials" / f"{number:05d}"


def report_entry(study: optuna.Study, trial: FrozenTrial, device: str) -> dict[str, Any]:
    metrics = trial.user_attrs[METRICS_ATTR]
    baseline = study.user_attrs[BASELINE_ATTR]
    return {
        "device": device,
        "study": study.study_name,
        "trial_number": trial.number,
        "accuracy": metrics["metric"],
        "baseline_accuracy": baseline["metric"],
        "accuracy_drop": metrics["metric_drop"],
        "latency_ms": metrics["latency_ms"],
        "latency_ci_ms": [metrics["latency_ci_low_ms"], metrics["latency_ci_high_ms"]],
        "latency_p90_ms": metrics["latency_p90_ms"],
        "baseline_latency_ms": baseline["latency_ms"],
        "speedup": metrics["speedup"],
        "size_bytes": int(metrics["size_bytes"]),
        "baseline_size_bytes": baseline["size_bytes"],
        "compression_ratio": metrics["compression_ratio"],
        "extra_metrics": {
            name.removeprefix(EXTRA_PREFIX): value for name, value in metrics.items() if name.startswith(EXTRA_PREFIX)
        },
    }


def export_best(
    study: optuna.Study, profile: HardwareProfile, out: Path, load_task: Any, metric_name: str = "accuracy"
) -> Path:
    """Write `out/<device>/`; the artifact is copied from the study's trial folder, or rebuilt from the strategy."""
    best = fastest_feasible(study)
    if best is None:
        raise AutocompressError(
            f"study '{study.study_name}' has no feasible completed trial yet: run more trials or relax --max-drop"
        )
    target = out / profile.name
    target.mkdir(parents=True, exist_ok=True)
    strategy = Strategy(**best.user_attrs["strategy"])
    strategy.save(target / "strategy.yaml")
    for stale in target.glob("model.*"):
        stale.unlink()
    kept = sorted(trial_dir(study.study_name, best.number).glob("model.*"))
    if not kept:  # the trial's folder was cleaned up: rebuild (deterministic) from the strategy
        task: Task = load_task()
        build(task, strategy, profile, target / "build")
        kept = sorted((target / "build").glob("model.*"))
    for path in kept:  # an artifact may be several files (OpenVINO: .xml + .bin)
        shutil.copyfile(path, target / path.name)
    shutil.rmtree(target / "build", ignore_errors=True)
    report = report_entry(study, best, profile.name) | {"metric": metric_name, "strategy": "strategy.yaml"}
    (target / "report.json").write_text(json.dumps(report, indent=2))
    front = sorted(feasible_front(study), key=lambda trial: trial.user_attrs[METRICS_ATTR]["latency_ms"])
    (target / "pareto.json").write_text(json.dumps([report_entry(study, t, profile.name) for t in front], indent=2))
    return target
