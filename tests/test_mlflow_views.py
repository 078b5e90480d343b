"""What a person sees in MLflow after a search: an experiment of kind model development with a description,
trial runs named after what they tried, per-layer tables that match strategy.yaml, the best trial tagged, and
the exported model registered once per strategy, loadable and measuring what the report says."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
import yaml
from mlflow.tracking import MlflowClient

from autocompress.evaluators.measure import measure_artifact
from autocompress.hardware import get_profile
from autocompress.search.registry import register_export
from autocompress.search.run_views import run_name
from autocompress.spaces.strategy import Strategy
from tests.helpers import mlflow_runs

STUDY = "tiny-mlflow"  # the session's search on an MLflow server (tests/conftest.py)


def test_a_run_name_says_what_the_trial_tried():
    strategy = Strategy.model_validate({
        "prune": {"ratios": {"a": 0.5, "b": 0.25}},
        "quantize": {"precisions": {"a": "int8", "b": "int8", "c": "fp32"}},
        "distill": {"steps": 150},
    })  # fmt: skip
    assert run_name(13, strategy) == "t13 prune 0.38 int8 2/3 kd150"
    assert run_name(0, Strategy()) == "t0 no compression"


@pytest.fixture(scope="module")
def searched(tiny_search_on_a_server) -> Path:
    """The session's tiny search on an MLflow server (tests/conftest.py), exported: its device folder."""
    assert "registered as MLflow model" in tiny_search_on_a_server.stderr, tiny_search_on_a_server.stderr[-1500:]
    return tiny_search_on_a_server.out / "cpu"


@pytest.fixture(scope="module")
def tracking(tiny_search_on_a_server) -> str:
    return tiny_search_on_a_server.tracking


@pytest.mark.e2e
def test_the_experiment_opens_on_its_runs_and_says_what_it_holds(searched: Path, tracking: str):
    experiment = MlflowClient(tracking).get_experiment_by_name(STUDY)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert "`tiny` on device `cpu`" in experiment.tags["mlflow.note.content"]


@pytest.mark.e2e
def test_trial_runs_are_named_and_their_layer_tables_match_strategy_yaml(searched: Path, tracking: str):
    parents, trials = mlflow_runs(STUDY, tracking)
    assert len(trials) == 3
    client = MlflowClient(tracking)
    for run in trials:
        number = run.data.tags["optuna.trial_number"]
        assert run.info.run_name.startswith(f"t{number} ")
        strategy_yaml = Path(client.download_artifacts(run.info.run_id, "strategy.yaml")).read_text()
        strategy = Strategy.model_validate(yaml.safe_load(strategy_yaml))
        table = json.loads(Path(client.download_artifacts(run.info.run_id, "layers.json")).read_text())
        rows = {row[0]: dict(zip(table["columns"], row, strict=True)) for row in table["data"]}
        assert set(rows) == set(strategy.quantize.precisions)
        for layer, row in rows.items():
            assert row["precision"] == strategy.quantize.precisions[layer]
            assert row["prune_ratio"] == pytest.approx(strategy.prune.ratios.get(layer, 0.0))
    report = json.loads((searched / "report.json").read_text())
    best = [run for run in trials if run.data.tags.get("best") == "true"]
    assert [run.data.tags["optuna.trial_number"] for run in best] == [str(report["trial_number"])]
    assert report["confirm_attempts"] == 1  # tiny.yaml's `confirm_windows: 1`: one window, however slow


@pytest.mark.e2e
def test_the_export_is_registered_once_and_loads_with_the_reported_metric(searched: Path, tracking: str, tiny_task):
    client = MlflowClient(tracking)
    (model,) = [m for m in client.search_registered_models() if m.name == STUDY + "-cpu"]
    (version,) = client.search_model_versions(f"name = '{model.name}'")
    report = json.loads((searched / "report.json").read_text())
    assert float(version.tags["confirmed_speedup"]) == pytest.approx(report["confirmed_speedup"], rel=1e-3)
    assert version.tags["device"] == "cpu"

    again, new = register_export(tracking, STUDY, searched)  # the same export: no duplicate
    assert not new and again.version == version.version
    assert len(client.search_model_versions(f"name = '{model.name}'")) == 1

    source = client.get_model_version_download_uri(model.name, version.version)  # through the server
    folder = Path(mlflow.artifacts.download_artifacts(artifact_uri=source, tracking_uri=tracking))
    assert {"model.onnx", "strategy.yaml", "report.json"} <= {p.name for p in folder.iterdir()}
    measured = measure_artifact(folder / "model.onnx", tiny_task, get_profile("cpu"))
    assert measured.metric == pytest.approx(report["accuracy"], abs=1e-9)
