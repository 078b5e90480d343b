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
from autocompress.fingerprint import model_fingerprint, package_versions
from autocompress.hardware.profile import HardwareProfile
from autocompress.search.artifacts import artifact_files, baseline_artifact, trial_artifact
from autocompress.search.confirm import Confirmed, winner
from autocompress.search.results import BASELINE_ATTR, EXTRA_PREFIX, METRICS_ATTR, feasible_front, is_compressed
from autocompress.spaces.strategy import Pinned, Strategy
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
        "accuracy_drop": baseline["metric"] - metrics["metric"],  # the metric's own units, as every drop reported
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


def confirmed_entry(confirmed: Confirmed, baseline: dict[str, Any] | None = None) -> dict[str, Any]:
    """The confirmation's figures. For the winner, the headline is its speedup over the uncompressed model under
    the runtime's default settings, from fresh windows (`final`); the selection window's figure stays beside it."""
    entry: dict[str, Any] = {
        "selection_speedup": confirmed.speedup,
        "selection_speedup_ci": [confirmed.ci_low, confirmed.ci_high],
        "confirm_rounds": confirmed.rounds,
        "confirm_noisy": confirmed.noisy,
        "confirmed_latency_ms": confirmed.latency_ms,
        "confirmed_baseline_latency_ms": confirmed.baseline_latency_ms,
        "confirm_settled_share": confirmed.settled_share,
        "confirm_unsettled_speedup": confirmed.unsettled_speedup,
        "confirm_machine_slowdown": confirmed.machine_slowdown,
        "confirm_attempts": confirmed.attempts,
        "confirmed_speedup": confirmed.speedup,
        "confirmed_speedup_ci": [confirmed.ci_low, confirmed.ci_high],
        "speedup": confirmed.speedup,
    }
    if confirmed.metric is not None and baseline is not None:
        entry["validation"] = {"metric": confirmed.metric, "baseline": baseline["metric"],
                               "drop": baseline["metric"] - confirmed.metric}  # fmt: skip
        entry["accuracy"] = confirmed.metric  # the artifact as exported, scored again (validation)
    if confirmed.test_metric is not None and baseline is not None:
        entry["test"] = {"metric": confirmed.test_metric, "baseline": baseline.get("test_metric"),
                         "drop": confirmed.test_drop, "within_bound": confirmed.test_within_bound}  # fmt: skip
    final = confirmed.final
    if final is not None:
        entry |= final.report_fields() | {
            "confirmed_speedup": final.default.speedup,
            "confirmed_speedup_ci": [final.default.ci_low, final.default.ci_high],
            "confirmed_latency_ms": final.latency_ms,
            "confirmed_baseline_latency_ms": final.default_latency_ms,
        }
        if not final.default_is_fp32 and baseline is not None:  # what the user who changes nothing gets, scored
            entry["runtime_default_baseline"] = {"validation": baseline.get("default_metric"),
                                                 "test": baseline.get("default_test_metric")}  # fmt: skip
    return entry


def pin(task: Task, profile: HardwareProfile, build_threads: float | None = None) -> Pinned:
    """What the exported artifact was built from and with, for `apply` to check and reuse."""
    record = profile.record
    return Pinned(
        base_model=model_fingerprint(task.model),
        runtime=record.name,
        resolved=dict(record.resolved_quantize(profile)),
        build_threads=int(build_threads) if build_threads else None,
        threads=profile.threads,
        versions=package_versions(record.build_packages),
    )


def _copy_artifact(artifact: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for stale in target.glob("model.*"):
        stale.unlink()
    for path in artifact_files(artifact):  # an artifact may be several files (OpenVINO: .xml + .bin)
        shutil.copyfile(path, target / path.name)


ELASTIC_WEIGHTS = "elastic.pt"


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
    task = load_task()
    strategy = Strategy(**trial.user_attrs["strategy"])
    pinned = pin(task, profile, trial.user_attrs[METRICS_ATTR].get("build_threads"))
    strategy.model_copy(update={"device": profile.name, "pinned": pinned}).save(target / "strategy.yaml")
    if strategy.elastic is not None:  # what `apply` extracts the sub-network from, on a machine without the study
        from autocompress.compress.elastic_store import save_weights

        save_weights(task, strategy.elastic, target / ELASTIC_WEIGHTS)
    _copy_artifact(trial_artifact(study, trial, task, profile), target)
    _copy_artifact(baseline_artifact(study.study_name, task, profile), target / "baseline")
    baseline = study.user_attrs[BASELINE_ATTR]
    report = report_entry(study, trial, profile.name) | confirmed_entry(best, baseline)
    report |= {"metric": metric_name, "strategy": "strategy.yaml", "improvement": "faster",
               "refused_on_test": [item.trial for item in confirmed if item.beats_baseline
                                   and item.test_within_bound is False]}  # fmt: skip
    (target / "report.json").write_text(json.dumps(report, indent=2))
    by_trial = {item.trial: item for item in confirmed}
    front = [t for t in feasible_front(study) if is_compressed(t)]
    front.sort(key=lambda t: t.user_attrs[METRICS_ATTR]["speedup"], reverse=True)
    entries = [
        report_entry(study, t, profile.name)
        | (confirmed_entry(by_trial[t.number], baseline) if t.number in by_trial else {})
        for t in front
    ]
    (target / "pareto.json").write_text(json.dumps(entries, indent=2))
    return target


def _no_improvement(confirmed: list[Confirmed]) -> str:
    if not confirmed:
        return "no compressed candidate is within the bounds: nothing exported (run more trials or relax --max-drop)"
    failed_test = [item for item in confirmed if item.beats_baseline and item.test_within_bound is False]
    if failed_test:
        best = failed_test[0]
        return (f"every candidate faster than the uncompressed model drops past the bound on the held-out test split "
                f"(best: trial {best.trial} at {best.speedup:.2f}x, test drop {best.test_drop:.4f}): nothing "
                "exported; run more trials or relax --max-drop")  # fmt: skip
    best = confirmed[0]
    return (
        f"no candidate beats the uncompressed model beyond the measurement interval (best: trial {best.trial} at "
        f"{best.speedup:.2f}x [{best.ci_low:.2f}, {best.ci_high:.2f}]): nothing exported"
    )
