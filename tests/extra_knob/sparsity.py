"""A compression step added from the tests folder, with one knob: unstructured magnitude sparsity.

Each Conv/Linear weight loses its smallest `fraction` of entries (set to zero; the artifact keeps its shape, so this
buys size after compression, not speed: enough to show that a step needs no change to autocompress). Its knob's
Optuna name is spelled here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from pydantic import Field
from torch import nn

from autocompress.spaces.added import AddedStep
from autocompress.spaces.knobs import Categorical, Knob
from autocompress.spaces.vocabulary import Section

FRACTION = Categorical(name="sparsity/fraction", kind="sparsity", choices=(0.0, 0.25, 0.5), neutral=0.0,
                       probes=(0.5,))  # fmt: skip


class SparsitySettings(Section):
    fraction: float = Field(default=0.0, ge=0, lt=1)


class Sparsity(AddedStep):
    settings_type = SparsitySettings

    def knobs(self, model: nn.Module, example_input: torch.Tensor) -> tuple[Knob, ...]:
        return (FRACTION,)

    def settings(self, values: Mapping[Knob, Any]) -> SparsitySettings:
        return SparsitySettings(fraction=values[FRACTION])

    def values(self, settings: SparsitySettings, knobs: Sequence[Knob]) -> dict[Knob, Any]:
        return {FRACTION: settings.fraction}

    def apply(self, model: nn.Module, settings: SparsitySettings, task: Any) -> nn.Module:
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, (nn.Conv2d, nn.Linear)) and settings.fraction > 0:
                    weight = module.weight
                    cut = int(weight.numel() * settings.fraction)
                    threshold = weight.abs().flatten().kthvalue(cut).values if cut else None
                    if threshold is not None:
                        weight.masked_fill_(weight.abs() <= threshold, 0.0)
        return model

    def describe(self, settings: SparsitySettings) -> list[str]:
        return [f"sparse {settings.fraction:g}"] if settings.fraction else []

    def columns(self, settings: SparsitySettings, layers: Sequence[Any]) -> dict[str, list[Any]]:
        return {"sparsity": [settings.fraction] * len(layers)}


STEP = Sparsity()
