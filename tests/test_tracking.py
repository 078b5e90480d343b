"""MLflow experiment set-up by workers of one study that start at the same moment."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from autocompress.search.tracking import DESCRIPTION_TAG, EXPERIMENT_KIND, MlflowTracker

WORKERS = 8
ROUNDS = 6  # the race is lost in some rounds only


@pytest.mark.parametrize("experiment_exists", [True, False], ids=["existing", "new"])
def test_workers_starting_together_all_set_the_experiment_up(tmp_path: Path, experiment_exists: bool) -> None:
    """MLflow's SQL store writes a new experiment tag as check-then-insert; the losers of that race must not
    fail their search (a worker died of a unique-constraint error in CI)."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for round_ in range(ROUNDS):
        _start_workers_together(uri, f"study-{round_}", experiment_exists)


def _start_workers_together(uri: str, study: str, experiment_exists: bool) -> None:
    if experiment_exists:
        MlflowClient(uri).create_experiment(study)  # made by an older version: no tags yet
    start = threading.Barrier(WORKERS)
    errors: list[BaseException] = []
    ids: list[str] = []

    def worker() -> None:
        try:
            start.wait()
            ids.append(MlflowTracker(uri, study, "what this study searches").experiment_id)
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert len(set(ids)) == 1 and len(ids) == WORKERS
    tags = MlflowClient(uri).get_experiment(ids[0]).tags
    assert tags[DESCRIPTION_TAG] == "what this study searches"
    assert all(tags[key] == value for key, value in EXPERIMENT_KIND.items())
