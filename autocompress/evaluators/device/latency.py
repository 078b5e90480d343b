"""Latency you can trust on a shared machine: artifacts timed in interleaved rounds, speedups as paired ratios.

A machine that drifts 10-30% over minutes makes a median measured now, divided by a baseline measured earlier,
meaningless. So every artifact of one measurement is timed in the same window: each round gives every artifact
a short slot (a few dozen calls, in a fresh random order per round), a slot's median is that artifact's latency
in that round, and a candidate's speedup in a round is the reference's slot median over its own. The speedup is
the median of those per-round ratios, with a distribution-free confidence interval from order statistics over
the rounds (no normality assumed; a round hit by a context switch is just one rank). Rounds go on until every
interval is within the target width, or a time cap; one that is still wide is measured once more (the rounds
pooled) and then flagged noisy.

A shared machine also has states: on this 2-vCPU VM, two-thread inference is bimodal, every artifact 15-30% slower
for seconds to minutes at a time, and the pair's ratio moves with it (4.25x in one state, 3.75x in the other,
each stable within 2%). A median over a mixture of states is as unstable as the mixture. So each round gets a
state from each artifact's slot median over that artifact's own floor (a low percentile of its slot medians),
and the figures come from the *settled* rounds, those in which every artifact is within `settle_tolerance` of its
floor: the machine at its undisturbed speed, what a dedicated device gives. Each artifact is judged against its
own floor, so a slowdown that hits only the baseline (or only a candidate) removes the round instead of being
averaged into a "calm" one and biasing the ratio. A window with fewer settled rounds than `min_rounds` takes its
figures from every round and is flagged noisy: never a headline. The other rounds' ratio is
kept too (`unsettled_speedup`), and `settled_share` says how often the machine was undisturbed. Given the
reference's floor from earlier measurements (`reference_floor_ms`), a measurement also says whether the whole
window ran in a slower state (`reference_slowdown`), so a caller can wait and time again.

Absolute latencies are kept too (every call's time in the settled rounds), but only ratios within one
measurement are comparable: that is what the search optimises and what reports call a speedup.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np


@dataclass(frozen=True)
class LatencyStats:
    """Milliseconds per call over every timed call; `noisy` when the measurement never reached its target."""

    median_ms: float
    p90_ms: float
    mean_ms: float
    std_ms: float
    ci_low_ms: float
    ci_high_ms: float
    n: int
    noisy: bool

    @property
    def ci_half_width_ms(self) -> float:
        return (self.ci_high_ms - self.ci_low_ms) / 2

    def as_dict(self) -> dict[str, float | int | bool]:
        return asdict(self)


@dataclass(frozen=True)
class SpeedupStats:
    """Reference latency / candidate latency: the median of per-round ratios and its 95% interval."""

    speedup: float
    ci_low: float
    ci_high: float
    rounds: int  # settled rounds, those the figures come from
    noisy: bool
    settled_share: float = 1.0  # settled rounds / all rounds
    unsettled_speedup: float | None = None  # the ratio in the other rounds (None with fewer than 3 of them)

    @property
    def rel_half_width(self) -> float:
        return (self.ci_high - self.ci_low) / 2 / self.speedup

    def as_dict(self) -> dict[str, float | int | bool]:
        return asdict(self)


@dataclass(frozen=True)
class TimingPolicy:
    """How long to measure: rounds until each interval's half-width is within `target_rel_ci` of its value."""

    warmup_runs: int = 10
    slot_s: float = 0.02  # time each artifact gets per round: short enough that drift within a round is small
    min_rounds: int = 12
    max_rounds: int = 2000
    target_rel_ci: float = 0.02
    time_cap_s: float = 4.0  # per attempt; a measurement still too wide at the cap gets one more attempt
    seed: int = 0
    settle_tolerance: float = 0.07  # a round is settled within this of the floor (the states differ by ~20%)
    reference_floor_ms: float | None = None  # the reference's undisturbed slot median, known from earlier


