"""The Strategy: the contract between the search and everything else.

Plain frozen data with a YAML round trip, so `autocompress apply strategy.yaml` rebuilds an artifact with
no study at all. Example (digits, abridged)::

    schema_version: 1
    seed: 1234
    prune:
      importance: l2
      ratios: {stem.0: 0.25, stage1.0.conv1: 0.5}
    quantize:
      calibration: minmax
      precisions: {stem.0: fp32, stage1.0.conv1: int8, fc: int8}
    distill: {steps: 100, loss: kl, temperature: 4.0, alpha: 0.7, lr: 0.001, hidden_weight: 0.0}
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from autocompress.errors import ConfigError

SCHEMA_VERSION = 1
Importance = Literal["l1", "l2", "fpgm", "bn_scale"]
Calibration = Literal["minmax", "entropy", "percentile"]
DistillLoss = Literal["kl", "mse", "cosine"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PruneSettings(_Frozen):
    """Structured pruning: a fraction of output channels removed per torch-pruning group (keyed by root layer)."""

    importance: Importance = "l2"
    ratios: dict[str, float] = Field(default_factory=dict)

    @property
    def mean_ratio(self) -> float:
        return sum(self.ratios.values()) / len(self.ratios) if self.ratios else 0.0


class QuantizeSettings(_Frozen):
    """Per-layer precision (layer = torch module name of a Conv/Linear) and the calibration method."""

    calibration: Calibration = "minmax"
    precisions: dict[str, str] = Field(default_factory=dict)

    def layers_at(self, precision: str) -> list[str]:
        return sorted(name for name, value in self.precisions.items() if value == precision)


class DistillSettings(_Frozen):
    """Knowledge distillation from the original model: steps (0 = none), the loss on the outputs (kl on softened
    logits with a temperature; mse or cosine for embeddings), teacher weight alpha, lr, and the weight of
    matching the task's hidden states (0 = outputs only)."""

    steps: int = Field(default=0, ge=0)
    loss: DistillLoss = "kl"
    temperature: float = Field(default=4.0, gt=0)
    alpha: float = Field(default=0.5, ge=0, le=1)
    lr: float = Field(default=1e-3, gt=0)
    hidden_weight: float = Field(default=0.0, ge=0)


class Strategy(_Frozen):
    """One compression candidate, fully specified; the compressor applies exactly this."""

    schema_version: int = SCHEMA_VERSION
    seed: int = 0
    device: str | None = None  # the hardware profile it was found for (set on export; `apply` defaults to it)
    prune: PruneSettings = Field(default_factory=PruneSettings)
    quantize: QuantizeSettings = Field(default_factory=QuantizeSettings)
    distill: DistillSettings = Field(default_factory=DistillSettings)

    @property
    def is_uncompressed(self) -> bool:
        """Nothing pruned and every layer fp32: the original computation (distillation alone changes no speed)."""
        pruned = any(ratio > 0 for ratio in self.prune.ratios.values())
        return not pruned and all(precision == "fp32" for precision in self.quantize.precisions.values())

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(), sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str) -> Strategy:
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ConfigError(f"strategy is not valid YAML: {str(error).splitlines()[0]}") from None
        if not isinstance(raw, dict):
            raise ConfigError("strategy must be a YAML mapping with prune, quantize and distill sections")
        version = raw.get("schema_version", SCHEMA_VERSION)
        if version != SCHEMA_VERSION:
            raise ConfigError(
                f"strategy schema_version {version} is not supported (this autocompress reads {SCHEMA_VERSION})"
            )
        try:
            return cls(**raw)
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise ConfigError(f"strategy: {where}: {first['msg']}") from None

    def save(self, path: Path) -> None:
        path.write_text(self.to_yaml())

    @classmethod
    def load(cls, path: Path) -> Strategy:
        try:
            return cls.from_yaml(path.read_text())
        except OSError as error:
            raise ConfigError(f"cannot read strategy file {path}: {error.strerror}") from None

    def summary(self) -> dict[str, float | int | str]:
        """Flat, comparable parameters for MLflow: the full strategy goes in as a YAML artifact."""
        return {
            "prune.mean_ratio": round(self.prune.mean_ratio, 4),
            "prune.max_ratio": max(self.prune.ratios.values(), default=0.0),
            "prune.importance": self.prune.importance,
            **{
                f"quantize.{p}_layers": len(self.quantize.layers_at(p))
                for p in ("int8", "int16", "fp16", "int4", "fp32")
            },
            "quantize.calibration": self.quantize.calibration,
            "distill.steps": self.distill.steps,
            "distill.loss": self.distill.loss,
            "distill.hidden_weight": self.distill.hidden_weight,
            "distill.temperature": self.distill.temperature,
            "distill.alpha": self.distill.alpha,
            "distill.lr": self.distill.lr,
            "seed": self.seed,
        }
