"""The sections of a Strategy, one per compression step, as plain data (pydantic only, no torch).

Everything that reads or writes a strategy (runtime records, profiles, `apply`, the study's records, MLflow
views) imports them from here, never from the steps in compress/, so a strategy.yaml is read without the build
stack. Each step (compress/prune.py, quantize.py, distill.py) applies its section and owns its knobs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, model_validator

from autocompress.spaces.vocabulary import PRECISIONS, STATIC_INT, Precision, Ratio, RuntimePrecision, Section

Importance = Literal["l1", "l2", "fpgm", "bn_scale", "obs"]
Calibration = Literal["minmax", "entropy", "percentile"]
DistillLoss = Literal["kl", "mse", "cosine"]
ElasticImportance = Literal["l1", "l2", "taylor", "obs"]


class PruneSettings(Section):
    """Structured pruning: whole blocks skipped, then a fraction of output channels removed per torch-pruning group
    (keyed by root layer; a group whose root is in a skipped block is gone with it)."""

    importance: Importance = "l2"
    ratios: dict[str, Ratio] = Field(default_factory=dict)  # 1 would remove every channel: refused, as is < 0
    skip: list[str] = Field(default_factory=list)
    reconstruct: bool = False  # re-fit the layers that read pruned channels (off in strategies written before it)

    @property
    def mean_ratio(self) -> float:
        return sum(self.ratios.values()) / len(self.ratios) if self.ratios else 0.0

    @property
    def any(self) -> bool:
        return bool(self.skip) or any(ratio > 0 for ratio in self.ratios.values())

    @property
    def needs_recovery(self) -> bool:
        """Something was pruned that re-fitting does not repair (skipped blocks, or any pruning without it): the
        candidate needs distillation."""
        return bool(self.skip) or (self.any and not self.reconstruct)

    def skipped(self, layer: str) -> bool:
        """Whether a layer (or group root) is inside a skipped block."""
        return any(layer == block or layer.startswith(f"{block}.") for block in self.skip)

    def describe(self) -> list[str]:
        """Its words in a run's name: the mean ratio, the blocks skipped."""
        return ([f"prune {self.mean_ratio:.2f}"] if self.mean_ratio > 0 else []) + (
            [f"skip {len(self.skip)}"] if self.skip else []
        )

    def summary(self) -> dict[str, float | str]:
        return {
            "prune.mean_ratio": round(self.mean_ratio, 4),
            "prune.max_ratio": max(self.ratios.values(), default=0.0),
            "prune.skipped_blocks": len(self.skip),
            "prune.importance": self.importance,
            "prune.reconstruct": str(self.reconstruct),
        }


class QuantizeSettings(Section):
    """Per-layer precision (layer = torch module name of a Conv/Linear), the calibration method, the values of
    the runtime's own quantizer knobs (e.g. OpenVINO's SmoothQuant alpha; unset knobs take the runtime's default),
    and `runtime_precision`, what the runtime computes the layers left in fp32 (and the rest of the graph) with:
    bf16 on OpenVINO where the CPU has it, written into the artifact so it runs as measured."""

    calibration: Calibration = "minmax"
    precisions: dict[str, Precision] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)
    runtime_precision: RuntimePrecision = "fp32"

    def layers_at(self, precision: str) -> list[str]:
        return sorted(name for name, value in self.precisions.items() if value == precision)

    @property
    def any(self) -> bool:
        return any(precision != "fp32" for precision in self.precisions.values())

    @property
    def calibrated(self) -> bool:
        """Static integer layers take their activation ranges from the calibration split."""
        return any(precision in STATIC_INT for precision in self.precisions.values())

    def describe(self) -> list[str]:
        """Its words in a run's name: the layers per non-fp32 precision."""
        counts = Counter(self.precisions.values())
        words = [f"{precision} {count}/{len(self.precisions)}" for precision, count in sorted(counts.items())
                 if precision != "fp32"]  # fmt: skip
        return words + ([f"{self.runtime_precision} compute"] if self.runtime_precision != "fp32" else [])

    def summary(self) -> dict[str, int | str]:
        counts = {f"quantize.{p}_layers": len(self.layers_at(p)) for p in PRECISIONS}
        options = {f"quantize.{name}": str(value) for name, value in sorted(self.options.items())}
        runtime = {"quantize.runtime_precision": self.runtime_precision}
        return counts | {"quantize.calibration": self.calibration} | options | runtime


