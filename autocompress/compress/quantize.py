"""Per-layer precision: its settings, its knobs in the search space, and the check that a device can build it.

The step itself is runtime-specific (each runtime's builder quantizes exactly the strategy's layers, see
autocompress/runtimes/); what is shared lives here. Knobs (Optuna parameter names): `precision/<unit>` per
layer unit, from the precisions the device's profile allows for that layer's kind, and `quantize/calibration`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from autocompress.errors import ConfigError
from autocompress.spaces.graph import QuantLayer, quant_layers
from autocompress.spaces.vocabulary import Granularity, Precision, Section, unit_of

if TYPE_CHECKING:
    import optuna
    import torch
    from torch import nn

    from autocompress.hardware.profile import HardwareProfile

Calibration = Literal["minmax", "entropy", "percentile"]


class QuantizeSettings(Section):
    """Per-layer precision (layer = torch module name of a Conv/Linear) and the calibration method."""

    calibration: Calibration = "minmax"
    precisions: dict[str, Precision] = Field(default_factory=dict)

    def layers_at(self, precision: str) -> list[str]:
        return sorted(name for name, value in self.precisions.items() if value == precision)

    @property
    def any(self) -> bool:
        return any(precision != "fp32" for precision in self.precisions.values())

    def summary(self) -> dict[str, int | str]:
        counts = {f"quantize.{p}_layers": len(self.layers_at(p)) for p in ("int8", "int16", "fp16", "int4", "fp32")}
        return counts | {"quantize.calibration": self.calibration}


@dataclass(frozen=True)
class QuantizeKnobs:
    """The precision part of a search space: each layer's choices on the device, shared per granularity."""

    layers: tuple[QuantLayer, ...]
    choices: dict[str, tuple[str, ...]]  # layer -> precisions its kind may take on the device (fp32 included)
    granularity: Granularity = "layer"
    calibrations: tuple[str, ...] = ("minmax", "entropy", "percentile")

    @classmethod
    def for_model(
        cls, model: nn.Module, example_input: torch.Tensor, profile: HardwareProfile, **ranges: Any
    ) -> QuantizeKnobs:
        layers = tuple(quant_layers(model, example_input))
        return cls(layers, {layer.name: tuple(profile.precision_choices(layer.kind)) for layer in layers}, **ranges)

    def units(self) -> dict[str, list[str]]:
        """Each shared precision knob with the choices every layer in it supports (knobs with one choice drop)."""
        units: dict[str, list[str]] = {}
        for layer in self.layers:
            unit = unit_of(layer.name, self.granularity)
            choices = self.choices[layer.name]
            units[unit] = [c for c in units.get(unit, choices) if c in choices]
        return {unit: choices for unit, choices in units.items() if len(choices) > 1}

    def suggest(self, trial: optuna.Trial) -> QuantizeSettings:
        chosen = {
            unit: trial.suggest_categorical(f"precision/{unit}", choices) for unit, choices in self.units().items()
        }
        precisions = {layer.name: chosen.get(unit_of(layer.name, self.granularity), "fp32") for layer in self.layers}
        calibration = "minmax"
        if any(precision in ("int8", "int16") for precision in precisions.values()):  # only static int needs it
            calibration = trial.suggest_categorical("quantize/calibration", list(self.calibrations))
        return QuantizeSettings(calibration=calibration, precisions=precisions)

    def uniform(self, precision: str, calibration: str = "minmax") -> dict[str, Any]:
        """Every layer at `precision` where the device allows it (fp32 elsewhere)."""
        params: dict[str, Any] = {
            f"precision/{unit}": precision if precision in choices else "fp32" for unit, choices in self.units().items()
        }
        if precision in ("int8", "int16") and params:
            params["quantize/calibration"] = calibration
        return params

    def signature(self) -> str:
        return "precisions=" + ",".join(f"{unit}:{'/'.join(choices)}" for unit, choices in self.units().items())


def check_precisions(settings: QuantizeSettings, layers: list[QuantLayer], profile: HardwareProfile) -> None:
    """A strategy asking what the device cannot build is one line, never a silent fp32."""
    kinds = {layer.name: layer.kind for layer in layers}
    unknown = sorted(set(settings.precisions) - set(kinds))
    if unknown:
        raise ConfigError(f"strategy sets precisions of layers this model does not have: {', '.join(unknown[:3])}")
    for layer, precision in sorted(settings.precisions.items()):
        allowed = profile.precision_choices(kinds[layer])
        if precision not in allowed:
            raise ConfigError(
                f"strategy puts layer '{layer}' ({kinds[layer]}) in {precision}, which device '{profile.name}' "
                f"does not build ({kinds[layer]}: {', '.join(allowed)}); pick a device that does, or edit the strategy"
            )
