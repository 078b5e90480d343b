"""Once per study, whatever the number of workers: the baseline, the sensitivity table and the first candidates.

Workers that start together (several processes, several machines, last night's run still going when tonight's
starts) must not each enqueue the warm starts or build the baseline into the same folder. The first worker to
create the study's claim — a second Optuna study named `<study>::setup` in the same storage, whose unique name
makes the creation atomic on every backend — does the set-up; the others wait until it marks the study set up.
A claim whose owner died (same host: its process is gone; elsewhere: older than the wait limit) is taken over.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import time
from collections.abc import Callable

import optuna
from optuna.exceptions import DuplicatedStudyError
from optuna.storages import BaseStorage

log = logging.getLogger(__name__)
SETUP_DONE_ATTR = "setup_done"
OWNER_ATTR = "owner"
CLAIMED_AT_ATTR = "claimed_at"


def claim_name(study_name: str) -> str:
    return f"{study_name}::setup"


def _owner() -> str:
    return f"{platform.node()}:{os.getpid()}"


def _is_done(study: optuna.Study, storage: BaseStorage) -> bool:
    return bool(storage.get_study_user_attrs(study._study_id).get(SETUP_DONE_ATTR))


def _try_claim(study_name: str, storage: BaseStorage) -> bool:
    try:
        claim = optuna.create_study(study_name=claim_name(study_name), storage=storage)
    except DuplicatedStudyError:
        return False
    claim.set_user_attr(OWNER_ATTR, _owner())
    claim.set_user_attr(CLAIMED_AT_ATTR, time.time())
    return True


def _owner_gone(study_name: str, storage: BaseStorage, stale_s: float) -> bool:
    """The claim's owner is known dead (a process of this host that no longer runs) or the claim is stale."""
    try:
        attrs = optuna.load_study(study_name=claim_name(study_name), storage=storage).user_attrs
    except KeyError:
        return True  # released meanwhile
    owner, claimed_at = attrs.get(OWNER_ATTR), attrs.get(CLAIMED_AT_ATTR)
    if owner is None or claimed_at is None:
        return False  # being written by its owner right now
    host, _, pid = str(owner).rpartition(":")
    if host == platform.node():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except (PermissionError, ValueError):
            pass
    return time.time() - float(claimed_at) > stale_s


def _release(study_name: str, storage: BaseStorage) -> None:
    with contextlib.suppress(KeyError):
        optuna.delete_study(study_name=claim_name(study_name), storage=storage)


def once_per_study(
    study: optuna.Study,
    storage: BaseStorage,
    setup: Callable[[], None],
    stale_s: float = 3 * 3600,
    poll_s: float = 1.0,
) -> str:
    """Run `setup` in one worker of the study; the others return once it is done. Says what happened here: "ran",
    "waited" (another worker set it up meanwhile) or "done" (set up before; a study that already has trials but
    no mark, made before this existed, counts as set up)."""
    if _is_done(study, storage) or study.get_trials(deepcopy=False):
        return "done"
    while True:
        if _try_claim(study.study_name, storage):
            try:
                if not _is_done(study, storage):  # the previous owner may have finished just before dying
                    setup()
                    study.set_user_attr(SETUP_DONE_ATTR, True)
            finally:
                _release(study.study_name, storage)  # a failed set-up lets the next worker try again
            return "ran"
        log.info("another worker is setting up study '%s'; waiting", study.study_name)
        while not _is_done(study, storage):
            if _owner_gone(study.study_name, storage, stale_s):
                log.warning("the worker setting up study '%s' is gone; taking over", study.study_name)
                _release(study.study_name, storage)
                break
            time.sleep(poll_s)
        else:
            return "waited"
