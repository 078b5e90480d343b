"""A knob is one Optuna parameter, as an object made by the step that owns it.

The step (compress/prune.py, quantize.py, distill.py, or a step added from outside, spaces/added.py) is the only
place a parameter's name is spelled. Everything else — the sensitivity table, the seeds, the depth step, promotion,
polish, run views — asks the knob: its name, its choices, how to suggest it, how to read it back from a trial's
parameters and how to write a value into them. Example (the digits ResNet on `cpu`)::

    knob = space.prune.skip_knobs()[0]          # Categorical(name="skip/stage2.1", kind="skip", unit="stage2.1", ...)
    knob.read(trial.params)                     # True if the trial skipped the block (None if it was not asked)
    params | knob.param(True)                   # the same candidate with the block skipped

A knob also says what the sensitivity stage measures of it alone (`probes`, each value with everything else
untouched) and which value leaves the model as it was (`neutral`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import optuna

    from autocompress.spaces.strategy import Strategy


@dataclass(frozen=True, kw_only=True)
class Knob:
    """One parameter: `kind` and `unit` place it in the sensitivity table (e.g. kind "precision", unit "fc"); a
    model-wide knob (a criterion, a loss) has no unit and no probes."""

    name: str
    kind: str = ""
    unit: str = ""
    neutral: Any = None  # the value that leaves the model as it was (None: no such value)
    probes: tuple[Any, ...] = ()  # values the sensitivity stage measures alone

    def suggest(self, trial: optuna.Trial) -> Any:
        raise NotImplementedError

    def read(self, params: Mapping[str, Any], default: Any = None) -> Any:
        """The value in a trial's parameters (`default` where the trial was not asked this knob)."""
        return params.get(self.name, default)

    def param(self, value: Any) -> dict[str, Any]:
        """The parameter that sets this knob to `value`, to merge into a trial's parameters."""
        return {self.name: value}

    def owns(self, name: str) -> bool:
        return name == self.name


@dataclass(frozen=True, kw_only=True)
class Categorical(Knob):
    choices: tuple[Any, ...]

    def suggest(self, trial: optuna.Trial) -> Any:
        return trial.suggest_categorical(self.name, list(self.choices))


@dataclass(frozen=True, kw_only=True)
class FloatRange(Knob):
    low: float
    high: float
    step: float | None = None
    log: bool = False

    def suggest(self, trial: optuna.Trial) -> float:
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)


@dataclass(frozen=True, kw_only=True)
class IntRange(Knob):
    low: int
    high: int

    def suggest(self, trial: optuna.Trial) -> int:
        return trial.suggest_int(self.name, self.low, self.high)


@dataclass(frozen=True)
class Term:
    """One knob's part in a strategy's additive estimate (search/seeds.py): the sensitivity table's row for
    (kind, unit) at `value`, times `weight` (the share of the unit this strategy sets); `interpolate` for a
    numeric knob whose table holds a few values only (linear through zero and them)."""

    kind: str
    unit: str
    value: Any
    weight: float = 1.0
    interpolate: bool = False


class StepKnobs(Protocol):
    """A step's part of a search space, as every stage sees it (compress/prune.py's PruneKnobs, quantize.py's
    QuantizeKnobs, distill.py's DistillKnobs, spaces/added.py's AddedKnobs)."""

    def knobs(self) -> list[Knob]:
        """Every parameter the step may ask for."""
        ...

    def terms(self, strategy: Strategy) -> list[Term]:
        """What the strategy's section sets, as terms of the additive estimate."""
        ...


def probes(step: StepKnobs) -> list[tuple[Knob, Any]]:
    """Each single choice of a step worth measuring alone: its knobs' probe values, in order."""
    return [(knob, value) for knob in step.knobs() for value in knob.probes]


def without(params: Mapping[str, Any], knobs: Sequence[Knob]) -> dict[str, Any]:
    """The parameters less those of these knobs."""
    return {name: value for name, value in params.items() if not any(knob.owns(name) for knob in knobs)}


def only(params: Mapping[str, Any], knobs: Sequence[Knob]) -> dict[str, Any]:
    """The parameters of these knobs."""
    return {name: value for name, value in params.items() if any(knob.owns(name) for knob in knobs)}
