"""Structured pruning with torch-pruning: whole channels go, so the layers are physically smaller."""

from __future__ import annotations

import copy

import torch
import torch_pruning as tp
from torch import nn

from autocompress.errors import ConfigError
from autocompress.spaces.graph import PRUNABLE_TYPES, output_layers
from autocompress.spaces.strategy import PruneSettings

IMPORTANCES = {
    "l1": lambda: tp.importance.GroupMagnitudeImportance(p=1),
    "l2": lambda: tp.importance.GroupMagnitudeImportance(p=2),
    "fpgm": lambda: tp.importance.FPGMImportance(),
    "bn_scale": lambda: tp.importance.BNScaleImportance(),
}


def prune(model: nn.Module, example_input: torch.Tensor, settings: PruneSettings, round_to: int = 1) -> nn.Module:
    """A pruned copy of `model`: each group loses `ratios[root]` of its channels, lowest importance first."""
    pruned = copy.deepcopy(model).eval()
    modules = dict(pruned.named_modules())
    unknown = sorted(set(settings.ratios) - set(modules))
    if unknown:
        raise ConfigError(f"strategy prunes layers this model does not have: {', '.join(unknown[:3])}")
    ratio_by_root = {modules[name]: ratio for name, ratio in settings.ratios.items() if ratio > 0}
    if not ratio_by_root:
        return pruned
    pruner = tp.pruner.BasePruner(
        pruned,
        example_input,
        importance=IMPORTANCES[settings.importance](),
        pruning_ratio=0.0,
        pruning_ratio_dict=ratio_by_root,
        ignored_layers=output_layers(pruned, example_input),
        root_module_types=list(PRUNABLE_TYPES),
        round_to=round_to if round_to > 1 else None,
    )
    pruner.step()
    return pruned


def parameter_count(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())
