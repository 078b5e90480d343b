"""Candidates from the sensitivity table: an exact multiple-choice knapsack over additive estimates.

Each knob unit offers its measured choices (a precision, a pruning ratio, heads removed), each with a cost (the
metric drop it caused alone) and a value (the share of the baseline's latency it saved alone, paired). Assuming
costs and savings add up (HAQ, AMC and HAWQ-v3 make the same first approximation), dynamic programming finds the
combination that saves the most within a drop budget. Budgets of 1, 2 and 4 times the allowed drop give a spread:
pruning costs were measured without fine-tuning and distillation recovers part of them, so the bolder seeds are
worth measuring too. The real measurement decides; each trial logs how far the estimate was from it.

One saving does not add: the runtime's compute precision (OpenVINO's bf16 for everything left in float) speeds up
the same layers that per-layer int8 speeds up, and an int8 layer no longer computes in bf16. Measured on
MiniLM/openvino-cpu (AVX-512 bf16 EPYC): bf16 alone 1.72x, NNCF int8 alone 2.73x, both 2.54x; the sum of their
savings (1.05 of the latency) would have put bf16 compute into every seed. So the seeds treat the two as
alternatives (the better plan of each budget is kept), and the estimate counts the larger of the two savings.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass, replace
from typing import Any

from autocompress.compress.quantize import RUNTIME_UNIT
from autocompress.search.sensitivity import Row, Sensitivity
from autocompress.spaces.knobs import Knob, without
from autocompress.spaces.space import SearchSpace
from autocompress.spaces.strategy import Strategy

BUDGETS = (1.0, 2.0, 4.0)
BINS = 200


@dataclass(frozen=True)
class Seed:
    label: str
    params: dict[str, Any]
    drop: float  # the additive estimate
    speedup: float
    refines_recipe: bool = False  # the runtime's recipe with pruning: queued before the pruned warm starts


def _options(table: Sensitivity) -> dict[tuple[str, str], list[Row]]:
    """Per (kind, unit), the choices that are faster than the baseline beyond their interval."""
    groups: dict[tuple[str, str], list[Row]] = defaultdict(list)
    for row in table.rows:
        if row.speedup_ci[0] > 1.0:
            groups[(row.kind, row.unit)].append(row)
    return groups


def solve(table: Sensitivity, budget: float, kinds: Collection[str] | None = None) -> list[Row]:
    """The rows (at most one per unit) with the largest total saving whose total drop is within `budget` (rows
    of `kinds` only; None: every kind)."""
    groups = [rows for (kind, _), rows in sorted(_options(table).items()) if kinds is None or kind in kinds]
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


def solve_alternatives(table: Sensitivity, budget: float, kinds: Collection[str] | None = None) -> list[Row]:
    """`solve` with the runtime's compute precision and the per-layer precisions as alternatives (module doc):
    the plan without the runtime's row and the plan without the per-layer precision rows, whichever saves more."""
    runtime = [row for row in table.rows if row.unit == RUNTIME_UNIT]
    if not runtime:
        return solve(table, budget, kinds)
    shared_kinds = {row.kind for row in runtime}  # precision: the per-layer rows it overlaps
    without_runtime = replace(table, rows=[row for row in table.rows if row.unit != RUNTIME_UNIT])
    runtime_only = replace(table, rows=[row for row in table.rows if row.kind not in shared_kinds or row in runtime])
    plans = [solve(without_runtime, budget, kinds), solve(runtime_only, budget, kinds)]
    return max(plans, key=lambda rows: sum(row.saving for row in rows))


def params_of(space: SearchSpace, rows: list[Row], distill_steps: int) -> dict[str, Any]:
    """Optuna parameters of a combination of rows (everything else uncompressed), distilled if pruned beyond what
    re-fitting repairs."""
    return space.params_for({space.knob(row.kind, row.unit): row.value for row in rows}, distill_steps)


def _kinds(knobs: list[Knob]) -> set[str]:
    return {knob.kind for knob in knobs if knob.probes}


