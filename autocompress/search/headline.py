"""The exported winner's figure: timed in fresh windows spread in time, against both baselines.

Rounds within one window are autocorrelated (this machine changes state over seconds to minutes), so an
interval over the rounds of one window says how well that window was measured, not how well the speedup is
known: the same artifact gave 9.68x [9.57, 9.81] in one window and 10.76x [9.74, 12.03] in another. And the
window that chose the winner among k candidates flatters it (the winner's curse). So the winner alone is timed
again in `windows` fresh windows, the device's lock released and a pause between them, and the figure is the
geometric mean of the windows' medians with a t-interval over the windows (never narrower than one window's own).
Each window's figure comes from its rounds in the undisturbed state, judged against floors pooled over all the
windows (the state this machine reaches when nothing else runs; a tiny model is up to 35% slower in the other
state, a large one 12%, so the ratio itself moves with the state).

Two baselines share each window: the uncompressed model under the runtime's default settings (what a user who
changes nothing runs: OpenVINO's default inference precision, bf16 where the CPU has it) is the headline; the
fp32-forced model is beside it. Where the runtime's default is fp32 already, the two are one.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy import stats

from autocompress.evaluators.device.latency import Interleaved, SpeedupStats, TimingPolicy, settled_across
from autocompress.hardware.profile import HardwareProfile
from autocompress.task import Task

log = logging.getLogger(__name__)
UNDISTURBED_ROUNDS = 12  # a window's figure needs this many rounds in the undisturbed state (median CI ranks 2..9)
WINDOW_GAP_S = 10.0  # between fresh windows: long enough for the machine to change state, short for a user
Timer = Callable[..., Interleaved]


@dataclass(frozen=True)
class Figure:
    """A speedup known across windows: geometric mean of the window medians and a 95% interval over windows."""

    speedup: float
    ci_low: float
    ci_high: float
    per_window: list[float] = field(default_factory=list)

    @classmethod
    def across(cls, windows: list[SpeedupStats]) -> Figure:
        values = [item.speedup for item in windows]
        logs = np.log(values)
        centre = float(np.exp(logs.mean()))
        own_low = float(np.median([item.ci_low for item in windows]))
        own_high = float(np.median([item.ci_high for item in windows]))
        if len(values) == 1:
            return cls(centre, own_low, own_high, values)
        half = float(stats.t.ppf(0.975, len(values) - 1) * logs.std(ddof=1) / math.sqrt(len(values)))
        low, high = float(np.exp(logs.mean() - half)), float(np.exp(logs.mean() + half))
        return cls(centre, min(low, own_low), max(high, own_high), values)


@dataclass(frozen=True)
class Headline:
    """The winner's speedup over the runtime's default (the headline) and over fp32, from fresh windows."""

    trial: int
    default: Figure  # over the uncompressed model under the runtime's default settings
    fp32: Figure  # over the fp32-forced uncompressed model
    windows: int  # windows the figures come from
    noisy_windows: int  # windows in the figures with too few settled rounds (0 unless fewer than two were calm)
    settled_share: float  # mean over the windows used
    threads: int
    default_is_fp32: bool  # the runtime's default settings are the fp32 ones here (one baseline, not two)
    latency_ms: float  # the winner's median in the last window used
    default_latency_ms: float
    fp32_latency_ms: float
    gap_s: float
    left_out: int = 0  # windows timed but never in the undisturbed state, so not in the figures

    @property
    def noisy(self) -> bool:
        """Too few calm windows: a figure to re-time, never a headline."""
        return self.windows - self.noisy_windows < min(2, self.windows)

    def report_fields(self) -> dict:
        """How report.json (export and `apply`) states this figure: both baselines, windows, threads, noise."""
        return {
            "speedup": self.default.speedup,
            "speedup_baseline": "runtime default" + (" (fp32 here)" if self.default_is_fp32 else ""),
            "speedup_over_fp32": self.fp32.speedup,
            "speedup_over_fp32_ci": [self.fp32.ci_low, self.fp32.ci_high],
            "windows": self.windows,
            "windows_left_out": self.left_out,
            "window_speedups": self.default.per_window,
            "noisy": self.noisy,
            "threads": self.threads,
            "settled_share": self.settled_share,
            "fp32_baseline_latency_ms": self.fp32_latency_ms,
        }

    def as_dict(self) -> dict:
        return asdict(self) | {"noisy": self.noisy}

    @classmethod
    def from_dict(cls, raw: dict) -> Headline:
        values = {key: value for key, value in raw.items() if key != "noisy"}
        return cls(**values | {"default": Figure(**raw["default"]), "fp32": Figure(**raw["fp32"])})


def time_headline(
    baseline: Path,
    artifact: Path,
    trial: int,
    task: Task,
    profile: HardwareProfile,
    policy: TimingPolicy,
    timer: Timer,
    windows: int = 3,
    gap_s: float = WINDOW_GAP_S,
) -> Headline:
    """Time `artifact` with both baselines in `windows` fresh windows, `gap_s` apart (lock released between;
    `windows_in_calm` says which windows the figures come from)."""
    default_is_fp32 = not profile.default_differs
    options = None if default_is_fp32 else [None, None, profile.default_runtime_options]
    extra = [] if default_is_fp32 else [baseline]
    timed = windows_in_calm(lambda: timer(baseline, [artifact, *extra], task, profile, policy, options=options,
                                          fresh=True), windows, gap_s, policy.settle_tolerance)  # fmt: skip
    measured, used = timed.measured, timed.used
    fp32 = [timing.paired(0, 1) for timing in used]
    default = fp32 if default_is_fp32 else [timing.paired(2, 1) for timing in used]
    last = used[-1]
    log.info("headline: trial %d timed in %d windows, %d in the undisturbed state", trial, len(measured),
             timed.calm)  # fmt: skip
    return Headline(
        trial=trial,
        default=Figure.across(default),
        fp32=Figure.across(fp32),
        windows=len(used),
        noisy_windows=timed.noisy_windows,
        settled_share=timed.settled_share,
        threads=profile.threads,
        default_is_fp32=default_is_fp32,
        left_out=len(measured) - len(used),
        latency_ms=last.latencies[1].median_ms,
        default_latency_ms=last.latencies[0 if default_is_fp32 else 2].median_ms,
        fp32_latency_ms=last.latencies[0].median_ms,
        gap_s=gap_s if windows > 1 else 0.0,
    )


@dataclass(frozen=True)
class Windows:
    """Interleaved measurements of the same artifacts in windows spread in time, and those the figures use."""

    measured: list[Interleaved]
    used: list[Interleaved]  # the undisturbed windows (figures from their settled rounds), else every window
    calm: int  # windows that reached the undisturbed state
    from_calm: bool  # `used` are the undisturbed windows

    @property
    def noisy_windows(self) -> int:
        """Windows in the figures with too few settled rounds (0 unless fewer than two were calm)."""
        return 0 if self.from_calm else len(self.measured) - self.calm

    @property
    def settled_share(self) -> float:
        """Of the rounds in the windows used, the share the figures come from."""
        if self.from_calm:
            return float(np.mean([np.mean(timing.figure_mask) for timing in self.used]))
        return float(np.mean([timing.settled_share for timing in self.used]))


def calm_windows(
    measured: list[Interleaved], tolerance: float, among: Sequence[int] | None = None, wanted: int = 2
) -> Windows:
    """Which of `measured` reached the undisturbed state (at least `UNDISTURBED_ROUNDS` settled rounds, judged
    against floors pooled over all of them) for the artifacts `among` (every one by default), each with the
    figure rounds set; fewer than `wanted` such windows: every window with its own figure (noisy)."""
    needed = min(wanted, len(measured))
    masks = settled_across(measured, tolerance, among)
    undisturbed = [timing.with_figure_mask(mask) for timing, mask in zip(measured, masks, strict=True)
                   if int(mask.sum()) >= UNDISTURBED_ROUNDS]  # fmt: skip
    from_calm = len(undisturbed) >= needed
    return Windows(measured, undisturbed if from_calm else measured, len(undisturbed), from_calm)


def windows_in_calm(
    measure: Callable[[], Interleaved],
    windows: int,
    gap_s: float,
    tolerance: float,
    groups: Sequence[Sequence[int]] | None = None,
) -> Windows:
    """`measure` in `windows` fresh windows, `gap_s` apart; rounds are judged settled against each artifact's
    floor over all the windows, so every window's figure is of the same (undisturbed) machine state. A window
    that never reached it is left out, and up to `windows` more are timed while fewer than two reached it; with
    too few such windows, every window is used with its own figure (noisy). `groups`: the artifacts each figure
    compares, judged apart (`calm_windows(..., among=group)`); by default all of them together."""
    needed = min(2, windows)
    measured: list[Interleaved] = []
    while True:
        if measured:
            time.sleep(gap_s)
        measured.append(measure())
        calm = min(calm_windows(measured, tolerance, group).calm for group in (groups or [None]))
        if len(measured) >= windows and (calm >= needed or len(measured) >= 2 * windows):
            return calm_windows(measured, tolerance, wanted=needed)
