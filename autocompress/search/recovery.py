"""A worker killed without warning (kill -9, a power cut) loses nothing: its trial is failed and re-queued, and
its MLflow runs are closed as KILLED, by the next worker that starts.

Every trial and MLflow run records which process owns it (host, pid and the process's start time, so a reused
pid is not mistaken for the owner). At start-up, a RUNNING trial or run whose owner was on this host and is
gone is recovered at once; owners on other hosts are left to Optuna's heartbeat, whose grace period passes
before such a trial is failed (and then re-queued by the same retry callback).
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from autocompress.search.polish import POLISH_STEPS_ATTR, POLISHED_ATTR
from autocompress.search.results import DEPTH_COUNT_ATTR, REFINED_ATTR

log = logging.getLogger(__name__)
WORKER_ATTR = "worker"
RETRY_ATTR = "retry_of"
KEPT_ON_RETRY = ("enqueued", POLISHED_ATTR, POLISH_STEPS_ATTR, REFINED_ATTR, DEPTH_COUNT_ATTR)  # a re-run does the same


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot (/proc), '' where there is no /proc."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def this_worker() -> str:
    """host:pid:start-time of this process."""
    return f"{socket.gethostname()}:{os.getpid()}:{_start_time(os.getpid())}"


def is_dead(worker: str) -> bool:
    """True only when the owner was on this host and its process is gone (or the pid now belongs to another)."""
    host, _, rest = worker.partition(":")
    pid_text, _, started = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, another user's
    return bool(started) and _start_time(pid) != started


def requeue(study: optuna.Study, trial: FrozenTrial | optuna.Trial) -> None:
    """Run the same parameters again (a warm start keeps its label, a polish its steps): for interrupted, killed and
    stale trials."""
    attrs: dict[str, Any] = {RETRY_ATTR: trial.number}
    attrs |= {key: trial.user_attrs[key] for key in KEPT_ON_RETRY if key in trial.user_attrs}
    study.enqueue_trial(trial.params, user_attrs=attrs, skip_if_exists=False)


def retry_stale(study: optuna.Study, trial: FrozenTrial) -> None:
    """Optuna's failed_trial_callback: a trial whose heartbeat stopped is re-queued once."""
    if RETRY_ATTR not in trial.user_attrs:
        requeue(study, trial)


def recover_trials(study: optuna.Study, storage: BaseStorage) -> list[int]:
    """Fail and re-queue the RUNNING trials of dead workers on this host; returns their numbers."""
    recovered = []
    study_id = storage.get_study_id_from_name(study.study_name)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.user_attrs.get(WORKER_ATTR)
        if worker is None or not is_dead(worker):
            continue
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        storage.set_trial_user_attr(trial_id, "fail_reason", f"its worker {worker} died (killed?); re-queued")
        if storage.set_trial_state_values(trial_id, TrialState.FAIL):
            requeue(study, trial)
            recovered.append(trial.number)
    if recovered:
        log.warning("re-queued trial(s) %s of a worker that died", recovered)
    return recovered
