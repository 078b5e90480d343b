"""Candidates from the sensitivity table: an exact multiple-choice knapsack over additive estimates.

Each knob unit offers its measured choices (a precision, a pruning ratio, heads removed), each with a cost (the
metric drop it caused alone) and a value (the share of the baseline's latency it saved alone, paired). Assuming
costs and savings add up (HAQ, AMC and HAWQ-v3 make the same first approximation), dynamic programming finds the
combination that saves the most within a drop budget. Budgets of 1, 2 and 4 times the allowed drop give a spread:
pruning costs were measured without fine-tuning and distillation recovers part of them, so the bolder seeds are
worth measuring too. The real measurement decides; each trial logs how far the estimate was from it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from autocompress.search.sensitivity import Row, Sensitivity
from autocompress.spaces.space import SearchSpace
from autocompress.spaces.strategy import Strategy
from autocompress.spaces.vocabulary import unit_of

BUDGETS = (1.0, 2.0, 4.0)
BINS = 200


@dataclass(frozen=True)
class Seed:
    label: str
    params: dict[str, Any]
    drop: float  # the additive estimate
    speedup: float


def _options(table: Sensitivity) -> dict[tuple[str, str], list[Row]]:
    """Per (kind, unit), the choices that are faster than the baseline beyond their interval."""
    groups: dict[tuple[str, str], list[Row]] = defaultdict(list)
    for row in table.rows:
        if row.speedup_ci[0] > 1.0:
            groups[(row.kind, row.unit)].append(row)
    return groups


def solve(
    table: Sensitivity, budget: float, kinds: tuple[str, ...] = ("precision", "prune", "heads", "skip")
) -> list[Row]:
    """The rows (at most one per unit) with the largest total saving whose total drop is within `budget`."""
    groups = [rows for (kind, _), rows in sorted(_options(table).items()) if kind in kinds]
    step = max(budget, 1e-9) / BINS
    best: dict[int, tuple[float, list[Row]]] = {0: (0.0, [])}
    for rows in groups:
        grown = dict(best)
        for cost, (saving, chosen) in best.items():
            for row in rows:
                total = cost + math.ceil(max(row.drop, 0.0) / step - 1e-9)
                if total <= BINS and saving + row.saving > grown.get(total, (-1.0, []))[0]:
                    grown[total] = (saving + row.saving, [*chosen, row])
        best = grown
    return max(best.values(), key=lambda entry: entry[0])[1]


def params_of(space: SearchSpace, rows: list[Row], distill_steps: int) -> dict[str, Any]:
    """Optuna parameters of a combination of rows (everything else uncompressed), distilled if pruned."""
    precision = {row.unit: row.value for row in rows if row.kind == "precision"}
    ratios = {row.unit: row.value for row in rows if row.kind == "prune"}
    heads = {row.unit: row.value for row in rows if row.kind == "heads"}
    skip = tuple(row.unit for row in rows if row.kind == "skip")
    quantize = space.quantize.unit_params(precision)
    pruned = bool(ratios or heads or skip)
    recover = bool(skip) or (pruned and not space.prune.reconstruct)  # what re-fitting does not repair
    params = {**space.prune.params(ratios, heads, skip), **quantize}
    return params | space.distill.uniform(distill_steps if recover else 0, recover, pruned)


def seeds(space: SearchSpace, table: Sensitivity, allowed_drop: float) -> list[Seed]:
    """A spread of candidates: the best combination within 1, 2 and 4 times the allowed drop, the best
    precisions alone within it, and the best recipe with the pruning that fits half of it; duplicates dropped."""
    most = max(space.distill.distill_steps)
    plans = [(f"sensitivity x{budget:g}", solve(table, budget * allowed_drop)) for budget in BUDGETS]
    plans.append(("sensitivity, precisions only", solve(table, allowed_drop, kinds=("precision",))))
    candidates = [(label, params_of(space, rows, most)) for label, rows in plans if rows]
    candidates += recipe_with_pruning(space, table, allowed_drop, most)
    found: dict[str, Seed] = {}
    for label, params in candidates:
        drop, speedup = estimate(space, table, space.strategy(params))  # a skipped block takes its layers' rows
        found.setdefault(repr(sorted(params.items())), Seed(label, params, drop, speedup))
    return list(found.values())


def recipe_with_pruning(
    space: SearchSpace, table: Sensitivity, allowed_drop: float, distill_steps: int
) -> list[tuple[str, dict[str, Any]]]:
    """The runtime's best one-click recipe with the pruning the table says costs at most half the bound (the
    recipe's own drop is no row of the table: half is left to it). Measured on MiniLM/openvino-cpu: NNCF's
    TRANSFORMER int8 alone 2.84x at fidelity 0.9967; with 12.5% of the FFN channels pruned (re-fitted) 3.04x at
    0.9933, paired in one window. The solver's seeds cannot find it: a recipe is not a sum of per-unit rows."""
    rows = solve(table, allowed_drop / 2, kinds=("prune", "heads"))
    if not space.quantize.recipes or not rows:
        return []
    recipe = space.quantize.recipes[0]
    pruned = {key: value for key, value in params_of(space, rows, distill_steps).items() if "precision/" not in key}
    return [(f"{recipe.label} + sensitivity pruning", pruned | space.quantize.recipe(recipe))]


