"""Several workers on one study: the set-up (baseline, sensitivity, first candidates) happens once."""

from __future__ import annotations

import platform
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import pytest

from autocompress.search.claim import CLAIMED_AT_ATTR, OWNER_ATTR, SETUP_DONE_ATTR, claim_name, once_per_study

WORKER = textwrap.dedent(
    """
    import sys, time, optuna
    from autocompress.search.claim import once_per_study
    url, log = sys.argv[1], sys.argv[2]
    storage = optuna.storages.RDBStorage(url)
    study = optuna.create_study(study_name="shared", storage=storage, load_if_exists=True)
    def set_up():
        time.sleep(1.5)  # long enough for the other worker to arrive meanwhile
        study.enqueue_trial({"x": 1.0})
        with open(log, "a") as handle:
            handle.write("setup\\n")
    print(once_per_study(study, storage, set_up, poll_s=0.1))
    """
)


def test_two_workers_starting_together_set_the_study_up_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    optuna.create_study(study_name="shared", storage=url)  # as the first `autocompress search` would
    log = tmp_path / "setup.log"
    workers = [
        subprocess.Popen([sys.executable, "-c", WORKER, url, str(log)], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    said = sorted(worker.communicate(timeout=120)[0].strip() for worker in workers)
    assert said == ["ran", "waited"]
    assert log.read_text().count("setup") == 1
    study = optuna.load_study(study_name="shared", storage=url)
    assert len(study.trials) == 1  # the warm start enqueued once
    assert study.user_attrs[SETUP_DONE_ATTR] is True
    assert claim_name("shared") not in {s.study_name for s in optuna.get_all_study_summaries(url)}


def test_a_claim_left_by_a_dead_worker_is_taken_over(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    storage = optuna.storages.RDBStorage(url)
    study = optuna.create_study(study_name="shared", storage=storage)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    claim = optuna.create_study(study_name=claim_name("shared"), storage=storage)
    claim.set_user_attr(OWNER_ATTR, f"{platform.node()}:{int(dead.stdout)}")  # killed in the middle of set-up
    claim.set_user_attr(CLAIMED_AT_ATTR, time.time())
    ran: list[int] = []
    assert once_per_study(study, storage, lambda: ran.append(1), poll_s=0.05) == "ran"
    assert ran == [1]
    assert once_per_study(study, storage, lambda: ran.append(2)) == "done"  # the next worker, the next night
    assert ran == [1]


def test_a_failed_set_up_lets_the_next_worker_try(tmp_path: Path) -> None:
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'study.db'}")
    study = optuna.create_study(study_name="shared", storage=storage)

    def broken() -> None:
        raise RuntimeError("baseline export failed")

    with pytest.raises(RuntimeError, match="baseline export failed"):
        once_per_study(study, storage, broken)
    assert SETUP_DONE_ATTR not in study.user_attrs
    assert once_per_study(study, storage, lambda: None) == "ran"
