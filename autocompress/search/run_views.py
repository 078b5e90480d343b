"""What a person sees of a trial in the MLflow UI without opening an artifact: a run name that says what the
trial tried, and its per-layer decisions as an MLflow table (layer, kind, prune ratio, precision). Each step says
its own part (its section's `describe`; an added step's `describe` and `columns`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from autocompress.spaces.added import AddedKnobs, section_of
from autocompress.spaces.graph import QuantLayer
from autocompress.spaces.strategy import Strategy

LAYERS_TABLE = "layers.json"


def run_name(trial_number: int, strategy: Strategy, added: Sequence[AddedKnobs] = ()) -> str:
    """e.g. `t13 prune 0.51 skip 2 int8 14/16 kd150`: mean pruning ratio, blocks skipped, layers per non-fp32
    precision, distillation, then what added steps say of themselves."""
    parts = [f"t{trial_number}", *strategy.prune.describe(), *strategy.quantize.describe()]
    parts += strategy.distill.describe()
    for step in added:
        if step.module in strategy.added:
            parts += step.step.describe(section_of(step.module, strategy.added[step.module])[1])
    return " ".join(parts) if len(parts) > 1 else f"t{trial_number} no compression"


def layer_table(
    strategy: Strategy, layers: tuple[QuantLayer, ...], added: Sequence[AddedKnobs] = ()
) -> dict[str, list[Any]]:
    """One row per Conv/Linear/MatMul layer: its kind, the share of its output channels pruned (the group it
    roots; 0 where it roots none; 1 inside a skipped block), and its precision ("skipped" inside one); then the
    columns added steps give."""
    ratios, prune = strategy.prune.ratios, strategy.prune
    table: dict[str, list[Any]] = {
        "layer": [layer.name for layer in layers],
        "kind": [layer.kind for layer in layers],
        "prune_ratio": [1.0 if prune.skipped(layer.name) else float(ratios.get(layer.name, 0.0)) for layer in layers],
        "precision": [
            "skipped" if prune.skipped(layer.name) else strategy.quantize.precisions.get(layer.name, "fp32")
            for layer in layers
        ],
    }
    for step in added:
        if step.module in strategy.added:
            table |= step.step.columns(section_of(step.module, strategy.added[step.module])[1], layers)
    return table
