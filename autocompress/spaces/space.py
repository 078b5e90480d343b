"""The search space: the knobs a model and a device allow, and how one Optuna trial picks a Strategy.

Example: the digits ResNet on the `cpu` profile at per-layer granularity has 9 pruning groups
(`prune/stem.0` couples the stem with every conv feeding stage 1's residual sums), 14 quantizable
layers (`precision/stage1.0.conv1` in {int8, fp32}, ...), the importance criterion, the calibration
method and four distillation knobs. `granularity="stage"` shares one ratio and one precision per
top-level module (`stem`, `stage1`, ...); `"global"` shares one of each for the whole model.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

import optuna
import torch
from torch import nn

from autocompress.hardware.profile import HardwareProfile
from autocompress.spaces.graph import PruneGroup, QuantLayer, prune_groups, quant_layers
from autocompress.spaces.strategy import DistillLoss, DistillSettings, PruneSettings, QuantizeSettings, Strategy

if TYPE_CHECKING:
    from autocompress.task import PruneHints, Task

Granularity = Literal["layer", "family", "stage", "global"]
BLOCK_INDEX = re.compile(r"(^|\.)\d+(?=\.|$)")


@dataclass(frozen=True)
class SpaceOptions:
    """Ranges of the knobs; defaults suit small CNNs trained in seconds (a Task may carry its own)."""

    granularity: Granularity = "layer"
    max_prune_ratio: float = 0.75
    prune_step: float = 0.125
    max_head_ratio: float = 0.5  # attention groups: at most this fraction of the heads
    importances: tuple[str, ...] = ("l1", "l2", "fpgm", "bn_scale")
    calibrations: tuple[str, ...] = ("minmax", "entropy", "percentile")
    distill_steps: tuple[int, ...] = (0, 25, 50, 100, 150)
    temperature: tuple[float, float] = (1.0, 8.0)
    alpha: tuple[float, float] = (0.0, 1.0)
    lr: tuple[float, float] = (1e-4, 1e-2)
    distill_losses: tuple[DistillLoss, ...] = ("kl",)
    hidden_weight: tuple[float, float] | None = None  # searched when the task names layers to match
    finetune_after_pruning: bool = True


def _unit(name: str, granularity: Granularity) -> str:
    """The name of the shared knob a layer belongs to at a given granularity."""
    if granularity == "layer":
        return name
    if granularity == "family":  # the same layer of every repeated block: layer.0.query, layer.1.query -> layer.*.query
        return BLOCK_INDEX.sub(r"\1*", name)
    if granularity == "stage":
        return name.split(".")[0]
    return "all"


@dataclass
class SearchSpace:
    """Derived from one model and one device; `sample` maps an Optuna trial to a Strategy."""

    groups: list[PruneGroup]
    layers: list[QuantLayer]
    precision_choices: dict[str, list[str]]
    options: SpaceOptions = field(default_factory=SpaceOptions)

    @classmethod
    def from_model(
        cls,
        model: nn.Module,
        example_input: torch.Tensor,
        profile: HardwareProfile,
        options: SpaceOptions | None = None,
        hints: PruneHints | None = None,
    ) -> SearchSpace:
        layers = quant_layers(model)
        choices = {layer.name: profile.precision_choices(layer.op_type) for layer in layers}
        return cls(prune_groups(model, example_input, hints), layers, choices, options or SpaceOptions())

    @classmethod
    def for_task(cls, task: Task, profile: HardwareProfile, granularity: Granularity | None = None) -> SearchSpace:
        """The space of a task on a device: the task's own ranges if it has them, at the requested granularity
        (None: the task's default)."""
        options = task.space or SpaceOptions()
        if granularity is not None:
            options = replace(options, granularity=granularity)
        return cls.from_model(task.model, task.example_input, profile, options, task.prune_hints)

    def prune_units(self) -> list[str]:
        """Knobs of channel groups, `prune/<unit>` (a ratio)."""
        return sorted({_unit(group.name, self.options.granularity) for group in self.groups if not group.heads})

    def head_units(self) -> dict[str, int]:
        """Knobs of attention groups, `heads/<unit>` (heads removed), with the most each may remove."""
        units: dict[str, int] = {}
        for group in self.groups:
            if group.heads:
                most = math.floor(group.heads * self.options.max_head_ratio + 1e-9)
                unit = _unit(group.name, self.options.granularity)
                units[unit] = min(units.get(unit, most), most)
        return units

    def _group_ratio(self, group: PruneGroup, ratios: dict[str, float], heads: dict[str, int]) -> float:
        unit = _unit(group.name, self.options.granularity)
        return heads[unit] / group.heads if group.heads else ratios[unit]

    def precision_units(self) -> dict[str, list[str]]:
        """Each shared precision knob with the choices every layer in it supports."""
        units: dict[str, list[str]] = {}
        for layer in self.layers:
            unit = _unit(layer.name, self.options.granularity)
            choices = self.precision_choices[layer.name]
            units[unit] = [c for c in units.get(unit, choices) if c in choices]
        return {unit: choices for unit, choices in units.items() if len(choices) > 1}

    def sample(self, trial: optuna.Trial, seed: int) -> Strategy:
        """Ask the trial for every knob; the Strategy it returns is the whole candidate."""
        opts = self.options
        granularity = opts.granularity
        unit_ratio = {
            unit: trial.suggest_float(f"prune/{unit}", 0.0, opts.max_prune_ratio, step=opts.prune_step)
            for unit in self.prune_units()
        }
        unit_heads = {unit: trial.suggest_int(f"heads/{unit}", 0, most) for unit, most in self.head_units().items()}
        unit_precision = {
            unit: trial.suggest_categorical(f"precision/{unit}", choices)
            for unit, choices in self.precision_units().items()
        }
        precisions = {
            layer.name: unit_precision.get(_unit(layer.name, granularity), self.precision_choices[layer.name][0])
            for layer in self.layers
        }
        pruned = any(ratio > 0 for ratio in unit_ratio.values()) or any(unit_heads.values())
        steps = trial.suggest_categorical(*self._steps_knob(pruned))
        loss = trial.suggest_categorical("distill/loss", list(opts.distill_losses))
        return Strategy(
            seed=seed,
            prune=PruneSettings(
                importance=trial.suggest_categorical("prune/importance", list(opts.importances)),
                ratios={group.name: self._group_ratio(group, unit_ratio, unit_heads) for group in self.groups},
            ),
            quantize=QuantizeSettings(
                calibration=trial.suggest_categorical("quantize/calibration", list(opts.calibrations)),
                precisions=precisions,
            ),
            distill=DistillSettings(
                steps=steps,
                loss=loss,
                temperature=trial.suggest_float("distill/temperature", *opts.temperature) if loss == "kl" else 1.0,
                alpha=trial.suggest_float("distill/alpha", *opts.alpha),
                lr=trial.suggest_float("distill/lr", *opts.lr, log=True),
                hidden_weight=trial.suggest_float("distill/hidden_weight", *opts.hidden_weight)
                if opts.hidden_weight
                else 0.0,
            ),
        )

    def warm_starts(self) -> list[tuple[str, dict[str, Any]]]:
        """The first candidates of a search: what a user would try by hand. The sampler starts from their
        measurements, so the search never does worse than these, and the budget goes to improving on them."""
        most = max(self.options.distill_steps)
        starts = [
            ("no compression", self.fixed_params(0.0, "fp32", 0)),
            ("uniform int8", self.fixed_params(0.0, "int8", 0)),
        ]
        if self.groups:
            starts += [
                ("uniform pruning 50%", self.fixed_params(0.5, "fp32", most)),
                ("uniform pruning 50% + int8", self.fixed_params(0.5, "int8", most)),
            ]
        return starts

    def _steps_knob(self, pruned: bool) -> tuple[str, list[int]]:
        """Distillation steps; a pruned candidate always gets some (`finetune_after_pruning`), because pruning
        with no recovery is nearly always useless and would waste trials the sampler has to unlearn."""
        steps = list(self.options.distill_steps)
        if pruned and self.options.finetune_after_pruning and any(step > 0 for step in steps):
            return "distill/steps_after_pruning", [step for step in steps if step > 0]
        return "distill/steps", steps

    def fixed_params(self, prune_ratio: float, precision: str, distill_steps: int) -> dict[str, Any]:
        """Optuna parameters of a uniform candidate, for enqueueing baselines and warm starts (ratios beyond the
        space's range are clamped to it; attention groups lose the nearest whole number of heads)."""
        ratio = min(prune_ratio, self.options.max_prune_ratio)
        params: dict[str, Any] = {f"prune/{unit}": ratio for unit in self.prune_units()}
        heads = {group.heads for group in self.groups if group.heads}
        for unit, most in self.head_units().items():
            params[f"heads/{unit}"] = min(most, round(prune_ratio * max(heads)))
        for unit, choices in self.precision_units().items():
            params[f"precision/{unit}"] = precision if precision in choices else "fp32"
        steps_name, _ = self._steps_knob(prune_ratio > 0 and bool(self.groups))
        params.update(
            {
                "prune/importance": "l2",
                "quantize/calibration": "minmax",
                steps_name: distill_steps,
                "distill/loss": self.options.distill_losses[0],
                "distill/alpha": 0.7,
                "distill/lr": min(max(1e-3, self.options.lr[0]), self.options.lr[1]),
            }
        )
        if self.options.distill_losses[0] == "kl":
            params["distill/temperature"] = 4.0
        if self.options.hidden_weight:
            params["distill/hidden_weight"] = self.options.hidden_weight[0]
        return params