@dataclass(frozen=True)
class Interleaved:
    """What one interleaved measurement gives: per artifact its latency, and its speedup over artifact 0."""

    latencies: list[LatencyStats]
    speedups: list[SpeedupStats | None]  # None for the reference itself (and when there is only one artifact)
    rounds: int  # all rounds, settled or not
    reference_floor_ms: float = 0.0  # the reference's floor in this measurement
    reference_slowdown: float | None = None  # that floor over `TimingPolicy.reference_floor_ms`, minus 1
    slot_medians: list[list[float]] | None = None  # per artifact, per round (seconds): any pair can be formed
    figure_mask: list[bool] | None = None  # the rounds the figures come from
    converged: bool = True

    def paired(self, reference: int, candidate: int) -> SpeedupStats:
        """Artifact `reference`'s latency over artifact `candidate`'s, per round, over the figure rounds: e.g. a
        candidate against a second baseline timed in the same window."""
        if self.slot_medians is None or self.figure_mask is None:
            raise ValueError("this measurement kept no per-round figures")
        mask = np.asarray(self.figure_mask, dtype=bool)
        return _speedup(self.slot_medians[reference], self.slot_medians[candidate], mask, not self.converged,
                        self.settled_share)  # fmt: skip

    def with_figure_mask(self, mask: Sequence[bool]) -> Interleaved:
        """The same measurement with its figures taken from other rounds (e.g. settled against floors pooled
        over several windows)."""
        return replace(self, figure_mask=[bool(keep) for keep in mask])

    @property
    def settled_share(self) -> float:
        first = next((item for item in self.speedups if item is not None), None)
        return first.settled_share if first is not None else 1.0

    def as_dict(self) -> dict[str, object]:
        return {
            "latencies": [stats.as_dict() for stats in self.latencies],
            "speedups": [None if stats is None else stats.as_dict() for stats in self.speedups],
            "rounds": self.rounds,
            "reference_floor_ms": self.reference_floor_ms,
            "reference_slowdown": self.reference_slowdown,
            "slot_medians": self.slot_medians,
            "figure_mask": self.figure_mask,
            "converged": self.converged,
        }

    @classmethod
    def from_dict(cls, raw: dict) -> Interleaved:
        return cls(
            [LatencyStats(**item) for item in raw["latencies"]],
            [None if item is None else SpeedupStats(**item) for item in raw["speedups"]],
            int(raw["rounds"]),
            float(raw.get("reference_floor_ms", 0.0)),
            raw.get("reference_slowdown"),
            raw.get("slot_medians"),
            raw.get("figure_mask"),
            bool(raw.get("converged", True)),
        )


