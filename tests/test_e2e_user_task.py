"""A user's own model, data and metric from a YAML config; failures and interrupts lose nothing."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from optuna.trial import FrozenTrial, TrialState

from autocompress.home import home as session_home
from autocompress.search.failures import BUG_REASON
from tests.helpers import invoke_cli, last_line, load_study, mlflow_runs, run_cli, start_cli, user_config

pytestmark = pytest.mark.e2e


def test_a_failing_trial_is_recorded_a_bug_stops_the_search_and_the_study_resumes_after_the_fix():
    """Trial 1's metric is NaN (a failure a candidate may have: recorded, the search goes on); trial 2, the first
    pruned candidate, meets a programming error planted in the user's forward (a bug: the search stops, one line
    names the log file with the traceback, exit 1). Without the bug, the same command resumes the same study: the
    next trial number runs trial 2's candidate again. stdout is a pipe: one line per finished trial."""
    # metric call 1 checks the metric at load, 2 is the baseline, 3 trial 0, 4 trial 1
    stopped = run_cli("search", "--no-sensitivity", str(user_config()), "--study", "tiny-fail",
                      env={"TINY_FAIL_CALL": "4", "TINY_PRUNED_BUG": "1"})  # fmt: skip
    assert stopped.returncode == 1, stopped.stderr[-2000:]
    assert "Traceback" not in stopped.stderr
    screen = [line for line in stopped.stderr.splitlines() if line.strip()]  # nothing from the libraries
    assert all(line.startswith(("WARNING autocompress.", "error: ")) for line in screen), screen  # no bar off a tty
    line = last_line(stopped.stderr)
    bug = "error: trial 2 raised AttributeError: 'TinyNet' object has no attribute 'conv3': a bug, not a failed"
    assert line.startswith(bug), line
    log_file = Path(re.search(r"traceback in (\S+\.log)\)", line).group(1))
    assert log_file.parent == session_home() / "logs" and "self.conv3(x)" in log_file.read_text()
    study = load_study("tiny-fail")
    complete, fail, waiting = TrialState.COMPLETE, TrialState.FAIL, TrialState.WAITING
    assert [t.state for t in study.trials] == [complete, fail, fail, waiting]
    assert study.trials[1].user_attrs["fail_reason"] == (
        "NonFiniteMetric: metric is nan on the runtime's outputs (the artifact produces non-finite values)"
    )
    assert study.trials[2].user_attrs["fail_reason"].startswith(f"{BUG_REASON} AttributeError")
    assert study.trials[3].user_attrs["retry_of"] == 2
    parents, children = mlflow_runs("tiny-fail")
    assert [p.info.status for p in parents] == ["FAILED"]
    by_trial = {run.data.tags["optuna.trial_number"]: run for run in children}
    assert by_trial["1"].info.status == "FAILED" and "nan" in by_trial["1"].data.tags["error"]
    assert by_trial["2"].info.status == "FAILED"
    lines = [line for line in stopped.stdout.splitlines() if line.startswith("trial ")]
    assert lines[0].startswith("trial 0 COMPLETE  no compression  flaky_accuracy 0.")
    assert " speedup " in lines[0] and "(warm start no compression)" in lines[0]
    assert lines[1].startswith("trial 1 FAIL  int8 3/3  failed: NonFiniteMetric: metric is nan"), lines

    fixed = invoke_cli("search", "--no-sensitivity", str(user_config()), "--study", "tiny-fail", "--trials", "1",
                       "--confirm", "0")  # fmt: skip
    assert fixed.returncode == 0, fixed.stderr[-2000:]
    study = load_study("tiny-fail")
    assert len(study.trials) == 4 and study.trials[3].state == TrialState.COMPLETE
    assert study.trials[3].params == study.trials[2].params
    assert [line.split("  ")[0] for line in fixed.stdout.splitlines() if line.startswith("trial ")] == [
        "trial 3 COMPLETE"
    ]


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


