"""Confirmation before export: the top candidates re-measured together with the baseline, in one window.

A search keeps whichever candidate happened to be timed in a good moment (the winner's curse): the more trials,
the more the best search-time figure overstates what a user gets. So the k fastest feasible candidates and the
baseline are timed again, all in the same interleaved rounds, with a tighter interval; the exported winner is
the one with the best confirmed speedup, and a winner must beat the baseline beyond its interval.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
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
) -> list[Confirmed]:
    """Re-measure the top `k` feasible candidates with the baseline; best confirmed speedup first.

    The result is also stored with the study (attribute `confirmation`), so `export` and reports can show it.
    """
    candidates = top_feasible(study, k)
    if not candidates:
        return []
    paths = [trial_artifact(study, trial, task, profile) for trial in candidates]
    timing = timer(baseline_artifact(study.study_name, task, profile), paths, task, profile, policy)
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
            )
        )
    confirmed.sort(key=lambda item: item.speedup, reverse=True)
    study.set_user_attr(
        CONFIRMATION_ATTR,
        {"at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "device": profile.name,
         "candidates": [asdict(item) for item in confirmed]},
    )  # fmt: skip
    return confirmed


def winner(confirmed: list[Confirmed]) -> Confirmed | None:
    """The best confirmed candidate among those that beat the baseline beyond their interval; None if none does."""
    faster = [item for item in confirmed if item.beats_baseline]
    return max(faster, key=lambda item: item.speedup) if faster else None
