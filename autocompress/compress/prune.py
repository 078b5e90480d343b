"""Structured pruning with torch-pruning: whole channels go, so the layers are physically smaller."""

from __future__ import annotations

import copy

import torch
import torch_pruning as tp
from torch import nn

from autocompress.errors import ConfigError
from autocompress.spaces.graph import PRUNABLE_TYPES, fixed_width_layers
from autocompress.spaces.strategy import PruneSettings
from autocompress.task import PruneHints

IMPORTANCES = {
    "l1": lambda: tp.importance.GroupMagnitudeImportance(p=1),
    "l2": lambda: tp.importance.GroupMagnitudeImportance(p=2),
    "fpgm": lambda: tp.importance.FPGMImportance(),
    "bn_scale": lambda: tp.importance.BNScaleImportance(),
}


def prune(
    model: nn.Module,
    example_input: torch.Tensor,
    settings: PruneSettings,
    round_to: int = 1,
    hints: PruneHints | None = None,
) -> nn.Module:
    """A pruned copy of `model`: each group loses `ratios[root]` of its channels, lowest importance first.

    Attention groups (a layer in `hints.num_heads`) lose whole heads: torch-pruning ranks heads only when the
    group also has a non-zero channel ratio, and with `prune_head_dims=False` that ratio removes nothing else.
    """
    pruned = copy.deepcopy(model).eval()
    modules = dict(pruned.named_modules())
    unknown = sorted(set(settings.ratios) - set(modules))
    if unknown:
        raise ConfigError(f"strategy prunes layers this model does not have: {', '.join(unknown[:3])}")
    ratio_by_root = {modules[name]: ratio for name, ratio in settings.ratios.items() if ratio > 0}
    if not ratio_by_root:
        return pruned
    num_heads = {modules[name]: heads for name, heads in (hints.num_heads if hints else {}).items()}
    head_ratios = _head_ratios(pruned, example_input, ratio_by_root, num_heads)
    pruner = tp.pruner.BasePruner(
        pruned,
        example_input,
        importance=IMPORTANCES[settings.importance](),
        pruning_ratio=0.0,
        pruning_ratio_dict=ratio_by_root,
        ignored_layers=fixed_width_layers(pruned, example_input, hints),
        root_module_types=list(PRUNABLE_TYPES),
        round_to=round_to if round_to > 1 and not num_heads else None,
        num_heads=num_heads,
        prune_num_heads=bool(num_heads),
        prune_head_dims=False,
        head_pruning_ratio_dict=head_ratios or None,
    )
    pruner.step()
    if hints is not None and hints.after_prune is not None:
        hints.after_prune(pruned)
    return pruned


def _head_ratios(
    model: nn.Module, example_input: torch.Tensor, ratio_by_root: dict[nn.Module, float], num_heads: dict
) -> dict[nn.Module, float]:
    """Head ratio for each q/k/v layer of an attention group being pruned, nudged down: torch-pruning removes
    ceil(ratio * heads), so a ratio of k/heads landing a hair above it in floating point would remove k + 1."""
    if not num_heads:
        return {}
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example_input)
    ratios: dict[nn.Module, float] = {}
    for root, ratio in ratio_by_root.items():
        if not isinstance(root, PRUNABLE_TYPES):
            continue
        group = graph.get_pruning_group(root, graph.get_pruner_of_module(root).prune_out_channels, idxs=[0])
        members = {item.dep.target.module for item in group}
        for layer in members & set(num_heads):
            ratios[layer] = max(ratio - 1e-6, 0.0)
    return ratios


def parameter_count(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())