def _search_inside_a_trial(name: str, completed: int) -> subprocess.Popen:
    """A search whose metric takes 1 s, returned once `completed` trials are done and the next is running (the
    tiny config queues four warm starts; an interrupted trial is queued again after them)."""
    process = start_cli("search", "--no-sensitivity", str(user_config()), "--study", name, "--trials", "40",
                        env={"TINY_METRIC_SECONDS": "1"})  # fmt: skip
    _wait_for_a_running_trial(name, completed, deadline=time.monotonic() + 300)
    return process


def _interrupt_inside_a_trial(name: str, signum: signal.Signals) -> tuple[FrozenTrial, FrozenTrial]:
    """Interrupt a search in the middle of a trial; check it says so, exits 130 and keeps everything: the trial
    failed as interrupted (in MLflow too), its candidate queued again. Returns (interrupted, queued again)."""
    process = _search_inside_a_trial(name, completed=2)  # the resume runs the last warm start and the retry
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

    (again,) = [t for t in study.trials if t.user_attrs.get("retry_of") == interrupted[0].number]
    assert again.state == TrialState.WAITING  # nothing lost: the interrupted candidate is queued to run again
    return interrupted[0], again


def test_an_interrupted_search_records_the_trial_and_resumes():
    """Ctrl-C in the middle of a trial; SIGTERM (what a service manager or `kill` sends) takes the same handler
    (tests/test_signals.py)."""
    name = "tiny-interrupt-sigint"
    interrupted, again = _interrupt_inside_a_trial(name, signal.SIGINT)
    study = load_study(name)
    before = len([t for t in study.trials if t.state.is_finished()])  # a warm start may still be waiting
    first_metrics = study.trials[0].user_attrs["metrics"]
    resumed = invoke_cli("search", "--no-sensitivity", str(user_config()), "--study", name, "--trials", "2",
                         "--confirm", "0")  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    study = load_study(name)
    assert len(study.trials) == before + 2
    assert all(t.state == TrialState.COMPLETE for t in study.trials[before:])
    assert study.trials[again.number].params == interrupted.params
    assert study.trials[0].user_attrs["metrics"] == first_metrics  # resuming leaves finished trials as they were


def test_a_study_with_only_the_uncompressed_model_exports_nothing(tmp_path):
    result = invoke_cli(
        "search",
        "--no-sensitivity",
        str(user_config()),
        "--study",
        "tiny-nothing",
        "--trials",
        "1",
        "--out",
        str(tmp_path),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "nothing exported" in result.stderr
    assert load_study("tiny-nothing").trials[0].user_attrs["enqueued"] == "no compression"
    assert not list(tmp_path.iterdir())


def test_a_killed_search_is_recovered_by_the_next_one():
    """kill -9 in the middle of a trial, then the same command at once: the trial is failed and run again, and
    no trial and no MLflow run is left RUNNING."""
    name = "tiny-kill9"
    process = _search_inside_a_trial(name, completed=1)  # the resume's 3 trials: two warm starts, the retry
    process.kill()
    process.communicate(timeout=60)
    killed = [t for t in load_study(name).trials if t.state == TrialState.RUNNING]
    assert len(killed) == 1
    _, children = mlflow_runs(name)
    assert any(run.info.status == "RUNNING" for run in children)  # what kill -9 leaves behind

    resumed = invoke_cli("search", "--no-sensitivity", str(user_config()), "--study", name, "--trials", "3",
                         "--confirm", "0")  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    study = load_study(name)
    assert not [t for t in study.trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    dead = study.trials[killed[0].number]
    assert dead.state == TrialState.FAIL and "died" in dead.user_attrs["fail_reason"]
    (retry,) = [t for t in study.trials if t.user_attrs.get("retry_of") == dead.number]
    assert retry.state == TrialState.COMPLETE and retry.params == dead.params
    assert retry.user_attrs.get("enqueued") == dead.user_attrs.get("enqueued")  # a warm start stays one
    parents, children = mlflow_runs(name)
    assert not [run for run in parents + children if run.info.status == "RUNNING"]
    assert [p.info.status for p in parents].count("KILLED") == 1