def seeds(space: SearchSpace, table: Sensitivity, allowed_drop: float) -> list[Seed]:
    """A spread of candidates: the best recipe with the pruning that fits half the allowed drop, then the best
    combination within 1, 2 and 4 times it, and the best precisions alone within it; duplicates dropped.
    The recipe's seed comes first, and is queued before the pruned warm starts (search/candidates.py): it won all
    three MiniLM/openvino-cpu searches at equal budget, and a 5-minute MiniLM/cpu search ran out after x1 and x2
    (1.34-1.81x), four seeds before it, while the recipe alone measured 2.14x there."""
    most = space.hand_made_steps  # the most, or an elastic model's least (spaces/space.py)
    plans = [(f"sensitivity x{budget:g}", solve_alternatives(table, budget * allowed_drop)) for budget in BUDGETS]
    precisions = _kinds(space.quantize.knobs())
    plans.append(("sensitivity, precisions only", solve_alternatives(table, allowed_drop, kinds=precisions)))
    candidates = [(label, params, True) for label, params in recipe_with_pruning(space, table, allowed_drop, most)]
    candidates += [(label, params_of(space, rows, most), False) for label, rows in plans if rows]
    found: dict[str, Seed] = {}
    for label, params, refines in candidates:
        drop, speedup = estimate(space, table, space.strategy(params))  # a skipped block takes its layers' rows
        found.setdefault(repr(sorted(params.items())), Seed(label, params, drop, speedup, refines))
    return list(found.values())


def recipe_with_pruning(
    space: SearchSpace, table: Sensitivity, allowed_drop: float, distill_steps: int
) -> list[tuple[str, dict[str, Any]]]:
    """The runtime's best one-click recipe with the pruning the table says costs at most half the bound (the
    recipe's own drop is no row of the table: half is left to it). Measured on MiniLM/openvino-cpu: NNCF's
    TRANSFORMER int8 alone 2.84x at fidelity 0.9967; with 12.5% of the FFN channels pruned (re-fitted) 3.04x at
    0.9933, paired in one window. The solver's seeds cannot find it: a recipe is not a sum of per-unit rows."""
    widths = _kinds(space.prune.ratio_knobs()) | _kinds(space.prune.head_knobs())
    rows = solve(table, allowed_drop / 2, kinds=widths)
    if not space.quantize.recipes or not rows:
        return []
    recipe = space.quantize.recipes[0]
    pruned = without(params_of(space, rows, distill_steps), space.quantize.precision_knobs())
    return [(f"{recipe.label} + sensitivity pruning", pruned | space.quantize.recipe(recipe))]


def estimate(space: SearchSpace, table: Sensitivity, strategy: Strategy) -> tuple[float, float]:
    """The additive estimate of a strategy's drop and speedup from the table (pruning interpolated linearly in
    the ratio; distillation not credited; the runtime's compute precision and per-layer precisions overlap, so
    the larger of their savings counts: module doc)."""
    by_unit: dict[tuple[str, str], dict[Any, Row]] = defaultdict(dict)
    for row in table.rows:
        by_unit[(row.kind, row.unit)][row.value] = row
    runtime_kinds = {row.kind for row in table.rows if row.unit == RUNTIME_UNIT}
    drop = saving = 0.0
    overlapping: dict[str, float] = {}  # the savings that do not add: the runtime's, the per-layer precisions'
    for term in space.terms(strategy):  # each step says what its section sets (e.g. a layer's share of its unit)
        rows = by_unit.get((term.kind, term.unit), {})
        if term.interpolate and term.value and rows:
            term_drop, term_saving = _interpolate(rows, term.value)
        elif not term.interpolate and term.value in rows:
            term_drop, term_saving = rows[term.value].drop, rows[term.value].saving
        else:
            continue
        drop += max(term_drop, 0.0) * term.weight
        if term.kind in runtime_kinds:
            key = "runtime" if term.unit == RUNTIME_UNIT else "layers"
            overlapping[key] = overlapping.get(key, 0.0) + term_saving * term.weight
        else:
            saving += term_saving * term.weight
    saving += max(overlapping.values()) if "runtime" in overlapping else overlapping.get("layers", 0.0)
    return drop, 1.0 / (1.0 - min(saving, 0.95))


def _interpolate(rows: dict[Any, Row], value: float) -> tuple[float, float]:
    """Drop and saving at `value`, linear through (0, 0) and the measured points (extrapolated from the last)."""
    points = [(0.0, 0.0, 0.0)] + sorted((float(v), r.drop, r.saving) for v, r in rows.items())
    for (x0, d0, s0), (x1, d1, s1) in zip(points, points[1:], strict=False):
        if value <= x1 or (x1, d1, s1) == points[-1]:
            weight = (value - x0) / (x1 - x0) if x1 > x0 else 0.0
            return d0 + weight * (d1 - d0), s0 + weight * (s1 - s0)
    return 0.0, 0.0