def median_ci_ranks(n: int, confidence: float = 0.95) -> tuple[int, int]:
    """0-based ranks (low, high) of the sorted samples that bracket the median with at least `confidence`: exact
    binomial ranks (the number of samples below the median is Binomial(n, 1/2)), not a normal approximation.
    With too few samples for that confidence, the extremes."""
    if n < 1:
        raise ValueError("no samples")
    alpha = (1 - confidence) / 2
    log_norm = math.lgamma(n + 1) - n * math.log(2)
    start = max(0, int(n / 2 - 3 * math.sqrt(n)))  # below it lies less than 1e-9 of the mass: a few dozen terms
    at_most, low = 0.0, 0
    for k in range(start, n // 2 + 1):  # the largest k with P(X <= k) <= alpha: ranks k and n-1-k cover the median
        at_most += math.exp(log_norm - math.lgamma(k + 1) - math.lgamma(n - k + 1))
        if at_most > alpha:
            low = max(k - 1, 0)
            break
    return low, n - 1 - low


def median_ci(samples: Sequence[float] | np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """CI of the median from order statistics at exact binomial ranks (distribution-free)."""
    ordered = np.sort(np.asarray(samples, dtype=float))
    low, high = median_ci_ranks(len(ordered), confidence)
    return float(ordered[low]), float(ordered[high])


def summarize(samples_s: Sequence[float] | np.ndarray, noisy: bool) -> LatencyStats:
    samples = np.asarray(samples_s, dtype=float) * 1e3
    low, high = median_ci(samples)
    return LatencyStats(
        median_ms=float(np.median(samples)),
        p90_ms=float(np.percentile(samples, 90)),
        mean_ms=float(np.mean(samples)),
        std_ms=float(np.std(samples, ddof=1)) if len(samples) > 1 else 0.0,
        ci_low_ms=low,
        ci_high_ms=high,
        n=len(samples),
        noisy=noisy,
    )


FLOOR_PERCENTILE = 10  # an artifact's floor: low enough to be the undisturbed state, above a lone lucky slot


def floors(slot_medians: Sequence[Sequence[float]]) -> np.ndarray:
    """Each artifact's undisturbed slot median: a low percentile of its slot medians."""
    return np.percentile(np.asarray(slot_medians, dtype=float), FLOOR_PERCENTILE, axis=1)


def settled(slot_medians: Sequence[Sequence[float]], tolerance: float) -> np.ndarray:
    """Mask of the rounds the machine ran undisturbed: every artifact's slot median within `tolerance` of its own
    floor. (Averaging the excess over artifacts would keep a round in which only the baseline ran slow.)"""
    matrix = np.log(np.asarray(slot_medians, dtype=float))
    excess = (matrix - np.log(floors(slot_medians))[:, None]).max(axis=0)
    return (excess <= math.log1p(tolerance)) | (excess <= excess.min())  # never empty


def settled_across(
    windows: Sequence[Interleaved], tolerance: float, among: Sequence[int] | None = None
) -> list[np.ndarray]:
    """Per window, its settled rounds judged against each artifact's floor over *all* the windows. A window that
    spent all its time in the slow state has no rounds near those floors, where its own floor would have called
    every round settled and put a slow-state ratio beside fast-state ones.

    `among`: the artifacts a figure compares, which must each be calm, in a round whose median artifact is calm
    too (the machine in its undisturbed state, so that every figure of the loop comes from the same state). With
    a dozen artifacts in a loop, rounds with every one calm at once are rare even on a quiet machine (each slot
    has its own chance of a slow run: 2-13% of MiniLM's rounds on openvino-cpu); by default all must be calm."""
    pooled = np.concatenate([np.asarray(window.slot_medians, dtype=float) for window in windows], axis=1)
    log_floors = np.log(floors(pooled))[:, None]
    limit = math.log1p(tolerance)
    chosen = slice(None) if among is None else list(among)
    masks = []
    for window in windows:
        excess = np.log(np.asarray(window.slot_medians, dtype=float)) - log_floors
        masks.append((excess[chosen].max(axis=0) <= limit) & (np.median(excess, axis=0) <= limit))
    return masks


def figure_rounds(slot_medians: Sequence[Sequence[float]], policy: TimingPolicy) -> np.ndarray:
    """Mask of the rounds the figures come from: the settled ones; every round when fewer than `min_rounds`
    settled (a machine disturbed throughout the window: one calm round is no figure, and its interval would
    collapse to a point), the measurement then being noisy anyway."""
    mask = settled(slot_medians, policy.settle_tolerance)
    return mask if int(mask.sum()) >= policy.min_rounds else np.ones_like(mask)


def _speedup(
    reference: list[float], candidate: list[float], mask: np.ndarray, noisy: bool, settled_share: float
) -> SpeedupStats:
    ratios = np.asarray(reference) / np.asarray(candidate)
    chosen, others = ratios[mask], ratios[~mask]
    low, high = median_ci(chosen)
    unsettled = float(np.median(others)) if len(others) >= 3 else None
    return SpeedupStats(float(np.median(chosen)), low, high, len(chosen), noisy, settled_share, unsettled)


def _rel_half_width(values: list[float]) -> float:
    low, high = median_ci(values)
    return (high - low) / 2 / float(np.median(values))


class _Rounds:
    """The state of one interleaved measurement: each artifact's calls per slot, its samples and slot medians."""

    def __init__(self, calls: Sequence[Callable[[], object]], policy: TimingPolicy) -> None:
        self.calls = calls
        self.policy = policy
        self.order = random.Random(policy.seed)
        self.samples: list[list[list[float]]] = [[] for _ in calls]  # per artifact, per round
        self.slot_medians: list[list[float]] = [[] for _ in calls]
        self.per_slot = [self._calls_per_slot(call) for call in calls]

    def _calls_per_slot(self, call: Callable[[], object]) -> int:
        for _ in range(self.policy.warmup_runs):
            call()
        probe = []
        for _ in range(5):
            start = time.perf_counter()
            call()
            probe.append(time.perf_counter() - start)
        return int(min(10_000, max(3, math.ceil(self.policy.slot_s / max(float(np.median(probe)), 1e-7)))))

    def run_round(self) -> None:
        indices = list(range(len(self.calls)))
        self.order.shuffle(indices)
        clock = time.perf_counter
        for index in indices:
            call = self.calls[index]
            call()  # untimed: the switch from another artifact evicted this one's weights from the caches
            slot = []
            for _ in range(self.per_slot[index]):
                start = clock()
                call()
                slot.append(clock() - start)
            self.samples[index].append(slot)
            self.slot_medians[index].append(float(np.median(slot)))

    @property
    def rounds(self) -> int:
        return len(self.slot_medians[0])

    def settled(self) -> np.ndarray:
        return settled(self.slot_medians, self.policy.settle_tolerance)

    def widths(self) -> list[float]:
        """Relative half-widths of what the measurement reports: each speedup, or the lone artifact's median,
        over the settled rounds."""
        mask = self.settled()
        reference = np.asarray(self.slot_medians[0])[mask]
        if len(self.calls) == 1:
            return [_rel_half_width(list(reference))]
        return [_rel_half_width(list(reference / np.asarray(medians)[mask])) for medians in self.slot_medians[1:]]

    def converged(self) -> bool:
        if self.rounds < self.policy.min_rounds or int(self.settled().sum()) < self.policy.min_rounds:
            return False
        return max(self.widths()) <= self.policy.target_rel_ci

    def attempt(self) -> bool:
        """Rounds until converged, the time cap or max_rounds; True when converged."""
        deadline = time.perf_counter() + self.policy.time_cap_s
        while self.rounds < self.policy.max_rounds:
            self.run_round()
            if self.converged():
                return True
            if time.perf_counter() > deadline:
                return False
        return self.converged()


def measure_interleaved(calls: Sequence[Callable[[], object]], policy: TimingPolicy | None = None) -> Interleaved:
    """Time `calls` (calls[0] is the reference) in interleaved rounds; a second attempt if the first stays wide."""
    if not calls:
        raise ValueError("nothing to time")
    policy = policy or TimingPolicy()
    state = _Rounds(calls, policy)
    converged = state.attempt() or state.attempt()
    mask = figure_rounds(state.slot_medians, policy)
    settled_share = float(state.settled().mean())
    settled_samples = [np.concatenate([slot for slot, keep in zip(slots, mask, strict=True) if keep])
                       for slots in state.samples]  # fmt: skip
    latencies = [summarize(samples, noisy=not converged) for samples in settled_samples]
    speedups: list[SpeedupStats | None] = [None]
    speedups += [_speedup(state.slot_medians[0], medians, mask, not converged, settled_share)
                 for medians in state.slot_medians[1:]]  # fmt: skip
    floor_ms = float(floors(state.slot_medians)[0]) * 1e3
    known = policy.reference_floor_ms
    slowdown = floor_ms / known - 1 if known else None
    return Interleaved(latencies, speedups, state.rounds, floor_ms, slowdown, state.slot_medians,
                       [bool(keep) for keep in mask], converged)  # fmt: skip


def measure(run: Callable[[], object], policy: TimingPolicy | None = None) -> LatencyStats:
    """One artifact alone (e.g. the baseline's absolute latency): rounds of slots until its median is pinned."""
    return measure_interleaved([run], policy).latencies[0]
