"""Artifact housekeeping after each trial: the front's artifacts go to MLflow, the others' local folders go."""

from __future__ import annotations

import shutil

import optuna
from optuna.trial import FrozenTrial

from autocompress.search.artifacts import trial_dir
from autocompress.search.results import feasible_front, top_feasible
from autocompress.search.tracking import MlflowTracker


class KeepArtifacts:
    """After each trial: log newly non-dominated artifacts to MLflow, and delete the local artifacts of finished
    trials that are neither on the feasible front nor among the top candidates confirmation will re-time.

    Only finished trials' folders are touched, so a trial being built by another worker is never deleted."""

    def __init__(self, tracker: MlflowTracker, study_name: str, keep_top: int) -> None:
        self.tracker = tracker
        self.study_name = study_name
        self.keep_top = keep_top

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        front = {t.number for t in feasible_front(study)}
        if trial.number in front and "mlflow_run_id" in trial.user_attrs:
            for path in trial_dir(self.study_name, trial.number).glob("model.*"):
                self.tracker.log_artifact(trial.user_attrs["mlflow_run_id"], path)
        keep = front | {t.number for t in top_feasible(study, self.keep_top)}
        finished = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}
        for number in finished - keep:
            shutil.rmtree(trial_dir(self.study_name, number), ignore_errors=True)
