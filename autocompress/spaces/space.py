"""The search space: the knobs a model and a device allow, composed from each compression step's own knobs.

Example: the digits ResNet on the `cpu` profile at per-layer granularity has 9 pruning groups
(`prune/stem.0` couples the stem with every conv feeding stage 1's residual sums), 16 layers with a precision
knob (`precision/stage1.0.conv1` in {int8, fp32}, ...), the importance criterion, the calibration method (when
something is int8) and the distillation knobs (when something was pruned). `granularity="family"`
shares one knob per layer of repeated blocks, `"stage"` one per top-level module (`stem`, `stage1`, ...),
`"global"` one of each for the whole model. Each step (compress/prune.py, quantize.py, distill.py) owns its
parameter names; this module only composes them and maps Optuna parameters to a Strategy and back.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from types import UnionType
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union, get_args, get_origin

import optuna
import torch
from pydantic import TypeAdapter, ValidationError
from torch import nn

from autocompress.compress.distill import DistillKnobs
from autocompress.compress.prune import PruneKnobs
from autocompress.compress.quantize import QuantizeKnobs
from autocompress.errors import ConfigError
from autocompress.hardware.profile import HardwareProfile
from autocompress.spaces.added import AddedKnobs
from autocompress.spaces.knobs import Knob, StepKnobs, Term
from autocompress.spaces.sections import ElasticSettings
from autocompress.spaces.strategy import Strategy
from autocompress.spaces.vocabulary import Granularity

if TYPE_CHECKING:
    from autocompress.task import PruneHints, Task

STEPS = {"prune": PruneKnobs, "quantize": QuantizeKnobs, "distill": DistillKnobs}
# knob fields that come from the model and the runtime, not from options
DERIVED = {"groups", "blocks", "layers", "choices", "granularity", "runtime_knobs", "recipes", "runtime_precisions"}
GRANULARITIES: tuple[str, ...] = get_args(Granularity)


def _option_type(knobs: type, name: str) -> Any:
    """The declared type of a knob field (None where it names a type only the step's module knows)."""
    declared = next(f.type for f in dataclasses.fields(knobs) if f.name == name)
    try:
        return eval(declared, vars(sys.modules[knobs.__module__])) if isinstance(declared, str) else declared
    except NameError:
        return None


def _type_name(declared: Any) -> str:
    """A declared type as a user writes the value in YAML: `a list of int`, `[float, float]`, `'kl' | 'mse'`."""
    origin, args = get_origin(declared), get_args(declared)
    if origin is Annotated:  # the range is in the message already; name the plain type
        return _type_name(args[0])
    if origin is Literal:
        return " | ".join(repr(arg) for arg in args)
    if origin in (Union, UnionType):
        return " or ".join("null" if arg is type(None) else _type_name(arg) for arg in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_type_name(args[0])}"
        return f"[{', '.join(_type_name(arg) for arg in args)}]"
    return declared.__name__ if isinstance(declared, type) else str(declared).replace("typing.", "")


def _checked(knobs: type, key: str, value: Any) -> Any:
    """The option's value as its field's type (YAML lists become tuples); a wrong one is one line."""
    declared = _option_type(knobs, key)
    if declared is None:
        return tuple(value) if isinstance(value, list) else value
    try:
        return TypeAdapter(declared).validate_python(value)
    except ValidationError as error:
        problem = error.errors()[0]
        where = "".join(f"[{part}]" for part in problem["loc"])
        raise ConfigError(
            f"space option '{key}{where}': {str(problem['msg']).removeprefix('Value error, ')} (got {value!r:.60}); "
            f"expected {_type_name(declared)}"
        ) from None


def _ranges(options: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Split a flat mapping of range options (a task's `space`, a config's `space:`) among the steps that declare
    them, each value checked against its field's type."""
    fields = {name: {f.name for f in dataclasses.fields(knobs)} - DERIVED for name, knobs in STEPS.items()}
    split: dict[str, dict[str, Any]] = {name: {} for name in STEPS}
    for key, value in options.items():
        owner = next((name for name, names in fields.items() if key in names), None)
        if owner is None:
            known = sorted({"granularity", *(f for names in fields.values() for f in names)})
            raise ConfigError(f"space option '{key}' is unknown; known options: {', '.join(known)}")
        split[owner][key] = _checked(STEPS[owner], key, value)
    return split


def check_options(options: Mapping[str, Any]) -> None:
    """Raise a one-line ConfigError for an unknown option or a value of the wrong type (before any model work)."""
    options = dict(options)
    granularity = options.pop("granularity", "layer")
    if granularity not in GRANULARITIES:
        raise ConfigError(f"space option 'granularity' is {granularity!r}; expected one of {', '.join(GRANULARITIES)}")
    _ranges(options)


def finetune_steps(distill_steps: tuple[int, ...]) -> tuple[int, ...]:
    """The fine-tune choices of an extracted candidate: none, or up to a quarter of the task's most steps (at
    least its least positive choice, so a task with only long ones keeps one)."""
    positive = [steps for steps in distill_steps if steps > 0]
    if not positive:
        return (0,)
    cap = max(max(positive) // 4, min(positive))
    return (0, *sorted({steps for steps in positive if steps <= cap}))


@dataclass(frozen=True)
class SearchSpace:
    """Derived from one model and one device; `sample` maps an Optuna trial to a Strategy."""

    prune: PruneKnobs
    quantize: QuantizeKnobs
    distill: DistillKnobs
    added: tuple[AddedKnobs, ...] = ()  # steps added from outside autocompress (spaces/added.py)
    elastic: ElasticSettings | None = None  # pruned candidates are extracted from this elastic model

    @classmethod
    def from_model(
        cls,
        model: nn.Module,
        example_input: torch.Tensor,
        profile: HardwareProfile,
        options: Mapping[str, Any] | None = None,
        hints: PruneHints | None = None,
        steps: tuple[str, ...] = (),
        elastic: ElasticSettings | None = None,
    ) -> SearchSpace:
        """`options`: granularity and any step's ranges (e.g. max_prune_ratio, distill_steps, lr); `steps`: the
        modules of added steps; `elastic`: pruned candidates come from this elastic model (see `following`)."""
        options = dict(options or {})
        granularity: Granularity = options.pop("granularity", "layer")
        ranges = _ranges(options)
        space = cls(
            PruneKnobs.for_model(model, example_input, hints, granularity=granularity, **ranges["prune"]),
            QuantizeKnobs.for_model(model, example_input, profile, granularity=granularity, **ranges["quantize"]),
            DistillKnobs(**ranges["distill"]),
            tuple(AddedKnobs.for_model(module, model, example_input) for module in steps),
        )
        if elastic is None:
            return space
        from autocompress.compress.elastic_space import ElasticSpace  # torch-pruning's graph, only when elastic
        from autocompress.compress.elastic_store import ROUND_TO

        trained = ElasticSpace.from_model(model, example_input, hints, elastic.fractions, round_to=ROUND_TO,
                                          depth=elastic.depth, head_fractions=elastic.head_fractions)  # fmt: skip
        return space.following(trained.describe(), elastic)

    def following(self, trained: Mapping[str, Any], elastic: ElasticSettings) -> SearchSpace:
        """The space of a search whose pruned candidates are extracted from an elastic model (`trained`: its
        space, described): only its dimensions and the blocks it trained skipping, ratios on its trained widths
        (each snaps to the nearest), no re-fitting, and the distillation steps a short fine-tune from the extracted
        weights: 0 included (not forced as after pruning alone) and capped at a quarter of the task's most
        (`finetune_steps`), since extracted + 50 steps reached what pruned + 200 did
        (experiments/results/elastic-finetune-probe-digits.md); with the task's full range, TPE chose long
        fine-tunes and an elastic trial cost as much as a per-candidate one (benchmark-elastic-seeds)."""
        removed = sorted({round(1.0 - fraction, 6) for fraction in elastic.fractions})
        step = min(later - earlier for earlier, later in zip(removed, removed[1:], strict=False))
        heads = elastic.head_fractions or elastic.fractions
        names = {dim["name"] for dim in trained["dims"]}
        importance = elastic.importance if elastic.importance in ("l1", "l2", "obs") else "l2"
        prune = dataclasses.replace(
            self.prune,
            groups=tuple(group for group in self.prune.groups if group.name in names),
            blocks=tuple(block for block in self.prune.blocks if block in trained["blocks"]),
            prune_step=step, max_prune_ratio=min(max(removed), self.prune.max_prune_ratio),
            max_head_ratio=min(1.0 - min(heads), self.prune.max_head_ratio),
            importances=(importance,), reconstruct=False,
        )  # fmt: skip
        distill = dataclasses.replace(self.distill, finetune_after_pruning=False,
                                      distill_steps=finetune_steps(self.distill.distill_steps))  # fmt: skip
        return dataclasses.replace(self, prune=prune, distill=distill, elastic=elastic)

    @classmethod
    def for_task(
        cls,
        task: Task,
        profile: HardwareProfile,
        granularity: Granularity | None = None,
        elastic: ElasticSettings | None = None,
    ) -> SearchSpace:
        """The space of a task on a device: the task's own ranges, at the requested granularity (None: the task's
        default, else per layer), following `elastic` where given."""
        options = dict(task.space)
        if granularity is not None:
            options["granularity"] = granularity
        return cls.from_model(task.model, task.example_input, profile, options, task.prune_hints, task.steps,
                              elastic)  # fmt: skip

    @property
    def granularity(self) -> Granularity:
        return self.prune.granularity

    @property
    def steps(self) -> tuple[StepKnobs, ...]:
        return (self.prune, self.quantize, self.distill, *self.added)

    def knobs(self) -> list[Knob]:
        """Every knob of every step."""
        return [knob for step in self.steps for knob in step.knobs()]

    def knob(self, kind: str, unit: str) -> Knob:
        """The knob a sensitivity row measured (its kind and unit)."""
        return next(knob for knob in self.knobs() if knob.kind == kind and knob.unit == unit)

    def probes(self) -> list[tuple[Knob, Any]]:
        """Every single choice the sensitivity stage measures alone: precisions first, then pruning, then the
        added steps' (the order the table has always had)."""
        ordered = (self.quantize, self.prune, *self.added)
        return [(knob, value) for step in ordered for knob in step.knobs() for value in knob.probes]

    def alone(self, knob: Knob, value: Any) -> Strategy:
        """The strategy that changes only this knob, and distils nothing (what one choice costs by itself)."""
        if knob in set(self.quantize.knobs()):
            return Strategy(quantize=self.quantize.settings_for({knob: value}))
        if knob in set(self.prune.knobs()):
            prune = self.prune.settings_for({knob: value})
            return Strategy(prune=prune, elastic=self.elastic if prune.any else None)
        owner = next(added for added in self.added if knob in set(added.knobs()))
        return Strategy(added={owner.module: owner.settings_for({knob: value})})

    def params_for(self, chosen: Mapping[Knob, Any], distill_steps: int) -> dict[str, Any]:
        """Optuna parameters of these knob values (every other unit uncompressed), distilled `distill_steps` if
        pruned beyond what re-fitting repairs."""
        prune = self.prune.settings_for(chosen)
        recover = prune.needs_recovery
        params = {**self.prune.params_for(chosen), **self.quantize.params_for(chosen)}
        for added in self.added:
            params |= added.params_for(chosen)
        return params | self.distill.uniform(distill_steps if recover else 0, recover, prune.any)

    def terms(self, strategy: Strategy) -> list[Term]:
        """What a strategy sets, as terms of the sensitivity table's additive estimate (search/seeds.py)."""
        return [term for step in self.steps for term in step.terms(strategy)]

    def sample(self, trial: optuna.Trial, seed: int) -> Strategy:
        """Ask the trial for every knob; the Strategy it returns is the whole candidate."""
        prune = self.prune.suggest(trial)
        quantize = self.quantize.suggest(trial)
        distill = self.distill.suggest(trial, recover=prune.needs_recovery, pruned=prune.any)
        added = {step.module: step.suggest(trial) for step in self.added}
        elastic = self.elastic if prune.any else None  # an unpruned candidate is the original model's
        return Strategy(seed=seed, prune=prune, quantize=quantize, distill=distill, added=added, elastic=elastic)

    def uniform(self, prune: float = 0.0, precision: str = "fp32", distill_steps: int = 0) -> dict[str, Any]:
        """Optuna parameters of a uniform candidate: every group at one ratio, every layer at one precision (where
        the device allows it), the hand-made distillation settings."""
        return self.combine(prune, self.quantize.uniform(precision), distill_steps)

    def strategy(self, params: Mapping[str, Any], seed: int = 0) -> Strategy:
        """The Strategy that Optuna parameters describe (e.g. a warm start's, to build it outside a study)."""
        return self.sample(optuna.trial.FixedTrial(dict(params)), seed)

    def combine(self, prune: float, quantize: dict[str, Any], distill_steps: int) -> dict[str, Any]:
        """Uniform pruning at `prune`, the given precision parameters, the hand-made distillation."""
        pruned = prune > 0 and bool(self.prune.ratio_units() or self.prune.head_units())
        recover = pruned and not self.prune.reconstruct  # re-fitted layers need no distillation (compress/prune.py)
        distill = self.distill.uniform(distill_steps if recover else 0, recover, pruned)
        neutral = {key: value for added in self.added for key, value in added.params_for({}).items()}
        return {**self.prune.uniform(prune), **quantize, **neutral, **distill}

    @property
    def hand_made_steps(self) -> int:
        """The distillation of a pruned candidate the search plants (warm starts, sensitivity seeds): the most
        the space offers, or, extracted from an elastic model's trained weights, the least. Its point is to need
        none, and the sensitivity table it is planted from measured its sub-networks untrained: at 400 steps
        each, digits' two pruned warm starts took 90 s of a 5-minute search, and its near-full-width seeds 46 to
        64 s each of a 15-minute one."""
        return max(self.distill.distill_steps) if self.elastic is None else min(self.distill.distill_steps)

    def warm_starts(self) -> list[tuple[str, dict[str, Any]]]:
        """The first candidates of a search: what a user would try by hand, and each of the runtime's documented
        one-click recipes. The sampler starts from their measurements, so the search never ends below these, and
        the budget goes to improving on them. Pruned ones take `hand_made_steps`."""
        most = self.hand_made_steps
        recipes = [(recipe.label, self.quantize.recipe(recipe)) for recipe in self.quantize.recipes]
        if not recipes:
            recipes = [("uniform int8", self.quantize.uniform("int8"))]
        starts = [("no compression", self.uniform())]
        starts += [(label, self.combine(0.0, params, 0)) for label, params in recipes]
        if default := self.quantize.runtime_default:  # what a user who sets nothing runs: nothing, each recipe
            nothing = self.quantize.uniform("fp32", runtime_precision=default)
            starts.append((f"the runtime's default ({default} compute)", self.combine(0.0, nothing, 0)))
            for recipe in self.quantize.recipes:
                starts.append((f"{recipe.label}, {default} compute",
                               self.combine(0.0, self.quantize.recipe(recipe, default), 0)))  # fmt: skip
        if self.prune.groups:
            label, params = recipes[0]
            starts += [
                ("uniform pruning 50%", self.uniform(0.5, "fp32", most)),
                (f"uniform pruning 50% + {label}", self.combine(0.5, params, most)),
            ]
        unique: dict[str, tuple[str, dict[str, Any]]] = {}
        for label, params in starts:  # recipes that mean the same here (e.g. no Linear layers) run once
            unique.setdefault(repr(sorted(params.items())), (label, params))
        return list(unique.values())

    def ranges(self) -> dict[str, Any]:
        """Every option of the three steps, as JSON-friendly values: a study resumed with other ranges would ask
        Optuna for other choices under the same parameter names."""
        options = {
            f.name: getattr(knobs, f.name)
            for knobs in (self.prune, self.quantize, self.distill)
            for f in dataclasses.fields(knobs)
            if f.name not in DERIVED
        }
        return {key: list(value) if isinstance(value, tuple) else value for key, value in options.items()}

    def signature(self) -> str:
        """What a stored study must match to be resumed with this space."""
        signature = f"{self.prune.signature()};{self.quantize.signature()};granularity={self.granularity}"
        signature += "".join(f";added={added.signature()}" for added in self.added)
        if self.elastic is not None:  # trials of another elastic model are not this study's
            signature += ";elastic=" + self.elastic.model_dump_json()
        return signature
