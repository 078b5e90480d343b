"""Compression steps added from outside autocompress: a module that defines `STEP`, named in a config's `steps:`.

A step is its module: its settings (a plain-data Section), its knobs (spaces/knobs.py; their Optuna names are
spelled there and nowhere else), and what it does to the model (after pruning and distillation, before export).
The search samples its knobs, the sensitivity stage measures their probes alone, the seeds and the warm starts
set them (to their neutral values where they are not chosen), MLflow's run name and layer table show it, and a
strategy records its section under the module's name, so `autocompress apply` rebuilds it. Example, the whole
of a step with one knob (weight clustering; tests/extra_knob/ has a working one)::

    CLUSTERS = Categorical(name="clusters/count", kind="clusters", choices=(0, 16, 64), neutral=0, probes=(16,))

    class Clustering(AddedStep):
        settings_type = ClusteringSettings                    # a Section: count: int = 0

        def knobs(self, model, example_input):
            return (CLUSTERS,)

        def settings(self, values):
            return ClusteringSettings(count=values[CLUSTERS])

        def apply(self, model, settings, task):
            ...                                               # share each layer's weights; returns the model

    STEP = Clustering()

and in the experiment config: `steps: [clustering]` (a module beside the config file, or any importable one).
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import ValidationError

from autocompress.errors import ConfigError
from autocompress.spaces.knobs import Knob, Term
from autocompress.spaces.vocabulary import Section

if TYPE_CHECKING:
    import optuna
    import torch
    from torch import nn

    from autocompress.spaces.graph import QuantLayer
    from autocompress.spaces.strategy import Strategy
    from autocompress.task import Task


class AddedStep(ABC):
    """Subclass it in your module and set `STEP = YourStep()`."""

    settings_type: ClassVar[type[Section]]

    @abstractmethod
    def knobs(self, model: nn.Module, example_input: torch.Tensor) -> tuple[Knob, ...]:
        """The step's knobs for this model (each with a neutral value: the one that leaves the model as it was)."""

    @abstractmethod
    def settings(self, values: Mapping[Knob, Any]) -> Section:
        """The section these knob values describe (one value per knob)."""

    @abstractmethod
    def apply(self, model: nn.Module, settings: Section, task: Task) -> nn.Module:
        """The model with the step applied (it runs after pruning and distillation, before export)."""

    def values(self, settings: Section, knobs: Sequence[Knob]) -> dict[Knob, Any]:
        """The knob values a section was made from, for the sensitivity table's estimate (none: not credited)."""
        return {}

    def describe(self, settings: Section) -> list[str]:
        """Words for MLflow's run name (e.g. `sparse 0.25`); nothing by default."""
        return []

    def columns(self, settings: Section, layers: Sequence[QuantLayer]) -> dict[str, list[Any]]:
        """Columns for the layer table (one value per layer); none by default."""
        return {}


def added_step(module: str) -> AddedStep:
    """The `STEP` of a module a config or a strategy names (imported as is; a config's folder is on the path
    while its task loads); anything wrong is one line."""
    try:
        step = getattr(importlib.import_module(module), "STEP", None)
    except ImportError as error:
        raise ConfigError(f"step module '{module}' cannot be imported: {error}") from None
    if not isinstance(step, AddedStep):
        raise ConfigError(f"step module '{module}' defines no STEP = an AddedStep (autocompress.spaces.added)")
    return step


def section_of(module: str, raw: Mapping[str, Any]) -> tuple[AddedStep, Section]:
    """The step a strategy's added section belongs to, and the section validated by it."""
    step = added_step(module)
    try:
        return step, step.settings_type.model_validate(dict(raw))
    except ValidationError as error:
        first = error.errors()[0]
        raise ConfigError(f"strategy: added.{module}.{'.'.join(map(str, first['loc']))}: {first['msg']}") from None


@dataclass(frozen=True)
class AddedKnobs:
    """An added step's part of a search space: the knobs it offers for one model."""

    module: str
    step: AddedStep
    offered: tuple[Knob, ...]

    @classmethod
    def for_model(cls, module: str, model: nn.Module, example_input: torch.Tensor) -> AddedKnobs:
        step = added_step(module)
        return cls(module, step, tuple(step.knobs(model, example_input)))

    def knobs(self) -> list[Knob]:
        return list(self.offered)

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        return self.step.settings({knob: knob.suggest(trial) for knob in self.offered}).model_dump()

    def settings_for(self, chosen: Mapping[Knob, Any]) -> dict[str, Any]:
        """The section with these knob values, the others neutral."""
        return self.step.settings({knob: chosen.get(knob, knob.neutral) for knob in self.offered}).model_dump()

    def params_for(self, chosen: Mapping[Knob, Any]) -> dict[str, Any]:
        """Optuna parameters with these knob values, the others neutral (warm starts and seeds)."""
        params: dict[str, Any] = {}
        for knob in self.offered:
            params |= knob.param(chosen.get(knob, knob.neutral))
        return params

    def terms(self, strategy: Strategy) -> list[Term]:
        raw = strategy.added.get(self.module)
        if raw is None:
            return []
        _, settings = section_of(self.module, raw)
        values = self.step.values(settings, self.offered)
        return [Term(knob.kind, knob.unit, value) for knob, value in values.items() if value != knob.neutral]

    def signature(self) -> str:
        return f"{self.module}:" + ",".join(knob.name for knob in self.offered)