class DistillSettings(Section):
    """Knowledge distillation from the original model: steps (0 = none), the loss on the outputs (kl on softened
    logits with a temperature; mse or cosine for embeddings), teacher weight alpha, lr, and the weight of
    matching the task's hidden states (0 = outputs only)."""

    steps: int = Field(default=0, ge=0)
    loss: DistillLoss = "kl"
    temperature: float = Field(default=4.0, gt=0)
    alpha: float = Field(default=0.5, ge=0, le=1)
    lr: float = Field(default=1e-3, gt=0)
    hidden_weight: float = Field(default=0.0, ge=0)

    def describe(self) -> list[str]:
        """Its word in a run's name: the steps distilled."""
        return [f"kd{self.steps}"] if self.steps else []

    def summary(self) -> dict[str, float | int | str]:
        return {f"distill.{key}": value for key, value in self.model_dump().items()}


class ElasticSettings(Section):
    """The elastic model a strategy extracts its sub-network from (compress/elastic*.py), as data: the widths
    trained (`fractions` of each channel group, `head_fractions` of each attention group, blocks skippable with
    `depth`), the importance that orders the channels, and how it was trained: a length (`steps`, `budget_s`, or
    both: whichever ends first), the distillation loss (`hidden_weight` on the task's hidden states), the
    sandwich's random sub-networks per step, the share of training over which narrower widths open up, the share
    over which the learning rate warms up, and the seed. With the base model's fingerprint it keys the trained
    weights, so a strategy names them exactly.

    `warmup` matters for a pretrained model: Adam's first steps move every weight by about `lr` whatever its
    gradient's size (measured: MiniLM's full network fell from fidelity 1.0 to 0.979 in 6 sandwich steps at
    1e-4 without warmup)."""

    steps: int | None = Field(default=None, ge=1)
    budget_s: float | None = Field(default=None, gt=0)
    lr: float = Field(default=1e-3, gt=0)
    loss: DistillLoss = "kl"
    temperature: float = Field(default=4.0, gt=0)
    alpha: float = Field(default=0.7, ge=0, le=1)
    hidden_weight: float = Field(default=0.0, ge=0)
    random_configs: int = Field(default=2, ge=0)
    shrink_fraction: float = Field(default=0.5, ge=0, le=1)
    warmup: float = Field(default=0.0, ge=0, lt=1)
    importance: ElasticImportance = "l2"
    fractions: tuple[float, ...] = Field(default=(1.0, 0.75, 0.5, 0.25), min_length=2)
    head_fractions: tuple[float, ...] | None = None
    depth: bool = True
    seed: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _has_a_length_and_widths(self) -> ElasticSettings:
        if self.steps is None and self.budget_s is None:
            raise ValueError("elastic training needs `steps` or `budget_s`")
        for given in (self.fractions, self.head_fractions or (1.0,)):
            if any(not 0 < fraction <= 1 for fraction in given) or 1.0 not in given:
                raise ValueError(f"elastic fractions must be in (0, 1] and include 1; got {list(given)}")
        return self

    @property
    def distill(self) -> DistillSettings:
        return DistillSettings(loss=self.loss, temperature=self.temperature, alpha=self.alpha, lr=self.lr,
                               hidden_weight=self.hidden_weight)  # fmt: skip

    def over(self, defaults: Mapping[str, Any]) -> ElasticSettings:
        """These settings over a model's own (`Task.elastic`, e.g. a pretrained transformer's gentle learning
        rate): what the user set wins, the rest is the model's, then the generic defaults."""
        if not defaults:
            return self
        return ElasticSettings.model_validate(dict(defaults) | self.model_dump(include=self.model_fields_set))
