"""Export the best strategy of a study for one device: strategy.yaml, the artifact, the baseline, the reports.

The winner is chosen on confirmed speedups (search/confirm.py), never on the search-time estimate alone, and it
must beat the uncompressed model beyond the measurement interval: otherwise nothing is exported as "best".
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from autocompress.errors import AutocompressError
from autocompress.hardware.profile import HardwareProfile
from autocompress.search.artifacts import artifact_files, baseline_artifact, trial_artifact
from autocompress.search.confirm import Confirmed, winner
from autocompress.search.results import BASELINE_ATTR, EXTRA_PREFIX, METRICS_ATTR, feasible_front, is_compressed
from autocompress.spaces.strategy import Strategy
from autocompress.task import Task


class NoImprovement(AutocompressError):
    """No candidate beats the uncompressed model beyond its interval: not a failure, nothing to export."""


def report_entry(study: optuna.Study, trial: FrozenTrial, device: str) -> dict[str, Any]:
    """A trial as the search measured it (the search-time estimate of its speedup)."""
    metrics = trial.user_attrs[METRICS_ATTR]
    baseline = study.user_attrs[BASELINE_ATTR]
    return {
        "device": device,
        "study": study.study_name,
        "trial_number": trial.number,
        "accuracy": metrics["metric"],
        "baseline_accuracy": baseline["metric"],
        "accuracy_drop": metrics["metric_drop"],
        "search_speedup": metrics["speedup"],
        "search_speedup_ci": [metrics["speedup_ci_low"], metrics["speedup_ci_high"]],
        "latency_ms": metrics["latency_ms"],
        "latency_ci_ms": [metrics["latency_ci_low_ms"], metrics["latency_ci_high_ms"]],
        "latency_p90_ms": metrics["latency_p90_ms"],
        "baseline_latency_ms": metrics["baseline_latency_ms"],
        "size_bytes": int(metrics["size_bytes"]),
        "baseline_size_bytes": baseline["size_bytes"],
        "compression_ratio": metrics["compression_ratio"],
        "extra_metrics": {
            name.removeprefix(EXTRA_PREFIX): value for name, value in metrics.items() if name.startswith(EXTRA_PREFIX)
        },
    }


def confirmed_entry(confirmed: Confirmed) -> dict[str, Any]:
    """The confirmation's figures: what the report's headline speedup is."""
    return {
        "confirmed_speedup": confirmed.speedup,
        "confirmed_speedup_ci": [confirmed.ci_low, confirmed.ci_high],
        "confirm_rounds": confirmed.rounds,
        "confirm_noisy": confirmed.noisy,
        "confirmed_latency_ms": confirmed.latency_ms,
        "confirmed_baseline_latency_ms": confirmed.baseline_latency_ms,
        "confirm_settled_share": confirmed.settled_share,
        "confirm_unsettled_speedup": confirmed.unsettled_speedup,
        "confirm_machine_slowdown": confirmed.machine_slowdown,
        "confirm_attempts": confirmed.attempts,
        "speedup": confirmed.speedup,
    }


def _copy_artifact(artifact: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for stale in target.glob("model.*"):
        stale.unlink()
    for path in artifact_files(artifact):  # an artifact may be several files (OpenVINO: .xml + .bin)
        shutil.copyfile(path, target / path.name)


def export_best(
    study: optuna.Study,
    profile: HardwareProfile,
    out: Path,
    load_task: Callable[[], Task],
    confirmed: list[Confirmed],
    metric_name: str = "accuracy",
) -> Path:
    """Write `out/<device>/` for the confirmed winner: strategy.yaml (with the device), the artifact, the baseline
    artifact under baseline/ (so anyone can re-time the pair), report.json and pareto.json."""
    best = winner(confirmed)
    if best is None:
        raise NoImprovement(_no_improvement(confirmed))
    trial = study.trials[best.trial]
    target = out / profile.name
    target.mkdir(parents=True, exist_ok=True)
    strategy = Strategy(**trial.user_attrs["strategy"])
    strategy.model_copy(update={"device": profile.name}).save(target / "strategy.yaml")
    task = load_task()
    _copy_artifact(trial_artifact(study, trial, task, profile), target)
    _copy_artifact(baseline_artifact(study.study_name, task, profile), target / "baseline")
    report = report_entry(study, trial, profile.name) | confirmed_entry(best)
    report |= {"metric": metric_name, "strategy": "strategy.yaml", "improvement": "faster"}
    (target / "report.json").write_text(json.dumps(report, indent=2))
    by_trial = {item.trial: item for item in confirmed}
    front = [t for t in feasible_front(study) if is_compressed(t)]
    front.sort(key=lambda t: t.user_attrs[METRICS_ATTR]["speedup"], reverse=True)
    entries = [
        report_entry(study, t, profile.name) | (confirmed_entry(by_trial[t.number]) if t.number in by_trial else {})
        for t in front
    ]
    (target / "pareto.json").write_text(json.dumps(entries, indent=2))
    return target


def _no_improvement(confirmed: list[Confirmed]) -> str:
    if not confirmed:
        return "no compressed candidate is within the bounds: nothing exported (run more trials or relax --max-drop)"
    best = confirmed[0]
    return (
        f"no candidate beats the uncompressed model beyond the measurement interval (best: trial {best.trial} at "
        f"{best.speedup:.2f}x [{best.ci_low:.2f}, {best.ci_high:.2f}]): nothing exported"
    )
