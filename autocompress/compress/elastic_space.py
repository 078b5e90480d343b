"""The elastic space: which dimensions of a model may shrink, to which widths, and which blocks may be skipped.

Why its own data: trials of a "train once, search many" study choose among the widths the elastic model was
trained at, and the cache key of the trained weights is computed from this description. It is derived from the
dependency graph the rest of the project already uses (spaces/graph.py): each torch-pruning channel group is a
dimension (attention groups shrink by whole heads, a transformer's FFN is an ordinary channel group), and a
skippable block is depth-elastic only where skipping it leaves every other group as it was.

Worked example (the digits ResNet): the group rooted at `stem.0` (the 32-channel residual stream of stage 1) is a
"channels" dimension of size 32 with widths (32, 24, 16, 8); `stage1.0` is a block that may be skipped. A
configuration keeps a prefix of each dimension: `ElasticConfig({"stem.0": 16}, skip=("stage1.0",))`.
"""

from __future__ import annotations

import copy
import logging
import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch_pruning as tp
from torch import nn

from autocompress.compress.prune import SkippedBlock
from autocompress.errors import ConfigError
from autocompress.spaces.graph import (
    PRUNABLE_TYPES,
    dependency_graph,
    fixed_width_layers,
    prune_groups,
    skippable_blocks,
)
from autocompress.task import PruneHints

log = logging.getLogger(__name__)
DimKind = Literal["channels", "heads"]
FRACTIONS = (1.0, 0.75, 0.5, 0.25)
OUT_FNS = (tp.pruner.function.prune_conv_out_channels, tp.pruner.function.prune_linear_out_channels)
IN_FNS = (tp.pruner.function.prune_conv_in_channels, tp.pruner.function.prune_linear_in_channels)
# module types a dimension may hold: per-channel, so zeroing a channel where it is read equals removing it
CHANNEL_WISE = (nn.Conv1d, nn.Conv2d, nn.Linear, nn.modules.batchnorm._BatchNorm)


@dataclass(frozen=True)
class ElasticDim:
    """One shrinkable dimension: a channel group named by its root layer; `size` and `widths` count units
    (channels, or heads of `unit` channels each). Widths are descending, the first is the full size."""

    name: str
    kind: DimKind
    size: int
    widths: tuple[int, ...]
    unit: int = 1
    layers: tuple[str, ...] = ()

    @property
    def channels(self) -> int:
        return self.size * self.unit

    def nearest(self, fraction: float) -> int:
        """The trained width closest to `fraction` of the size (ties to the wider)."""
        return min(self.widths, key=lambda width: (abs(width - fraction * self.size), -width))


@dataclass(frozen=True)
class ElasticConfig:
    """A sub-network: units kept per dimension (dimensions not named stay whole) and the blocks skipped."""

    widths: Mapping[str, int] = field(default_factory=dict)
    skip: tuple[str, ...] = ()

    def width(self, dim: ElasticDim) -> int:
        return self.widths.get(dim.name, dim.size)

    def describe(self) -> dict[str, Any]:
        return {"widths": dict(sorted(self.widths.items())), "skip": sorted(self.skip)}


@dataclass(frozen=True)
class ElasticSpace:
    """Every elastic dimension and depth-elastic block of a model, plain data (its `describe()` is hashed)."""

    dims: tuple[ElasticDim, ...]
    blocks: tuple[str, ...] = ()

    @classmethod
    def from_model(
        cls,
        model: nn.Module,
        example_input: torch.Tensor,
        hints: PruneHints | None = None,
        fractions: Sequence[float] = FRACTIONS,
        round_to: int = 8,
        depth: bool = True,
        head_fractions: Sequence[float] | None = None,
    ) -> ElasticSpace:
        """Dimensions from `prune_groups`, widths `fractions` of each (channels snapped to `round_to`, heads
        whole, never below one unit; `head_fractions`, when given, for attention groups: a pretrained transformer
        loses fidelity much faster per head than per FFN channel); groups holding layers that are not
        channel-wise are left whole."""
        head_fractions = fractions if head_fractions is None else head_fractions
        for given in (fractions, head_fractions):
            if not given or any(not 0 < fraction <= 1 for fraction in given):
                raise ConfigError(f"elastic fractions must be in (0, 1]; got {list(given)}")
        graph = dependency_graph(model, example_input)
        modules = dict(model.named_modules())
        dims = []
        for group in prune_groups(model, example_input, hints):
            if not _channel_wise(graph, modules[group.name], group.channels):
                log.info("elastic: group %s holds a layer that mixes channels; it stays whole", group.name)
                continue
            if group.heads:
                widths = _widths(group.heads, head_fractions, 1)
                dims.append(ElasticDim(group.name, "heads", group.heads, widths, group.channels // group.heads,
                                       group.layers))  # fmt: skip
            else:
                dims.append(ElasticDim(group.name, "channels", group.channels, _widths(group.channels, fractions,
                                       round_to), layers=group.layers))  # fmt: skip
        blocks = _depth_elastic(model, example_input, hints, graph) if depth else []
        return cls(tuple(dim for dim in dims if len(dim.widths) > 1), tuple(blocks))

    def describe(self) -> dict[str, Any]:
        dims = [{"name": d.name, "kind": d.kind, "size": d.size, "unit": d.unit, "widths": list(d.widths)}
                for d in self.dims]  # fmt: skip
        return {"dims": dims, "blocks": list(self.blocks)}

    @property
    def levels(self) -> int:
        """Progressive-shrinking levels: at level j each dimension may take its j + 1 widest widths."""
        return max((len(dim.widths) - 1 for dim in self.dims), default=0) + (0 if self.dims or not self.blocks else 1)

    def allowed(self, dim: ElasticDim, level: int | None = None) -> tuple[int, ...]:
        return dim.widths if level is None else dim.widths[: level + 1]

    def most_skipped(self, level: int | None = None) -> int:
        if level is None or self.levels == 0:
            return len(self.blocks)
        return math.ceil(len(self.blocks) * min(level, self.levels) / self.levels)

    def full(self) -> ElasticConfig:
        return ElasticConfig({dim.name: dim.size for dim in self.dims})

    def smallest(self, level: int | None = None, rng: random.Random | None = None) -> ElasticConfig:
        """Every dimension at its narrowest allowed width, and as many blocks skipped as the level allows (which
        ones drawn from `rng` when not all may be)."""
        widths = {dim.name: self.allowed(dim, level)[-1] for dim in self.dims}
        count = self.most_skipped(level)
        every = count == len(self.blocks)
        blocks = list(self.blocks) if every else (rng or random.Random(0)).sample(self.blocks, count)
        return ElasticConfig(widths, tuple(sorted(blocks)))

    def sample(self, rng: random.Random, level: int | None = None) -> ElasticConfig:
        """A random sub-network among those allowed at `level` (all trained ones when None)."""
        widths = {dim.name: rng.choice(self.allowed(dim, level)) for dim in self.dims}
        count = rng.randint(0, self.most_skipped(level)) if self.blocks else 0
        return ElasticConfig(widths, tuple(sorted(rng.sample(self.blocks, count))))

    def uniform(self, fraction: float, skip: Iterable[str] = ()) -> ElasticConfig:
        """Each dimension at its trained width nearest `fraction` of its size."""
        return ElasticConfig({dim.name: dim.nearest(fraction) for dim in self.dims}, tuple(sorted(skip)))

    def check(self, config: ElasticConfig) -> None:
        """A configuration names only this space's dimensions and blocks, with 1 <= width <= size."""
        by_name = {dim.name: dim for dim in self.dims}
        unknown = sorted(set(config.widths) - set(by_name)) + sorted(set(config.skip) - set(self.blocks))
        if unknown:
            raise ConfigError(f"elastic configuration names what the space does not have: {', '.join(unknown[:3])}")
        for name, width in config.widths.items():
            if not 1 <= width <= by_name[name].size:
                raise ConfigError(f"elastic width {width} of {name} is outside 1..{by_name[name].size}")


