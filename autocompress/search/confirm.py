"""Confirmation before export: the top candidates re-measured together with the baseline, in one window.

A search keeps whichever candidate happened to be timed in a good moment (the winner's curse): the more trials,
the more the best search-time figure overstates what a user gets. So the k fastest feasible candidates and the
baseline are timed again, all in the same interleaved rounds, with a tighter interval; the exported winner is
the one with the best confirmed speedup, and a winner must beat the baseline beyond its interval.

The figures are the machine's undisturbed state (see evaluators/device/latency.py). A confirmation window that
falls entirely in a slower state (the baseline's floor above its fastest in this study's trials) is timed again
after a pause, with the device's lock released, up to `attempts` times; the report says how it went.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import optuna

from autocompress.evaluators.device.latency import Interleaved, TimingPolicy
from autocompress.evaluators.measure import CONFIRM_POLICY, time_together
from autocompress.hardware.profile import HardwareProfile
from autocompress.search.artifacts import baseline_artifact, trial_artifact
from autocompress.search.results import METRICS_ATTR, top_feasible
from autocompress.task import Task

CONFIRMATION_ATTR = "confirmation"
DEFAULT_CONFIRM = 5
ATTEMPTS = 4  # windows at most, when the machine is in a slower state
RETRY_GAP_S = 20.0  # this VM's states last seconds to minutes
log = logging.getLogger(__name__)
Timer = Callable[[Path, list[Path], Task, HardwareProfile, TimingPolicy], Interleaved]


@dataclass(frozen=True)
class Confirmed:
    """One candidate's confirmed speedup (paired with the baseline, same rounds as the other candidates)."""

    trial: int
    speedup: float
    ci_low: float
    ci_high: float
    rounds: int
    noisy: bool
    latency_ms: float
    baseline_latency_ms: float
    search_speedup: float
    search_speedup_ci: tuple[float, float]
    settled_share: float = 1.0  # rounds in the machine's undisturbed state, of all rounds
    unsettled_speedup: float | None = None  # the speedup in the other rounds
    machine_slowdown: float | None = None  # the baseline's floor over its fastest in the study's trials, minus 1
    attempts: int = 1

    @property
    def beats_baseline(self) -> bool:
        """Faster than the uncompressed model beyond the measurement's interval."""
        return self.ci_low > 1.0


def confirm(
    study: optuna.Study,
    task: Task,
    profile: HardwareProfile,
    k: int = DEFAULT_CONFIRM,
    policy: TimingPolicy = CONFIRM_POLICY,
    timer: Timer = time_together,
    attempts: int = ATTEMPTS,
    retry_gap_s: float = RETRY_GAP_S,
) -> list[Confirmed]:
    """Re-measure the top `k` feasible candidates with the baseline; best confirmed speedup first.

    The result is also stored with the study (attribute `confirmation`), so `export` and reports can show it.
    """
    candidates = top_feasible(study, k)
    if not candidates:
        return []
    paths = [trial_artifact(study, trial, task, profile) for trial in candidates]
    baseline = baseline_artifact(study.study_name, task, profile)
    policy = replace(policy, reference_floor_ms=baseline_floor_ms(study))
    for attempt in range(1, attempts + 1):
        timing = timer(baseline, paths, task, profile, policy)
        slowdown = timing.reference_slowdown
        if slowdown is None or slowdown <= policy.settle_tolerance or attempt == attempts:
            break
        log.info("confirmation: the baseline ran %.0f%% slower than its best in this study (the machine is in a "
                 "slower state); timing again in %.0f s", 100 * slowdown, retry_gap_s)  # fmt: skip
        time.sleep(retry_gap_s)
    confirmed = []
    for index, trial in enumerate(candidates, start=1):
        paired, metrics = timing.speedups[index], trial.user_attrs[METRICS_ATTR]
        assert paired is not None
        confirmed.append(
            Confirmed(
                trial=trial.number,
                speedup=paired.speedup,
                ci_low=paired.ci_low,
                ci_high=paired.ci_high,
                rounds=paired.rounds,
                noisy=paired.noisy,
                latency_ms=timing.latencies[index].median_ms,
                baseline_latency_ms=timing.latencies[0].median_ms,
                search_speedup=metrics["speedup"],
                search_speedup_ci=(metrics["speedup_ci_low"], metrics["speedup_ci_high"]),
                settled_share=paired.settled_share,
                unsettled_speedup=paired.unsettled_speedup,
                machine_slowdown=timing.reference_slowdown,
                attempts=attempt,
            )
        )
    confirmed.sort(key=lambda item: item.speedup, reverse=True)
    study.set_user_attr(
        CONFIRMATION_ATTR,
        {"at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "device": profile.name,
         "candidates": [asdict(item) for item in confirmed]},
    )  # fmt: skip
    return confirmed


def baseline_floor_ms(study: optuna.Study) -> float | None:
    """The baseline's fastest latency in this study's trials (each trial times it beside its candidate)."""
    timed = [trial.user_attrs[METRICS_ATTR].get("baseline_latency_ms") for trial in study.get_trials(deepcopy=False)
             if METRICS_ATTR in trial.user_attrs]  # fmt: skip
    known = [value for value in timed if value]
    return min(known) if known else None


def winner(confirmed: list[Confirmed]) -> Confirmed | None:
    """The best confirmed candidate among those that beat the baseline beyond their interval; None if none does."""
    faster = [item for item in confirmed if item.beats_baseline]
    return max(faster, key=lambda item: item.speedup) if faster else None
