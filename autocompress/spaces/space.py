"""The search space: the knobs a model and a device allow, and how one Optuna trial picks a Strategy.

Example: the digits ResNet on the `cpu` profile at per-layer granularity has 9 pruning groups
(`prune/stem.0` couples the stem with every conv feeding stage 1's residual sums), 14 quantizable
layers (`precision/stage1.0.conv1` in {int8, fp32}, ...), the importance criterion, the calibration
method and four distillation knobs. `granularity="stage"` shares one ratio and one precision per
top-level module (`stem`, `stage1`, ...); `"global"` shares one of each for the whole model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import optuna
import torch
from torch import nn

from autocompress.hardware.profile import HardwareProfile
from autocompress.spaces.graph import PruneGroup, QuantLayer, prune_groups, quant_layers
from autocompress.spaces.strategy import DistillSettings, PruneSettings, QuantizeSettings, Strategy

Granularity = Literal["layer", "stage", "global"]


@dataclass(frozen=True)
class SpaceOptions:
    """Ranges of the knobs; defaults suit small CNNs trained in seconds."""

    granularity: Granularity = "layer"
    max_prune_ratio: float = 0.75
    prune_step: float = 0.125
    importances: tuple[str, ...] = ("l1", "l2", "fpgm", "bn_scale")
    calibrations: tuple[str, ...] = ("minmax", "entropy", "percentile")
    distill_steps: tuple[int, ...] = (0, 25, 50, 100, 150)
    temperature: tuple[float, float] = (1.0, 8.0)
    alpha: tuple[float, float] = (0.0, 1.0)
    lr: tuple[float, float] = (1e-4, 1e-2)
    finetune_after_pruning: bool = True


def _unit(name: str, granularity: Granularity) -> str:
    """The name of the shared knob a layer belongs to at a given granularity."""
    if granularity == "layer":
        return name
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
    ) -> SearchSpace:
        layers = quant_layers(model)
        choices = {layer.name: profile.precision_choices(layer.op_type) for layer in layers}
        return cls(prune_groups(model, example_input), layers, choices, options or SpaceOptions())

    def prune_units(self) -> list[str]:
        return sorted({_unit(group.name, self.options.granularity) for group in self.groups})

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
        unit_precision = {
            unit: trial.suggest_categorical(f"precision/{unit}", choices)
            for unit, choices in self.precision_units().items()
        }
        precisions = {
            layer.name: unit_precision.get(_unit(layer.name, granularity), self.precision_choices[layer.name][0])
            for layer in self.layers
        }
        steps = trial.suggest_categorical(*self._steps_knob(any(ratio > 0 for ratio in unit_ratio.values())))
        return Strategy(
            seed=seed,
            prune=PruneSettings(
                importance=trial.suggest_categorical("prune/importance", list(opts.importances)),
                ratios={group.name: unit_ratio[_unit(group.name, granularity)] for group in self.groups},
            ),
            quantize=QuantizeSettings(
                calibration=trial.suggest_categorical("quantize/calibration", list(opts.calibrations)),
                precisions=precisions,
            ),
            distill=DistillSettings(
                steps=steps,
                temperature=trial.suggest_float("distill/temperature", *opts.temperature),
                alpha=trial.suggest_float("distill/alpha", *opts.alpha),
                lr=trial.suggest_float("distill/lr", *opts.lr, log=True),
            ),
        )

    def _steps_knob(self, pruned: bool) -> tuple[str, list[int]]:
        """Distillation steps; a pruned candidate always gets some (`finetune_after_pruning`), because pruning
        with no recovery is nearly always useless and would waste trials the sampler has to unlearn."""
        steps = list(self.options.distill_steps)
        if pruned and self.options.finetune_after_pruning and any(step > 0 for step in steps):
            return "distill/steps_after_pruning", [step for step in steps if step > 0]
        return "distill/steps", steps

    def fixed_params(self, prune_ratio: float, precision: str, distill_steps: int) -> dict[str, Any]:
        """Optuna parameters of a uniform candidate, for enqueueing baselines and warm starts."""
        params: dict[str, Any] = {f"prune/{unit}": prune_ratio for unit in self.prune_units()}
        for unit, choices in self.precision_units().items():
            params[f"precision/{unit}"] = precision if precision in choices else "fp32"
        steps_name, _ = self._steps_knob(prune_ratio > 0)
        params.update(
            {
                "prune/importance": "l2",
                "quantize/calibration": "minmax",
                steps_name: distill_steps,
                "distill/temperature": 4.0,
                "distill/alpha": 0.7,
                "distill/lr": 1e-3,
            }
        )
        return params
