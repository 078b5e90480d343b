"""Two workers on one PostgreSQL study, logging to a real `mlflow server`; one is killed with SIGKILL in the
middle of a trial and started again. Nothing is lost, nothing is done twice, every artifact is on the server."""

from __future__ import annotations

import subprocess
import time

import pytest
from optuna.trial import TrialState

from autocompress.search.recovery import WORKER_ATTR
from tests.helpers import BackgroundCli, artifact_names, invoke_cli, load_study, mlflow_runs, start_cli, user_config
from tests.services import postgres_cluster

pytestmark = pytest.mark.e2e
STUDY = "tiny-workers"


def _running_trial_of(worker: BackgroundCli, storage: str, deadline: float) -> int:
    """The number of a trial `worker` is in the middle of, once one other trial has completed."""
    pid = worker.pid
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise AssertionError(f"worker exited ({worker.returncode}) first: {worker.output()[1][-3000:]}")
        try:
            trials = load_study(STUDY, storage).trials
        except KeyError:
            trials = []
        mine = [t for t in trials if t.state == TrialState.RUNNING and f":{pid}:" in t.user_attrs.get(WORKER_ATTR, "")]
        if mine and any(t.state == TrialState.COMPLETE for t in trials):
            time.sleep(0.5)
            return mine[0].number
        time.sleep(0.3)
    states = [(t.number, t.state.name, t.user_attrs.get(WORKER_ATTR)) for t in load_study(STUDY, storage).trials]
    others = subprocess.run(["ps", "-eo", "pid,etimes,args"], capture_output=True, text=True).stdout  # lock holders?
    others = "\n".join(line[:200] for line in others.splitlines() if "autocompress" in line or "pytest" in line)
    raise AssertionError(f"worker {pid} never reached a running trial: {states}; {worker.output()[1][-3000:]}\n"
                         f"processes:\n{others}")  # fmt: skip


def test_two_workers_one_killed_and_restarted(session_mlflow_server) -> None:
    tracking = session_mlflow_server.tracking
    with postgres_cluster() as storage:
        worker = ("search", "--no-sensitivity", str(user_config()), "--study", STUDY, "--storage", storage,
                  "--tracking-uri", tracking, "--no-register", "--confirm", "0")  # fmt: skip
        slow = {"TINY_METRIC_SECONDS": "1"}
        first = start_cli(*worker, "--trials", "4", env=slow)
        second = start_cli(*worker, "--trials", "2", env=slow)
        _running_trial_of(first, storage, time.monotonic() + 300)
        first.kill()
        first.communicate(timeout=60)
        # the trial it was in when killed (the one seen running may have finished in the meantime: read it now)
        (killed,) = [t.number for t in load_study(STUDY, storage).trials if t.state == TrialState.RUNNING
                     and f":{first.pid}:" in t.user_attrs.get(WORKER_ATTR, "")]  # fmt: skip
        again = invoke_cli(*worker, "--trials", "2", env=slow)  # the same command again (in-process: no start-up)
        _, second_err = second.communicate(timeout=600)
        assert again.returncode == 0, again.stderr[-2000:]
        assert second.returncode == 0, second_err[-2000:]

        study = load_study(STUDY, storage)
        states = [t.state for t in study.trials]
        assert TrialState.RUNNING not in states and TrialState.WAITING not in states
        dead = study.trials[killed]
        assert dead.state == TrialState.FAIL and "died" in dead.user_attrs["fail_reason"]
        (retry,) = [t for t in study.trials if t.user_attrs.get("retry_of") == killed]
        assert retry.state == TrialState.COMPLETE and retry.params == dead.params
        starts = [t.user_attrs["enqueued"] for t in study.trials if "enqueued" in t.user_attrs and "retry_of"
                  not in t.user_attrs]  # fmt: skip
        assert len(starts) == len(set(starts)), f"warm starts queued twice: {starts}"
        workers = {t.user_attrs[WORKER_ATTR].split(":")[1] for t in study.trials if t.state == TrialState.COMPLETE}
        assert len(workers) >= 2  # both workers did trials

        counts = {state.name: states.count(state) for state in set(states)}
        print(f"trials {counts}; killed trial {killed} re-run as {retry.number}; workers {sorted(workers)}")
        _, children = mlflow_runs(STUDY, tracking)
        by_trial = {int(run.data.tags["optuna.trial_number"]): run for run in children}
        for trial in study.trials:
            run = by_trial[trial.number]
            expected = "FINISHED" if trial.state == TrialState.COMPLETE else ("KILLED", "FAILED")
            assert run.info.status in expected, (trial.number, run.info.status)
            assert run.info.artifact_uri.startswith("mlflow-artifacts:"), run.info.artifact_uri  # on the server
            if trial.state == TrialState.COMPLETE:
                assert "strategy.yaml" in artifact_names(run.info.run_id, tracking)
                # uploaded through the server, into its own store
                assert any(session_mlflow_server.store.glob(f"*/{run.info.run_id}/artifacts/strategy.yaml"))
