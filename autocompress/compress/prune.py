"""Structured pruning with torch-pruning (whole channels go, so layers are physically smaller): its knobs in the
search space and the step itself (its settings, PruneSettings, are plain data in spaces/sections.py).

Knobs (Optuna parameter names): `prune/<unit>` a ratio per channel-group unit (0 to max_prune_ratio in steps of
prune_step), `heads/<unit>` whole attention heads removed per unit, `skip/<block>` whether a whole block is skipped
(depth pruning: on a small model, per-operator overhead is much of the latency and only fewer operators remove
it), and `prune/importance` the criterion. `obs` chooses channels by the least damage to the layer reading them
and, with `reconstruct`, that layer is re-fitted to the original's outputs (compress/reconstruct.py).
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import torch
import torch_pruning as tp
from pydantic import Field
from torch import nn

from autocompress.compress.reconstruct import ObsImportance, reconstruct
from autocompress.errors import ConfigError
from autocompress.spaces.graph import PRUNABLE_TYPES, PruneGroup, fixed_width_layers, prune_groups, skippable_blocks
from autocompress.spaces.knobs import Categorical, FloatRange, IntRange, Knob, Term
from autocompress.spaces.sections import Importance, PruneSettings
from autocompress.spaces.vocabulary import Granularity, Ratio, unit_of

if TYPE_CHECKING:
    import optuna

    from autocompress.spaces.strategy import Strategy
    from autocompress.task import Batches, PruneHints

log = logging.getLogger(__name__)
RATIO, HEADS, SKIP = "prune", "heads", "skip"  # the kinds of its knobs in the sensitivity table
PROBE_RATIOS = (0.25, 0.5)  # what the sensitivity stage removes of one channel group alone
IMPORTANCES = {
    "l1": lambda: tp.importance.GroupMagnitudeImportance(p=1),
    "l2": lambda: tp.importance.GroupMagnitudeImportance(p=2),
    "fpgm": lambda: tp.importance.FPGMImportance(),
    "bn_scale": lambda: tp.importance.BNScaleImportance(),
}


@dataclass(frozen=True)
class PruneKnobs:
    """The pruning part of a search space: channel groups from the dependency graph, shared per granularity."""

    groups: tuple[PruneGroup, ...]
    blocks: tuple[str, ...] = ()  # blocks that may be skipped whole (spaces/graph.py: skippable_blocks)
    granularity: Granularity = "layer"
    max_prune_ratio: Ratio = 0.75
    prune_step: Annotated[float, Field(gt=0, lt=1)] = 0.125
    max_head_ratio: Ratio = 0.5  # attention groups: at most this fraction of the heads
    importances: Annotated[tuple[Importance, ...], Field(min_length=1)] = ("obs", "l1", "l2", "fpgm", "bn_scale")
    skip_blocks: bool = True  # offer depth pruning where the model has skippable blocks
    reconstruct: bool = True  # re-fit the readers of pruned channels (not a knob: measured better every time)

    @classmethod
    def for_model(
        cls, model: nn.Module, example_input: torch.Tensor, hints: PruneHints | None, **ranges: Any
    ) -> PruneKnobs:
        # a knob per block: at the coarse granularities (one knob per stage or for the model) there are none
        fine = ranges.get("granularity", "layer") in ("layer", "family")
        blocks = skippable_blocks(model, example_input) if fine and ranges.get("skip_blocks", True) else []
        return cls(tuple(prune_groups(model, example_input, hints)), tuple(blocks), **ranges)

    def ratio_units(self) -> list[str]:
        """Knobs of channel groups, `prune/<unit>` (a ratio)."""
        return sorted({unit_of(group.name, self.granularity) for group in self.groups if not group.heads})

    def head_units(self) -> dict[str, int]:
        """Knobs of attention groups, `heads/<unit>` (heads removed), with the most each may remove."""
        units: dict[str, int] = {}
        for group in self.groups:
            if group.heads:
                most = math.floor(group.heads * self.max_head_ratio + 1e-9)
                unit = unit_of(group.name, self.granularity)
                units[unit] = min(units.get(unit, most), most)
        return units

    def _probe_ratios(self) -> tuple[float, ...]:
        """Two ratios (and half the largest, where the range stops below the second): a narrow range (MiniLM's)
        gets its middle too, where the bound's edge may lie."""
        limit, step = self.max_prune_ratio, self.prune_step
        ratios = {min(ratio, limit) for ratio in PROBE_RATIOS}
        if limit < max(PROBE_RATIOS):
            ratios.add(round(limit / 2 / step) * step)
        return tuple(ratio for ratio in sorted(ratios) if ratio > 0)

    def ratio_knobs(self) -> list[FloatRange]:
        """`prune/<unit>`: the share of a channel-group unit's output channels removed."""
        probes = self._probe_ratios()
        return [
            FloatRange(name=f"prune/{unit}", kind=RATIO, unit=unit, low=0.0, high=self.max_prune_ratio,
                       step=self.prune_step, neutral=0.0, probes=probes)  # fmt: skip
            for unit in self.ratio_units()
        ]

    def head_knobs(self) -> list[IntRange]:
        """`heads/<unit>`: whole attention heads removed (measured alone: one, and the most allowed)."""
        return [
            IntRange(name=f"heads/{unit}", kind=HEADS, unit=unit, low=0, high=most, neutral=0,
                     probes=tuple(heads for heads in sorted({1, most}) if heads > 0))  # fmt: skip
            for unit, most in self.head_units().items()
        ]

    def skip_knobs(self) -> list[Categorical]:
        """`skip/<block>`: the block replaced by its input (depth pruning)."""
        return [
            Categorical(name=f"skip/{block}", kind=SKIP, unit=block, choices=(False, True), neutral=False,
                        probes=(True,))  # fmt: skip
            for block in self.blocks
        ]

    def importance_knob(self) -> Categorical:
        return Categorical(name="prune/importance", choices=tuple(self.importances))

    def knobs(self) -> list[Knob]:
        return [*self.ratio_knobs(), *self.head_knobs(), *self.skip_knobs(), self.importance_knob()]

    def suggest(self, trial: optuna.Trial) -> PruneSettings:
        ratios = {knob.unit: knob.suggest(trial) for knob in self.ratio_knobs()}
        heads = {knob.unit: knob.suggest(trial) for knob in self.head_knobs()}
        skip = [knob.unit for knob in self.skip_knobs() if knob.suggest(trial)]
        importance = self.importance_knob().suggest(trial)
        return PruneSettings(
            importance=importance, ratios=self._group_ratios(ratios, heads), skip=skip, reconstruct=self.reconstruct
        )

    @property
    def preferred_importance(self) -> str:
        """The criterion of the candidates the search builds itself (warm starts, seeds, sensitivity rows)."""
        return "obs" if "obs" in self.importances else ("l2" if "l2" in self.importances else self.importances[0])

    def _group_ratios(self, ratios: dict[str, float], heads: dict[str, int]) -> dict[str, float]:
        def ratio(group: PruneGroup) -> float:
            unit = unit_of(group.name, self.granularity)
            return heads[unit] / group.heads if group.heads else ratios[unit]

        return {group.name: ratio(group) for group in self.groups}

    def settings(
        self,
        ratios: Mapping[str, float],
        heads: Mapping[str, int],
        skip: tuple[str, ...] = (),
        importance: str | None = None,
    ) -> PruneSettings:
        """Settings from per-unit values (units not named stay whole, blocks not named stay)."""
        every = {unit: ratios.get(unit, 0.0) for unit in self.ratio_units()}
        removed = {unit: heads.get(unit, 0) for unit in self.head_units()}
        kept = [block for block in self.blocks if block in skip]
        return PruneSettings(
            importance=importance or self.preferred_importance,
            ratios=self._group_ratios(every, removed),
            skip=kept,
            reconstruct=self.reconstruct,
        )

    def params(
        self,
        ratios: Mapping[str, float],
        heads: Mapping[str, int],
        skip: tuple[str, ...] = (),
        importance: str | None = None,
    ) -> dict[str, Any]:
        """Optuna parameters from per-unit values (units not named stay whole, blocks not named stay)."""
        params: dict[str, Any] = {}
        for knob in self.ratio_knobs():
            params |= knob.param(ratios.get(knob.unit, 0.0))
        for knob in self.head_knobs():
            params |= knob.param(heads.get(knob.unit, 0))
        for knob in self.skip_knobs():
            params |= knob.param(knob.unit in skip)
        return params | self.importance_knob().param(importance or self.preferred_importance)

    def uniform(self, ratio: float, importance: str | None = None) -> dict[str, Any]:
        """Optuna parameters of every group at `ratio` (clamped to the range; attention groups lose the nearest
        whole number of heads)."""
        ratios = {unit: min(ratio, self.max_prune_ratio) for unit in self.ratio_units()}
        most_heads = max((group.heads for group in self.groups if group.heads), default=0)
        heads = {unit: min(most, round(ratio * most_heads)) for unit, most in self.head_units().items()}
        return self.params(ratios, heads, (), importance)  # uniform pruning keeps every block

    def _chosen(self, chosen: Mapping[Knob, Any]) -> tuple[dict[str, float], dict[str, int], tuple[str, ...]]:
        """Per-unit ratios, heads and skipped blocks among chosen knob values (other steps' knobs ignored)."""
        ours = {knob: value for knob, value in chosen.items() if knob in set(self.knobs())}
        ratios = {knob.unit: value for knob, value in ours.items() if knob.kind == RATIO}
        heads = {knob.unit: value for knob, value in ours.items() if knob.kind == HEADS}
        return ratios, heads, tuple(knob.unit for knob, value in ours.items() if knob.kind == SKIP and value)

    def settings_for(self, chosen: Mapping[Knob, Any]) -> PruneSettings:
        """The section with these knob values, every other unit whole (a sensitivity row's candidate)."""
        return self.settings(*self._chosen(chosen))

    def params_for(self, chosen: Mapping[Knob, Any]) -> dict[str, Any]:
        """Optuna parameters with these knob values, every other unit whole (a seed)."""
        return self.params(*self._chosen(chosen))

    def terms(self, strategy: Strategy) -> list[Term]:
        """Each skipped block, and each group's ratio (or heads removed) as its share of its unit."""
        settings = strategy.prune
        terms = [Term(SKIP, block, True) for block in settings.skip]
        for group in (group for group in self.groups if not settings.skipped(group.name)):
            unit, ratio = unit_of(group.name, self.granularity), settings.ratios.get(group.name, 0.0)
            kind, value = (HEADS, round(ratio * group.heads)) if group.heads else (RATIO, ratio)
            members = sum(1 for other in self.groups if unit_of(other.name, self.granularity) == unit)
            if value:
                terms.append(Term(kind, unit, value, 1.0 / members, interpolate=True))
        return terms

    def signature(self) -> str:
        groups = ",".join(f"{group.name}:{group.channels}" for group in self.groups)
        return f"groups={groups};blocks={','.join(self.blocks)}" if self.blocks else f"groups={groups}"


def prune(
    model: nn.Module,
    example_input: torch.Tensor,
    settings: PruneSettings,
    round_to: int = 1,
    hints: PruneHints | None = None,
    data: Batches | None = None,
) -> nn.Module:
    """A pruned copy of `model`: the skipped blocks pass their input on, then each group loses `ratios[root]` of
    its channels, lowest importance first; with `reconstruct`, the layers reading pruned channels are re-fitted.
    `obs` and `reconstruct` need `data` (training batches).

    Attention groups (a layer in `hints.num_heads`) lose whole heads: torch-pruning ranks heads only when the
    group also has a non-zero channel ratio, and with `prune_head_dims=False` that ratio removes nothing else.
    """
    pruned = copy.deepcopy(model).eval()
    modules = dict(pruned.named_modules())
    unknown = sorted((set(settings.ratios) | set(settings.skip)) - set(modules))
    if unknown:
        raise ConfigError(f"strategy prunes layers this model does not have: {', '.join(unknown[:3])}")
    for block in settings.skip:
        parent, _, child = block.rpartition(".")
        pruned.get_submodule(parent).register_module(child, SkippedBlock())
    modules = dict(pruned.named_modules())
    ratio_by_root = {
        modules[name]: ratio for name, ratio in settings.ratios.items() if ratio > 0 and not settings.skipped(name)
    }
    if not ratio_by_root:
        return pruned
    needs_data = settings.importance == "obs" or settings.reconstruct
    if needs_data and data is None:
        raise ConfigError("pruning with 'obs' or reconstruct needs training data; this task has none")
    num_heads = {modules[name]: heads for name, heads in (hints.num_heads if hints else {}).items() if name in modules}
    head_ratios = _head_ratios(pruned, example_input, ratio_by_root, num_heads)
    importance = (
        ObsImportance(pruned, model, data, skipped=bool(settings.skip))  # type: ignore[arg-type]
        if settings.importance == "obs"
        else IMPORTANCES[settings.importance]()
    )
    pruner = tp.pruner.BasePruner(
        pruned,
        example_input,
        importance=importance,
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
    removed_outputs = _prune_recording(pruner, pruned)
    _say_what_was_not_pruned(settings, ratio_by_root, modules, removed_outputs)
    if hints is not None and hints.after_prune is not None:
        hints.after_prune(pruned)
    if settings.reconstruct:
        original_width = {name: model.get_submodule(name).weight.shape[0] for name in removed_outputs}
        kept = {name: _kept(original_width[name], gone) for name, gone in removed_outputs.items()}
        reconstruct(pruned, model, data, kept)  # type: ignore[arg-type]
    return pruned


def _say_what_was_not_pruned(
    settings: PruneSettings, ratio_by_root: dict[nn.Module, float], modules: dict[str, nn.Module], removed: dict
) -> None:
    """A layer the strategy prunes that lost no channel is said, not left whole in silence: a width the model
    fixes (its output layer, a layer torch-pruning may not narrow) or a ratio too small for its channel count."""
    names = {layer: name for name, layer in modules.items()}
    untouched = sorted(names[root] for root in ratio_by_root if names[root] not in removed)
    for name in untouched:
        log.warning(
            "strategy prunes %s at %g, but that removes none of its channels (a width the model fixes, or a ratio "
            "too small for its channel count): it is left whole",
            name,
            settings.ratios[name],
        )


def _prune_recording(pruner: tp.pruner.BasePruner, model: nn.Module) -> dict[str, list[int]]:
    """Prune group by group; returns, per Linear/Conv layer that lost output channels, which ones (the layer's
    original indices: each layer loses output channels in one group only)."""
    names = {layer: name for name, layer in model.named_modules()}
    out_channel_fns = (tp.pruner.function.prune_linear_out_channels, tp.pruner.function.prune_conv_out_channels)
    removed: dict[str, list[int]] = {}
    for group in pruner.step(interactive=True):
        for item in group:
            if item.dep.pruning_fn in out_channel_fns and item.dep.layer in names:
                removed.setdefault(names[item.dep.layer], []).extend(int(index) for index in item.idxs)
        group.prune()
    return removed


def _kept(width: int, removed: list[int]) -> list[int]:
    gone = set(removed)
    return [index for index in range(width) if index not in gone]


class SkippedBlock(nn.Module):
    """What a skipped block becomes: its first input passed on unchanged (other arguments, such as a transformer
    layer's attention mask, are ignored)."""

    def forward(self, hidden: torch.Tensor, *_args: Any, **_kwargs: Any) -> torch.Tensor:
        return hidden


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