def estimate(space: SearchSpace, table: Sensitivity, strategy: Strategy) -> tuple[float, float]:
    """The additive estimate of a strategy's drop and speedup from the table (pruning interpolated linearly in
    the ratio; distillation not credited)."""
    by_unit: dict[tuple[str, str], dict[Any, Row]] = defaultdict(dict)
    for row in table.rows:
        by_unit[(row.kind, row.unit)][row.value] = row
    drop = saving = 0.0
    for block in strategy.prune.skip:
        row = by_unit.get(("skip", block), {}).get(True)
        if row is not None:
            drop, saving = drop + max(row.drop, 0.0), saving + row.saving
    for layer, precision in strategy.quantize.precisions.items():
        if strategy.prune.skipped(layer):
            continue
        unit = unit_of(layer, space.granularity)
        row = by_unit.get(("precision", unit), {}).get(precision)
        if row is not None:
            share = 1.0 / sum(1 for name in strategy.quantize.precisions if unit_of(name, space.granularity) == unit)
            drop, saving = drop + max(row.drop, 0.0) * share, saving + row.saving * share
    for group in (group for group in space.prune.groups if not strategy.prune.skipped(group.name)):
        unit, ratio = unit_of(group.name, space.granularity), strategy.prune.ratios.get(group.name, 0.0)
        kind, value = ("heads", round(ratio * group.heads)) if group.heads else ("prune", ratio)
        rows = by_unit.get((kind, unit), {})
        members = sum(1 for g in space.prune.groups if unit_of(g.name, space.granularity) == unit)
        if value and rows:
            step_drop, step_saving = _interpolate(rows, value)
            drop, saving = drop + max(step_drop, 0.0) / members, saving + step_saving / members
    return drop, 1.0 / (1.0 - min(saving, 0.95))


def _interpolate(rows: dict[Any, Row], value: float) -> tuple[float, float]:
    """Drop and saving at `value`, linear through (0, 0) and the measured points (extrapolated from the last)."""
    points = [(0.0, 0.0, 0.0)] + sorted((float(v), r.drop, r.saving) for v, r in rows.items())
    for (x0, d0, s0), (x1, d1, s1) in zip(points, points[1:], strict=False):
        if value <= x1 or (x1, d1, s1) == points[-1]:
            weight = (value - x0) / (x1 - x0) if x1 > x0 else 0.0
            return d0 + weight * (d1 - d0), s0 + weight * (s1 - s0)
    return 0.0, 0.0
