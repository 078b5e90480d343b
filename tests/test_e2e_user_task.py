"""A user's own model, data and metric from a YAML config; failures and interrupts lose nothing."""

from __future__ import annotations

import signal
import time

import pytest
from optuna.trial import TrialState

from tests.helpers import load_study, mlflow_runs, run_cli, start_cli, user_config

pytestmark = pytest.mark.e2e


def test_a_failing_trial_is_recorded_and_the_search_goes_on():
    # metric call 1 is the baseline, call 2 trial 0, call 3 trial 1: trial 1 gets NaN accuracy
    result = run_cli("search", str(user_config()), "--study", "tiny-fail", env={"TINY_FAIL_CALL": "3"})
    assert result.returncode == 0, result.stderr[-2000:]
    study = load_study("tiny-fail")
    states = [t.state for t in study.trials]
    assert states == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    assert "nan" in study.trials[1].user_attrs["fail_reason"].lower()
    _, children = mlflow_runs("tiny-fail")
    failed = [run for run in children if run.data.tags["optuna.trial_number"] == "1"]
    assert len(failed) == 1 and failed[0].info.status == "FAILED"
    assert "nan" in failed[0].data.tags["error"].lower()


def _wait_for_a_running_trial(name: str, completed: int, deadline: float) -> None:
    """Until `completed` trials are done and another has been building for a moment."""
    while time.monotonic() < deadline:
        try:
            trials = load_study(name).trials
        except KeyError:
            trials = []
        done = [t for t in trials if t.state == TrialState.COMPLETE]
        running = [t for t in trials if t.state == TrialState.RUNNING]
        if len(done) >= completed and running:
            time.sleep(0.3)
            return
        time.sleep(0.2)
    raise AssertionError("the search never reached a running trial")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_search_records_the_trial_and_resumes(signum):
    name = f"tiny-interrupt-{signum.name.lower()}"
    process = start_cli(
        "search", str(user_config()), "--study", name, "--trials", "40", env={"TINY_METRIC_SECONDS": "2"}
    )
    _wait_for_a_running_trial(name, completed=2, deadline=time.monotonic() + 300)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=300)  # generous: a loaded CI machine is slow to wind down
    assert process.returncode == 130, stderr[-2000:]
    assert "resume" in stderr
    study = load_study(name)
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]
    interrupted = [t for t in study.trials if t.state == TrialState.FAIL]
    assert len(interrupted) == 1 and "interrupted" in interrupted[0].user_attrs["fail_reason"]
    parents, children = mlflow_runs(name)
    assert [p.info.status for p in parents] == ["KILLED"]
    killed = [r for r in children if r.data.tags["optuna.trial_number"] == str(interrupted[0].number)]
    assert killed[0].info.status == "KILLED"

    before = len([t for t in study.trials if t.state.is_finished()])  # a warm start may still be waiting
    resumed = run_cli("search", str(user_config()), "--study", name, "--trials", "2")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    study = load_study(name)
    assert len(study.trials) == before + 2
    assert all(t.state == TrialState.COMPLETE for t in study.trials[before:])
    assert study.trials[0].user_attrs["metrics"] == load_study(name).trials[0].user_attrs["metrics"]


def test_a_study_with_only_the_uncompressed_model_exports_nothing(tmp_path):
    result = run_cli("search", str(user_config()), "--study", "tiny-nothing", "--trials", "1", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "nothing exported" in result.stderr
    assert load_study("tiny-nothing").trials[0].user_attrs["enqueued"] == "no compression"
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["search", "--example", "digits", "--device", "jetson-nano-9000"], "unknown device 'jetson-nano-9000'"),
        (["search", "--example", "mnist-huge"], "unknown example 'mnist-huge'"),
        (["search", "missing.yaml"], "config file 'missing.yaml' does not exist"),
        (["search", "--example", "digits", "--timeout", "8 parsecs"], "is not a duration"),
        (["search", "--example", "digits", "--drop-mode", "sideways"], "drop_mode"),
        (
            ["apply", "nowhere/strategy.yaml", "--example", "digits"],
            "strategy file 'nowhere/strategy.yaml' does not exist",
        ),
        (["export", "--example", "digits", "--study", "never-ran"], "no study named 'never-ran'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, message):
    result = run_cli(*args, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model: tiny_task:not_a_model", "must return (nn.Module, example_input)"),
        ("model: tiny_task:no_such_function", "has no attribute 'no_such_function'"),
        ("model: no_such_package.models:build", "cannot import module 'no_such_package.models'"),
        ("model: tiny_task", "is not of the form package.module:function"),
        ("metric: tiny_task:_split_nowhere", "has no attribute"),
        ("colour: blue", "colour: Extra inputs are not permitted"),
        ("model: tiny_task:unexportable_model", "ONNX export failed"),
    ],
)
def test_bad_user_configs_are_one_line_and_exit_2(tmp_path, override, message):
    text = user_config().read_text()
    key = override.split(":")[0]
    lines = [line for line in text.splitlines() if not line.startswith(f"{key}:")] + [override]
    config = user_config().parent / f"bad-{tmp_path.name}.yaml"
    config.write_text("\n".join(lines) + "\n")
    try:
        result = run_cli("search", str(config), "--study", f"bad-{tmp_path.name}", timeout=120)
    finally:
        config.unlink()
    assert result.returncode == 2, result.stderr[-2000:]
    assert message in result.stderr
    assert "Traceback" not in result.stderr
