"""Per-layer precision: its knobs in the search space and the check that a device can build it (its settings,
QuantizeSettings, are plain data in spaces/sections.py).

The step itself is runtime-specific (each runtime's builder quantizes exactly the strategy's layers, see
autocompress/runtimes/); what is shared lives here. Knobs (Optuna parameter names): `precision/<unit>` per
layer unit, from the precisions the device's profile allows for that layer's kind, and `quantize/calibration`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field

from autocompress.errors import ConfigError
from autocompress.spaces.graph import QuantLayer, quant_layers
from autocompress.spaces.knobs import Categorical, Knob, Term
from autocompress.spaces.sections import Calibration, QuantizeSettings
from autocompress.spaces.vocabulary import STATIC_INT, Granularity, unit_of

if TYPE_CHECKING:
    import optuna
    import torch
    from torch import nn

    from autocompress.hardware.profile import HardwareProfile
    from autocompress.runtimes.base import Knob as QuantizerKnob
    from autocompress.runtimes.base import Recipe
    from autocompress.spaces.strategy import Strategy

PRECISION = "precision"  # the kind of its knobs in the sensitivity table
RUNTIME_UNIT = "(runtime compute)"  # the unit of the runtime's precision knob: the whole model, no one layer


@dataclass(frozen=True)
class QuantizeKnobs:
    """The precision part of a search space: each layer's choices on the device, shared per granularity, the
    calibration method, and the runtime's own quantizer knobs; plus the runtime's one-click recipes."""

    layers: tuple[QuantLayer, ...]
    choices: dict[str, tuple[str, ...]]  # layer -> precisions its kind may take on the device (fp32 included)
    granularity: Granularity = "layer"
    calibrations: Annotated[tuple[Calibration, ...], Field(min_length=1)] = ("minmax", "entropy", "percentile")
    runtime_knobs: tuple[QuantizerKnob, ...] = ()
    recipes: tuple[Recipe, ...] = ()
    runtime_precisions: tuple[str, ...] = ("fp32",)  # what the runtime can compute the rest with, here (fp32 first)

    @classmethod
    def for_model(
        cls, model: nn.Module, example_input: torch.Tensor, profile: HardwareProfile, **ranges: Any
    ) -> QuantizeKnobs:
        layers = tuple(quant_layers(model, example_input))
        choices = {layer.name: tuple(profile.precision_choices(layer.kind)) for layer in layers}
        kinds = {layer.kind for layer in layers}
        runtime = profile.record
        recipes = tuple(r for r in runtime.recipes(profile) if not r.kinds or kinds & set(r.kinds))
        return cls(layers, choices, runtime_knobs=runtime.knobs, recipes=recipes,
                   runtime_precisions=runtime.runtime_precisions(profile), **ranges)  # fmt: skip

    def units(self) -> dict[str, list[str]]:
        """Each shared precision knob with the choices every layer in it supports (knobs with one choice drop)."""
        units: dict[str, list[str]] = {}
        for layer in self.layers:
            unit = unit_of(layer.name, self.granularity)
            choices = self.choices[layer.name]
            units[unit] = [c for c in units.get(unit, choices) if c in choices]
        return {unit: choices for unit, choices in units.items() if len(choices) > 1}

    def precision_knobs(self) -> list[Categorical]:
        """`precision/<unit>`: each unit's precision (measured alone: each one but fp32)."""
        return [
            Categorical(
                name=f"precision/{unit}",
                kind=PRECISION,
                unit=unit,
                choices=tuple(choices),
                neutral="fp32",
                probes=tuple(choice for choice in choices if choice != "fp32"),
            )  # fmt: skip
            for unit, choices in self.units().items()
        ]

    def calibration_knob(self) -> Categorical:
        """`quantize/calibration`: asked only when some layer is static integer."""
        return Categorical(name="quantize/calibration", choices=tuple(self.calibrations))

    def option_knobs(self) -> list[Categorical]:
        """`quantize/<option>`: the runtime's own quantizer settings, asked only when something is quantized."""
        return [
            Categorical(name=f"quantize/{knob.name}", unit=knob.name, choices=tuple(knob.choices), neutral=knob.default)
            for knob in self.runtime_knobs
        ]

    def runtime_precision_knob(self) -> Categorical | None:
        """`quantize/runtime_precision`: what the runtime computes everything left in fp32 with, for the whole
        model (asked whatever the layers' precisions; measured alone like a layer's precision); None where the
        runtime offers only fp32 here."""
        if len(self.runtime_precisions) < 2:
            return None
        return Categorical(name="quantize/runtime_precision", kind=PRECISION, unit=RUNTIME_UNIT,
                           choices=self.runtime_precisions, neutral="fp32",
                           probes=tuple(p for p in self.runtime_precisions if p != "fp32"))  # fmt: skip

    def knobs(self) -> list[Knob]:
        runtime = self.runtime_precision_knob()
        return [*self.precision_knobs(), self.calibration_knob(), *self.option_knobs(), *([runtime] if runtime else [])]

    def suggest(self, trial: optuna.Trial) -> QuantizeSettings:
        chosen = {knob.unit: knob.suggest(trial) for knob in self.precision_knobs()}
        precisions = {layer.name: chosen.get(unit_of(layer.name, self.granularity), "fp32") for layer in self.layers}
        settings = QuantizeSettings(precisions=precisions)
        if settings.calibrated:  # only static integer layers need calibration
            settings = settings.model_copy(update={"calibration": self.calibration_knob().suggest(trial)})
        if settings.any and self.runtime_knobs:
            options = {knob.unit: knob.suggest(trial) for knob in self.option_knobs()}
            settings = settings.model_copy(update={"options": options})
        if runtime := self.runtime_precision_knob():
            settings = settings.model_copy(update={"runtime_precision": runtime.suggest(trial)})
        return settings

    def quantizes(self, params: Mapping[str, Any]) -> bool:
        """Whether these Optuna parameters put any unit in another precision than fp32."""
        return any(knob.read(params, "fp32") != "fp32" for knob in self.precision_knobs())

    def _params(
        self, precision_of: dict[str, str], options: dict[str, Any], calibration: str, runtime_precision: str = "fp32"
    ) -> dict[str, Any]:
        """Parameters that `suggest` maps back to these precisions (a unit whose layers disagree, or that cannot
        take the precision, stays fp32), the calibration if anything is static int, the knobs if quantized, and
        the runtime's precision where it offers a choice."""
        params: dict[str, Any] = {}
        for knob in self.precision_knobs():
            wanted = {
                precision_of[layer.name] for layer in self.layers if unit_of(layer.name, self.granularity) == knob.unit
            }
            params |= knob.param(wanted.pop() if len(wanted) == 1 and wanted <= set(knob.choices) else "fp32")
        chosen = set(params.values())
        if chosen & set(STATIC_INT):
            params |= self.calibration_knob().param(calibration)
        if chosen - {"fp32"}:
            for knob in self.option_knobs():
                params |= knob.param(options.get(knob.unit, knob.neutral))
        if runtime := self.runtime_precision_knob():
            params |= runtime.param(runtime_precision)
        return params

    def unit_params(self, per_unit: Mapping[str, str], options: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Parameters from a precision per unit (units not named stay fp32)."""
        return self._params(self._per_layer(per_unit), dict(options or {}), "minmax")

    def _per_layer(self, per_unit: Mapping[str, str]) -> dict[str, str]:
        return {layer.name: per_unit.get(unit_of(layer.name, self.granularity), "fp32") for layer in self.layers}

    def settings(self, per_unit: Mapping[str, str]) -> QuantizeSettings:
        """Settings from a precision per unit, the runtime's knobs at their defaults."""
        settings = QuantizeSettings(precisions=self._per_layer(per_unit))
        if settings.any:
            settings = settings.model_copy(update={"options": {knob.name: knob.default for knob in self.runtime_knobs}})
        return settings

    def _per_unit(self, chosen: Mapping[Knob, Any]) -> dict[str, str]:
        return {knob.unit: value for knob, value in chosen.items() if knob in set(self.precision_knobs())}

    def _runtime_precision(self, chosen: Mapping[Knob, Any]) -> str:
        return next((value for knob, value in chosen.items() if knob == self.runtime_precision_knob()), "fp32")

    def settings_for(self, chosen: Mapping[Knob, Any]) -> QuantizeSettings:
        """The section with these precision knobs set, every other unit fp32 (a sensitivity row's candidate)."""
        settings = self.settings(self._per_unit(chosen))
        return settings.model_copy(update={"runtime_precision": self._runtime_precision(chosen)})

    def params_for(self, chosen: Mapping[Knob, Any]) -> dict[str, Any]:
        """Optuna parameters with these precision knobs set, every other unit fp32 (a seed)."""
        per_layer = self._per_layer(self._per_unit(chosen))
        return self._params(per_layer, {}, "minmax", self._runtime_precision(chosen))

    def terms(self, strategy: Strategy) -> list[Term]:
        """Each layer's precision as its share of its unit (layers inside a skipped block are gone)."""
        precisions = strategy.quantize.precisions
        terms = []
        for layer, precision in precisions.items():
            if strategy.prune.skipped(layer):
                continue
            unit = unit_of(layer, self.granularity)
            share = 1.0 / sum(1 for name in precisions if unit_of(name, self.granularity) == unit)
            terms.append(Term(PRECISION, unit, precision, share))
        if self.runtime_precision_knob():
            terms.append(Term(PRECISION, RUNTIME_UNIT, strategy.quantize.runtime_precision))
        return terms

    def uniform(self, precision: str, calibration: str = "minmax", runtime_precision: str = "fp32") -> dict[str, Any]:
        """Every layer at `precision` where the device allows it (fp32 elsewhere), the knobs at their defaults."""
        return self._params({layer.name: precision for layer in self.layers}, {}, calibration, runtime_precision)

    def recipe(self, recipe: Recipe, runtime_precision: str = "fp32") -> dict[str, Any]:
        """A runtime's one-click recipe as parameters: each layer at its kind's precision where allowed."""
        precision_of = {layer.name: recipe.precisions.get(layer.kind, "fp32") for layer in self.layers}
        return self._params(precision_of, dict(recipe.options), "minmax", runtime_precision)

    @property
    def runtime_default(self) -> str | None:
        """The runtime's own choice of precision for the rest, where it differs from fp32 (OpenVINO on a CPU with
        bf16): what a user who sets nothing gets, so each recipe is also tried that way."""
        return self.runtime_precisions[-1] if len(self.runtime_precisions) > 1 else None

    def signature(self) -> str:
        units = ",".join(f"{unit}:{'/'.join(choices)}" for unit, choices in self.units().items())
        options = ",".join(f"{k.name}:{'/'.join(map(str, k.choices))}" for k in self.runtime_knobs)
        runtime = f";runtime_precisions={'/'.join(self.runtime_precisions)}" if self.runtime_default else ""
        return f"precisions={units};knobs={options}{runtime}"


def check_precisions(settings: QuantizeSettings, layers: list[QuantLayer], profile: HardwareProfile) -> None:
    """A strategy asking what the device cannot build is one line, never a silent fp32."""
    kinds = {layer.name: layer.kind for layer in layers}
    unknown = sorted(set(settings.precisions) - set(kinds))
    if unknown:
        raise ConfigError(f"strategy sets precisions of layers this model does not have: {', '.join(unknown[:3])}")
    offered = profile.record.runtime_precisions(profile)
    if settings.runtime_precision not in offered:
        raise ConfigError(
            f"strategy asks the runtime to compute in {settings.runtime_precision}, which device '{profile.name}' "
            f"does not here (it offers {', '.join(offered)}); apply it where it does, or set runtime_precision: fp32"
        )
    for layer, precision in sorted(settings.precisions.items()):
        allowed = profile.precision_choices(kinds[layer])
        if precision not in allowed:
            raise ConfigError(
                f"strategy puts layer '{layer}' ({kinds[layer]}) in {precision}, which device '{profile.name}' "
                f"does not build ({kinds[layer]}: {', '.join(allowed)}); pick a device that does, or edit the strategy"
            )
