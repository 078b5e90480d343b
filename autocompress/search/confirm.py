"""Confirmation before export: choose the winner in one set of windows, check it on the held-out test split, and
take its figure from a fresh set.

A search keeps whichever candidate happened to be timed in a good moment (the winner's curse): the more trials,
the more the best search-time figure overstates what a user gets. So:
1. the k fastest feasible candidates and the baseline are timed again, all in the same interleaved rounds, with
   a tighter interval (a window that falls entirely in a slower state is timed again after a pause, up to
   `attempts` times): that ranks them;
2. every candidate, and the baseline, is scored on validation (the artifact as it is now, rebuilt or kept) and,
   once, on the test split the search never saw; a candidate whose test drop is past the bound is not exported
   (the next one is, and the report says so);
3. the winner (the fastest that beats the baseline beyond its interval and holds on test) is timed alone with
   the baselines in fresh windows spread in time (search/headline.py): that is the figure the report quotes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import optuna

from autocompress.config import SearchSettings
from autocompress.evaluators.device.latency import Interleaved, TimingPolicy
from autocompress.evaluators.measure import CONFIRM_POLICY, score_artifacts, time_together
from autocompress.hardware.profile import HardwareProfile
from autocompress.search.artifacts import baseline_artifact, trial_artifact
from autocompress.search.headline import WINDOW_GAP_S, Headline, time_headline
from autocompress.search.results import BASELINE_ATTR, METRICS_ATTR, metric_drop, top_feasible
from autocompress.task import Task

CONFIRMATION_ATTR = "confirmation"
DEFAULT_CONFIRM = 5
ATTEMPTS = 4  # windows at most, when the machine is in a slower state
log = logging.getLogger(__name__)
Timer = Callable[..., Interleaved]  # time_together's signature
Scorer = Callable[..., list[float]]  # score_artifacts' signature


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
    metric: float | None = None  # validation, scored on the artifact confirmed (kept or rebuilt)
    test_metric: float | None = None  # the held-out split, scored once here
    test_drop: float | None = None  # in the metric's own units, as the validation drop beside it
    test_within_bound: bool | None = None  # None: not checked (no bound given)
    final: Headline | None = None  # the winner only: its figure from fresh windows

    @property
    def beats_baseline(self) -> bool:
        """Faster than the uncompressed model beyond the measurement's interval."""
        return self.ci_low > 1.0

    @property
    def exportable(self) -> bool:
        """Faster beyond the interval, and not past the bound on the test split."""
        return self.beats_baseline and self.test_within_bound is not False


