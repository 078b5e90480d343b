"""What a person sees of a trial in the MLflow UI without opening an artifact: a run name that says what the
trial tried, and its per-layer decisions as an MLflow table (layer, kind, prune ratio, precision)."""

from __future__ import annotations

from collections import Counter

from autocompress.spaces.graph import QuantLayer
from autocompress.spaces.strategy import Strategy

LAYERS_TABLE = "layers.json"


def run_name(trial_number: int, strategy: Strategy) -> str:
    """e.g. `t13 prune 0.51 skip 2 int8 14/16 kd150`: mean pruning ratio, blocks skipped, layers per non-fp32
    precision, distillation."""
    parts = [f"t{trial_number}"]
    if strategy.prune.mean_ratio > 0:
        parts.append(f"prune {strategy.prune.mean_ratio:.2f}")
    if strategy.prune.skip:
        parts.append(f"skip {len(strategy.prune.skip)}")
    precisions = strategy.quantize.precisions
    for precision, count in sorted(Counter(precisions.values()).items()):
        if precision != "fp32":
            parts.append(f"{precision} {count}/{len(precisions)}")
    if strategy.distill.steps:
        parts.append(f"kd{strategy.distill.steps}")
    return " ".join(parts) if len(parts) > 1 else f"t{trial_number} no compression"


def layer_table(strategy: Strategy, layers: tuple[QuantLayer, ...]) -> dict[str, list]:
    """One row per Conv/Linear/MatMul layer: its kind, the share of its output channels pruned (the group it
    roots; 0 where it roots none; 1 inside a skipped block), and its precision ("skipped" inside one)."""
    ratios, prune = strategy.prune.ratios, strategy.prune
    return {
        "layer": [layer.name for layer in layers],
        "kind": [layer.kind for layer in layers],
        "prune_ratio": [1.0 if prune.skipped(layer.name) else float(ratios.get(layer.name, 0.0)) for layer in layers],
        "precision": [
            "skipped" if prune.skipped(layer.name) else strategy.quantize.precisions.get(layer.name, "fp32")
            for layer in layers
        ],
    }
