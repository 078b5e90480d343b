"""The exported winner's figure: timed in fresh windows spread in time, against both baselines.

Rounds within one window are autocorrelated (this machine changes state over seconds to minutes), so an
interval over the rounds of one window says how well that window was measured, not how well the speedup is
known: the same artifact gave 9.68x [9.57, 9.81] in one window and 10.76x [9.74, 12.03] in another. And the
window that chose the winner among k candidates flatters it (the winner's curse). So the winner alone is timed
again in `windows` fresh windows, the device's lock released and a pause between them, and the figure is the
geometric mean of the windows' medians with a t-interval over the windows (never narrower than one window's own).

Two baselines share each window: the uncompressed model under the runtime's default settings (what a user who
changes nothing runs: OpenVINO's default inference precision, bf16 where the CPU has it) is the headline; the
fp32-forced model is beside it. Where the runtime's default is fp32 already, the two are one.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy import stats

from autocompress.evaluators.device.latency import Interleaved, SpeedupStats, TimingPolicy
from autocompress.hardware.profile import HardwareProfile
from autocompress.task import Task

log = logging.getLogger(__name__)
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
    noisy_windows: int  # windows with too few settled rounds (left out while at least two calm ones remain)
    settled_share: float  # mean over the windows used
    threads: int
    default_is_fp32: bool  # the runtime's default settings are the fp32 ones here (one baseline, not two)
    latency_ms: float  # the winner's median in the last window used
    default_latency_ms: float
    fp32_latency_ms: float
    gap_s: float

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
    """Time `artifact` with both baselines in `windows` fresh windows, `gap_s` apart (lock released between)."""
    default_is_fp32 = not profile.default_differs
    options = None if default_is_fp32 else [None, None, profile.default_runtime_options]
    extra = [] if default_is_fp32 else [baseline]
    measured: list[Interleaved] = []
    for index in range(windows):
        if index:
            time.sleep(gap_s)
        measured.append(timer(baseline, [artifact, *extra], task, profile, policy, options=options))
    calm = [timing for timing in measured if timing.converged]
    used = calm if len(calm) >= min(2, windows) else measured
    fp32 = [timing.speedups[1] for timing in used]
    default = fp32 if default_is_fp32 else [timing.paired(2, 1) for timing in used]
    last = used[-1]
    log.info("headline: trial %d timed in %d windows (%d calm)", trial, windows, len(calm))
    return Headline(
        trial=trial,
        default=Figure.across([item for item in default if item is not None]),
        fp32=Figure.across([item for item in fp32 if item is not None]),
        windows=len(used),
        noisy_windows=sum(not timing.converged for timing in used),
        settled_share=float(np.mean([timing.settled_share for timing in used])),
        threads=profile.threads,
        default_is_fp32=default_is_fp32,
        latency_ms=last.latencies[1].median_ms,
        default_latency_ms=last.latencies[0 if default_is_fp32 else 2].median_ms,
        fp32_latency_ms=last.latencies[0].median_ms,
        gap_s=gap_s if windows > 1 else 0.0,
    )
