"""Sensitivity analysis: what each single choice costs in metric and buys in speed, measured on the device.

For every knob unit of the space, each of its choices alone (one unit at int8, one channel group pruned by a
quarter or a half, or one block skipped, with no fine-tuning), everything else untouched: the artifact is built for
the device, its metric measured in the runtime, and then all of them are timed together with the baseline in the same
interleaved rounds, so every saving in the table comes from one window (HAQ, AMC and HAWQ-v3 start from such
per-layer tables). The table seeds the search (search/seeds.py) and is cached in the study.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from autocompress.compress.pipeline import build
from autocompress.errors import TrialError
from autocompress.evaluators.device.latency import TimingPolicy
from autocompress.evaluators.measure import CONFIRM_POLICY, measure_artifact, time_together
from autocompress.hardware.profile import HardwareProfile
from autocompress.spaces.space import SearchSpace
from autocompress.spaces.strategy import Strategy
from autocompress.task import Task

log = logging.getLogger(__name__)
SENSITIVITY_ATTR = "sensitivity"
SCORE_ONLY = TimingPolicy(warmup_runs=0, slot_s=0.0, min_rounds=1, max_rounds=1, time_cap_s=0.0)


@dataclass(frozen=True)
class Choice:
    """One unit at one value: a precision, a channel ratio removed, or a number of heads removed."""

    kind: str  # its knob's kind: "precision", "prune", "heads", "skip" or an added step's
    unit: str
    value: Any

    @property
    def label(self) -> str:
        if self.kind == "prune":
            return f"{self.unit}: {self.value * 100:g}%"
        if self.kind == "skip":
            return f"{self.unit}: skipped"
        if self.kind == "heads":
            return f"{self.unit}: -{self.value} heads"
        return f"{self.unit or self.kind}: {self.value}"  # a model-wide knob (an added step's) by its kind


@dataclass(frozen=True)
class Row:
    """What one choice alone measured: its metric and drop, its paired speedup over the baseline, its size."""

    kind: str
    unit: str
    value: Any
    metric: float
    drop: float
    speedup: float
    speedup_ci: tuple[float, float]
    size_bytes: int

    @property
    def saving(self) -> float:
        """The fraction of the baseline's latency this choice removes (negative: it slows the model down)."""
        return 1.0 - 1.0 / self.speedup


def choices(space: SearchSpace) -> list[Choice]:
    """Every single choice worth measuring: each knob's probes (its step says which: each non-fp32 precision per
    unit, two ratios per channel group, one head and the most heads per attention unit, each skippable block)."""
    return [Choice(knob.kind, knob.unit, value) for knob, value in space.probes()]


def strategy_of(space: SearchSpace, choice: Choice) -> Strategy:
    """The strategy changing only this choice (no distillation: the cost of the choice itself)."""
    return space.alone(space.knob(choice.kind, choice.unit), choice.value)


def in_turns(found: list[Choice]) -> list[int]:
    """The order to build choices in: the kinds take turns (one precision, one pruning ratio, one skipped block,
    ...), so that a table cut short by its time budget still holds some of each kind."""
    queues: dict[str, list[int]] = {}
    for index, choice in enumerate(found):
        queues.setdefault(choice.kind, []).append(index)
    order: list[int] = []
    while len(order) < len(found):
        order += [queue.pop(0) for queue in queues.values() if queue]
    return order


@dataclass
class Sensitivity:
    """The table, and what it took to measure (`unmeasured`: choices its time budget left out)."""

    rows: list[Row]
    baseline_metric: float
    seconds: float
    rounds: int
    unmeasured: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"rows": [asdict(row) for row in self.rows], "baseline_metric": self.baseline_metric,
                "seconds": self.seconds, "rounds": self.rounds, "unmeasured": self.unmeasured}  # fmt: skip

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Sensitivity:
        rows = [Row(**{**row, "speedup_ci": tuple(row["speedup_ci"])}) for row in raw["rows"]]
        return cls(rows, raw["baseline_metric"], raw["seconds"], raw["rounds"], raw.get("unmeasured", 0))


def analyse(
    task: Task,
    profile: HardwareProfile,
    space: SearchSpace,
    baseline: Path,
    baseline_metric: float,
    workdir: Path,
    policy: TimingPolicy = CONFIRM_POLICY,
    budget_s: float | None = None,
) -> Sensitivity:
    """Build and score every single choice, then time them all with the baseline in one interleaved window.

    With `budget_s`, building stops once that much time has gone (after at least one choice), the kinds taking
    turns so the partial table still seeds every kind; the rows keep the table's usual order."""
    started = time.monotonic()
    found = choices(space)
    measured: list[tuple[Choice, Path, float, int]] = []
    tried = 0
    try:
        for index in in_turns(found) if budget_s is not None else range(len(found)):
            if budget_s is not None and measured and time.monotonic() - started > budget_s:
                break
            tried += 1
            choice = found[index]
            try:
                artifact = build(task, strategy_of(space, choice), profile, workdir / f"{index:03d}").path
                scored = measure_artifact(artifact, task, profile, policy=SCORE_ONLY)
            except TrialError as error:  # a choice the device cannot take is simply not in the table
                log.warning("sensitivity: %s failed: %s", choice.label, error)
                continue
            measured.append((choice, artifact, scored.metric, scored.size_bytes))
        measured.sort(key=lambda item: found.index(item[0]))
        if tried < len(found):
            log.warning("sensitivity: its share of the time budget (%.0f s) measured %d of %d choices; the seeds "
                        "come from those", budget_s, tried, len(found))  # fmt: skip
        if not measured:
            return Sensitivity([], baseline_metric, time.monotonic() - started, 0, len(found) - tried)
        timing = time_together(baseline, [path for _, path, _, _ in measured], task, profile, policy)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    rows = []
    for index, (choice, _, metric, size) in enumerate(measured, start=1):
        paired = timing.speedups[index]
        assert paired is not None
        rows.append(Row(choice.kind, choice.unit, choice.value, metric, baseline_metric - metric, paired.speedup,
                        (paired.ci_low, paired.ci_high), size))  # fmt: skip
    return Sensitivity(rows, baseline_metric, time.monotonic() - started, timing.rounds, len(found) - tried)