def confirm(
    study: optuna.Study,
    task: Task,
    profile: HardwareProfile,
    k: int = DEFAULT_CONFIRM,
    policy: TimingPolicy = CONFIRM_POLICY,
    timer: Timer = time_together,
    attempts: int = ATTEMPTS,
    retry_gap_s: float | None = None,
    settings: SearchSettings | None = None,
    scorer: Scorer = score_artifacts,
    windows: int | None = None,
    gap_s: float | None = None,
) -> list[Confirmed]:
    """Re-measure the top `k` feasible candidates with the baseline, score them on validation and test, and time
    the winner in `windows` fresh windows (default: `attempts`), `gap_s` apart (default: the settings'
    `confirm_gap_seconds`; twice that before timing the selection again); best confirmed speedup first.

    The result is also stored with the study (attribute `confirmation`), so `export` and reports can show it.
    """
    candidates = top_feasible(study, k)
    if not candidates:
        return []
    paths = [trial_artifact(study, trial, task, profile) for trial in candidates]
    baseline = baseline_artifact(study.study_name, task, profile)
    if settings is not None:
        policy = replace(policy, time_cap_s=settings.confirm_seconds)
    between = settings.confirm_gap_seconds if settings is not None else WINDOW_GAP_S
    gap_s = between if gap_s is None else gap_s
    retry_gap_s = 2 * between if retry_gap_s is None else retry_gap_s
    policy = replace(policy, reference_floor_ms=baseline_floor_ms(study))
    for attempt in range(1, attempts + 1):
        timing = timer(baseline, paths, task, profile, policy)
        slowdown = timing.reference_slowdown
        if slowdown is None or slowdown <= policy.settle_tolerance or attempt == attempts:
            break
        log.info("confirmation: the baseline ran %.0f%% slower than its best in this study (the machine is in a "
                 "slower state); timing again in %.0f s", 100 * slowdown, retry_gap_s)  # fmt: skip
        time.sleep(retry_gap_s)
    scores = _scores(study, task, profile, [baseline, *paths], scorer)
    confirmed = []
    for index, trial in enumerate(candidates, start=1):
        paired, metrics = timing.speedups[index], trial.user_attrs[METRICS_ATTR]
        assert paired is not None
        test_drop = within = None
        if settings is not None:
            test_drop, within = held_out_verdict(scores["baseline_test"], scores["test"][index], settings)
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
                metric=scores["validation"][index],
                test_metric=scores["test"][index],
                test_drop=test_drop,
                test_within_bound=within,
            )
        )
    confirmed.sort(key=lambda item: item.speedup, reverse=True)
    chosen = winner(confirmed)
    if chosen is not None:
        _say_what_test_refused(confirmed, chosen)
        final = time_headline(baseline, paths[[t.number for t in candidates].index(chosen.trial)], chosen.trial,
                              task, profile, policy, timer, windows or attempts, gap_s)  # fmt: skip
        confirmed = [replace(item, final=final) if item is chosen else item for item in confirmed]
    study.set_user_attr(
        CONFIRMATION_ATTR,
        {"at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "device": profile.name,
         "candidates": [as_record(item) for item in confirmed]},
    )  # fmt: skip
    return confirmed


def _scores(study: optuna.Study, task: Task, profile: HardwareProfile, paths: list[Path], scorer: Scorer) -> dict:
    """Validation and test metrics of the baseline and every candidate (paths[0] is the baseline); the baseline's
    test metric, and its metrics under the runtime's default settings, are stored with the study's baseline."""
    scores = {split: scorer(paths, task, profile, split) for split in ("validation", "test")}
    record = dict(study.user_attrs[BASELINE_ATTR])
    record["test_metric"] = scores["test"][0]
    if profile.default_differs and "default_metric" not in record:
        for split, key in (("validation", "default_metric"), ("test", "default_test_metric")):
            record[key] = scorer(paths[:1], task, profile, split, [profile.default_runtime_options])[0]
    study.set_user_attr(BASELINE_ATTR, record)
    scores["baseline_test"] = scores["test"][0]
    return scores


def held_out_verdict(baseline: float, metric: float, settings: SearchSettings) -> tuple[float, bool]:
    """The drop on the test split in the metric's own units (as every reported drop), and whether it is within
    the bound (compared in the bound's units: a fraction of the baseline with `--drop-mode relative`)."""
    return baseline - metric, metric_drop(baseline, metric, settings) <= settings.max_drop


def _say_what_test_refused(confirmed: list[Confirmed], chosen: Confirmed) -> None:
    for item in confirmed:
        if item is chosen:
            return
        if item.beats_baseline and item.test_within_bound is False:
            log.warning("trial %d was faster (%.2fx) but drops %.4f on the test split, past the bound: not exported",
                        item.trial, item.speedup, item.test_drop)  # fmt: skip


def as_record(item: Confirmed) -> dict:
    record = asdict(item)
    record["final"] = None if item.final is None else item.final.as_dict()
    return record


def baseline_floor_ms(study: optuna.Study) -> float | None:
    """The baseline's fastest latency in this study's trials (each trial times it beside its candidate)."""
    timed = [trial.user_attrs[METRICS_ATTR].get("baseline_latency_ms") for trial in study.get_trials(deepcopy=False)
             if METRICS_ATTR in trial.user_attrs]  # fmt: skip
    known = [value for value in timed if value]
    return min(known) if known else None


def winner(confirmed: list[Confirmed]) -> Confirmed | None:
    """The best confirmed candidate among those that beat the baseline beyond their interval and hold the bound
    on the test split; None if none does."""
    exportable = [item for item in confirmed if item.exportable]
    return max(exportable, key=lambda item: item.speedup) if exportable else None
