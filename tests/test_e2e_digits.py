"""The whole loop on the built-in example, as a user runs it: search, resume, export, apply, MLflow."""

from __future__ import annotations

import json

import pytest
from optuna.trial import TrialState

from autocompress.spaces.strategy import Strategy
from tests.helpers import artifact_names, digits_config, invoke_cli, load_study, mlflow_runs

pytestmark = pytest.mark.e2e
STUDY = "digits-e2e"
REPORT_FIELDS = {
    "device", "accuracy", "baseline_accuracy", "latency_ms", "latency_ci_ms", "baseline_latency_ms",
    "search_speedup", "search_speedup_ci", "size_bytes", "baseline_size_bytes", "trial_number", "study",
}  # fmt: skip
CONFIRMED_FIELDS = {"confirmed_speedup", "confirmed_speedup_ci", "confirm_rounds", "speedup", "improvement"}


# The built-in example through a config, as a user narrows it: distillation up to 50 steps, not 400 (test time)
DISTILL_STEPS = [0, 25, 50]


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> str:
    return str(digits_config(tmp_path_factory.mktemp("config"), "cpu", DISTILL_STEPS))


@pytest.fixture(scope="module")
def searched(tmp_path_factory, digits_task, config):
    out = tmp_path_factory.mktemp("best")
    result = invoke_cli("search", "--no-sensitivity", config, "--trials", "3", "--study", STUDY, "--out", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    return out


def test_search_exports_strategy_artifact_and_reports(searched):
    device_dir = searched / "cpu"
    report = json.loads((device_dir / "report.json").read_text())
    assert set(report) >= REPORT_FIELDS | CONFIRMED_FIELDS
    assert report["study"] == STUDY and report["device"] == "cpu"
    assert report["accuracy"] >= report["baseline_accuracy"] - 0.01
    assert 0 < report["latency_ci_ms"][0] < report["latency_ci_ms"][1] < report["baseline_latency_ms"]
    # the headline is the confirmed, paired figure, and it beats the uncompressed model beyond its interval
    assert report["confirmed_speedup_ci"][0] > 1.0 and report["confirmed_speedup"] == report["speedup"]
    assert report["confirm_rounds"] >= 30 and report["improvement"] == "faster"
    # both splits, named: validation decided, the held-out test split is what the search never saw
    assert report["validation"]["metric"] == report["accuracy"] and report["test"]["within_bound"] is True
    assert report["test"]["drop"] == pytest.approx(report["test"]["baseline"] - report["test"]["metric"])
    assert report["speedup_baseline"] == "runtime default (fp32 here)" and report["threads"] == 2
    assert report["windows"] == 1 or report["noisy"]  # the test config's confirm_windows: 1 (a second if disturbed)
    assert (device_dir / "model.onnx").stat().st_size == report["size_bytes"]
    assert (device_dir / "baseline" / "model.onnx").stat().st_size == report["baseline_size_bytes"]
    pareto = json.loads((device_dir / "pareto.json").read_text())
    assert report["trial_number"] in [entry["trial_number"] for entry in pareto]
    assert all(set(entry) >= REPORT_FIELDS for entry in pareto)
    strategy = Strategy.load(device_dir / "strategy.yaml")
    assert len(strategy.quantize.precisions) == 16 and len(strategy.prune.ratios) == 9
    assert strategy.device == "cpu" and not strategy.is_uncompressed


def test_study_starts_with_the_enqueued_baselines(searched):
    study = load_study(STUDY)
    first, second, third = study.trials[:3]
    assert set(first.user_attrs["strategy"]["quantize"]["precisions"].values()) == {"fp32"}
    assert set(second.user_attrs["strategy"]["quantize"]["precisions"].values()) == {"int8"}
    assert first.user_attrs["metrics"]["metric"] == pytest.approx(study.user_attrs["baseline"]["metric"])
    assert all(t.state == TrialState.COMPLETE for t in study.trials[:3])
    # the pruned warm start is re-fitted, not distilled; the config's space reached the search
    pruned = third.user_attrs["strategy"]
    assert max(pruned["prune"]["ratios"].values()) == 0.5 and pruned["prune"]["reconstruct"]
    assert pruned["distill"]["steps"] == 0
    assert study.user_attrs["space_ranges"]["distill_steps"] == DISTILL_STEPS


def test_mlflow_holds_a_parent_and_a_nested_run_per_trial(searched):
    parents, children = mlflow_runs(STUDY)
    assert len(parents) >= 1 and len(children) >= 3
    parent = parents[-1]  # the first invocation (runs are listed newest first)
    assert parent.info.status == "FINISHED"
    assert {"baseline_metric", "baseline_latency_ms", "confirmed_speedup"} <= set(parent.data.metrics)
    assert "confirmation.json" in artifact_names(parent.info.run_id)
    nested = [run for run in children if run.data.tags["mlflow.parentRunId"] == parent.info.run_id]
    assert len(nested) == 3
    for run in nested:
        assert run.info.status == "FINISHED"
        assert {"accuracy", "metric_drop", "latency_ms", "latency_p90_ms", "latency_ci_low_ms", "speedup",
                "speedup_ci_low", "speedup_ci_high", "baseline_latency_ms", "relative_latency", "size_bytes",
                "compression_ratio"} <= set(run.data.metrics)  # fmt: skip
        metrics = run.data.metrics
        assert metrics["relative_latency"] == pytest.approx(1 / metrics["speedup"])
        stages = [metrics[f"time_{stage}"] for stage in ("prune_s", "distill_s", "export_s", "quantize_s", "measure_s")]
        assert len(stages) == 5 and metrics["time_measure_s"] > 0 and metrics["time_export_s"] > 0  # where it went
        assert {"prune.mean_ratio", "quantize.int8_layers", "distill.steps"} <= set(run.data.params)
        assert "strategy.yaml" in artifact_names(run.info.run_id)
    assert any("model.onnx" in artifact_names(run.info.run_id) for run in nested)  # the front keeps artifacts


def test_apply_rebuilds_the_reported_accuracy(searched, tmp_path):
    report = json.loads((searched / "cpu" / "report.json").read_text())
    result = invoke_cli("apply", str(searched / "cpu" / "strategy.yaml"), "--example", "digits", "--windows", "1",
                        "--out", str(tmp_path / "rebuilt"))  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    rebuilt = json.loads((tmp_path / "rebuilt" / "report.json").read_text())
    assert rebuilt["accuracy"] == report["accuracy"] and rebuilt["test"]["metric"] == report["test"]["metric"]
    assert not [line for line in rebuilt["differences"] if not line.startswith("speedup")]  # pinned: the same artifact
    assert rebuilt["size_bytes"] == report["size_bytes"]
    assert rebuilt["device"] == "cpu"  # from the strategy file: no --device needed
    assert rebuilt["speedup_ci"][0] > 1.0  # the rebuilt artifact is faster than the uncompressed one it is timed with


def test_resume_adds_trials_and_export_reads_the_stored_study(searched, config, tmp_path):
    result = invoke_cli("search", "--no-sensitivity", config, "--trials", "1", "--study", STUDY, "--confirm", "0")
    assert result.returncode == 0, result.stderr[-2000:]
    study = load_study(STUDY)
    assert [t.number for t in study.trials if t.state.is_finished()] == [0, 1, 2, 3]
    # what may be left queued: a probe the trial just finished promoted to the full distillation budget
    assert all("promoted_from" in t.user_attrs for t in study.trials if not t.state.is_finished())
    parents, _ = mlflow_runs(STUDY)
    assert len(parents) == 2
    exported = invoke_cli("export", config, "--study", STUDY, "--out", str(tmp_path), "--confirm-windows", "2")
    assert exported.returncode == 0, exported.stderr[-2000:]
    report = json.loads((tmp_path / "cpu" / "report.json").read_text())
    confirmed = load_study(STUDY).user_attrs["confirmation"]["candidates"]  # stored by this export's confirmation
    (chosen,) = [candidate for candidate in confirmed if candidate["final"]]  # the winner, timed again
    assert report["trial_number"] == chosen["trial"] and report["selection_speedup"] == chosen["speedup"]
    # --confirm-windows reached both: two windows, and up to two more while fewer than two were undisturbed
    assert 1 <= report["confirm_attempts"] <= 2 and 2 <= report["windows"] + report["windows_left_out"] <= 4
    assert report["confirmed_speedup"] == chosen["final"]["default"]["speedup"]
    assert chosen["final"]["gap_s"] == 1.0  # the config's confirm_gap_seconds, not the 10 s default