def _widths(size: int, fractions: Sequence[float], round_to: int) -> tuple[int, ...]:
    step = round_to if size >= 2 * round_to else 1
    widths = {size} | {min(size, max(step, round(size * fraction / step) * step)) for fraction in fractions}
    return tuple(sorted(widths, reverse=True))


def _channel_wise(graph: tp.DependencyGraph, root: nn.Module, channels: int) -> bool:
    """Every parametrised layer of the group acts per channel (conv/linear without groups, batch norm): then
    zeroing a channel at the layers reading it is exactly removing it, and permuting it changes nothing."""
    group = graph.get_pruning_group(root, graph.get_pruner_of_module(root).prune_out_channels, list(range(channels)))
    for item in group:
        module = item.dep.target.module
        if not isinstance(module, nn.Module) or not any(True for _ in module.parameters(recurse=False)):
            continue
        if not isinstance(module, CHANNEL_WISE) or getattr(module, "groups", 1) != 1:
            return False
    return True


def weight_members(group: Any, names: Mapping[nn.Module, str]) -> frozenset[tuple[str, str]]:
    """(layer, "out" | "in") for each conv/linear of a torch-pruning group."""
    members = set()
    for item in group:
        module, fn = item.dep.target.module, item.dep.pruning_fn
        if isinstance(module, PRUNABLE_TYPES) and module in names and (fn in OUT_FNS or fn in IN_FNS):
            members.add((names[module], "out" if fn in OUT_FNS else "in"))
    return frozenset(members)


def _groups(
    model: nn.Module, example_input: torch.Tensor, hints: PruneHints | None, graph: tp.DependencyGraph
) -> list[frozenset[tuple[str, str]]]:
    """The channel groups of `model`, each as its weight members."""
    names = {module: name for name, module in model.named_modules()}
    ignored = fixed_width_layers(model, example_input, hints)
    return [weight_members(g, names) for g in graph.get_all_groups(ignored, root_module_types=list(PRUNABLE_TYPES))]


def _outside(groups: list[frozenset[tuple[str, str]]], block: str) -> set[frozenset[tuple[str, str]]]:
    """Each group as its members outside `block` (groups wholly inside it dropped)."""
    kept = (frozenset(member for member in group if not member[0].startswith(f"{block}.")) for group in groups)
    return {members for members in kept if members}


def _depth_elastic(
    model: nn.Module, example_input: torch.Tensor, hints: PruneHints | None, graph: tp.DependencyGraph
) -> list[str]:
    """Skippable blocks whose removal leaves the channel groups outside them as they were: a residual block
    (input and output in one group) or a transformer layer (fixed-width stream). A plain block with equal widths
    would merge its input and output groups, which a configuration could give different widths."""
    found = []
    groups = _groups(model, example_input, hints, graph)
    for block in skippable_blocks(model, example_input):
        skipped = copy.deepcopy(model)
        parent, _, child = block.rpartition(".")
        skipped.get_submodule(parent).register_module(child, SkippedBlock())
        after = _groups(skipped, example_input, hints, dependency_graph(skipped, example_input))
        if _outside(groups, block) == _outside(after, block):
            found.append(block)
        else:
            log.info("elastic: skipping %s would merge the channel groups around it; it is not depth-elastic", block)
    return found
