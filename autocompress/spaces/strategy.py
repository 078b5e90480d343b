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

Its sections are plain data (spaces/sections.py: pydantic, no torch), so reading a strategy needs no build stack;
each is applied by its step (compress/prune.py, quantize.py, distill.py), which also owns its knobs. The precisions
and layer kinds come from one vocabulary (spaces/vocabulary.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, SerializerFunctionWrapHandler, ValidationError, model_serializer

from autocompress import yamlio
from autocompress.errors import ConfigError
from autocompress.spaces.sections import DistillSettings, ElasticSettings, PruneSettings, QuantizeSettings
from autocompress.spaces.vocabulary import Section

SCHEMA_VERSION = 1


class Pinned(Section):
    """What an exported strategy's artifact was built from and with (written by export, checked by `apply`): the
    base model's fingerprint, the runtime and its quantizer's "auto" settings as resolved then, build and timing
    threads, and the versions of torch and the runtime's packages."""

    base_model: str
    runtime: str
    resolved: dict[str, bool | int | float | str] = Field(default_factory=dict)
    build_threads: int | None = None
    threads: int | None = None
    versions: dict[str, str] = Field(default_factory=dict)


class Strategy(Section):
    """One compression candidate, fully specified; the compressor applies exactly this."""

    schema_version: int = SCHEMA_VERSION
    seed: int = 0
    device: str | None = None  # the hardware profile it was found for (set on export; `apply` defaults to it)
    prune: PruneSettings = Field(default_factory=PruneSettings)
    quantize: QuantizeSettings = Field(default_factory=QuantizeSettings)
    distill: DistillSettings = Field(default_factory=DistillSettings)
    # the sections of steps added from outside autocompress, by module (spaces/added.py; absent when none)
    added: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # set when the pruned sub-network is extracted from the study's elastic model (compress/elastic_store.py)
    # instead of pruned and distilled alone: how that model was trained (with the base model, its key)
    elastic: ElasticSettings | None = None
    pinned: Pinned | None = None  # set on export

    @model_serializer(mode="wrap")
    def _added_only_when_any(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Strategies without added steps or an elastic model are written as before (strategy.yaml, report.json,
        the study)."""
        data = handler(self)
        if not self.added:
            data.pop("added", None)
        if self.elastic is None:
            data.pop("elastic", None)
        return data

    @property
    def is_uncompressed(self) -> bool:
        """Nothing pruned and every layer fp32: the original computation (distillation alone changes no speed)."""
        return not self.prune.any and not self.quantize.any

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(exclude=set() if self.pinned else {"pinned"}), sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str, source: str = "strategy") -> Strategy:
        """`source` starts every message (the file's name where there is one)."""
        try:
            raw = yamlio.load(text)
        except yaml.YAMLError as error:
            raise ConfigError(f"{source} is not valid YAML: {str(error).splitlines()[0]}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{source} must be a YAML mapping with prune, quantize and distill sections")
        version = raw.get("schema_version", SCHEMA_VERSION)
        if version != SCHEMA_VERSION:
            raise ConfigError(
                f"{source}: schema_version {version} is not supported (this autocompress reads {SCHEMA_VERSION})"
            )
        try:
            return cls(**raw)
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise ConfigError(f"{source}: {where}: {str(first['msg']).removeprefix('Value error, ')}") from None

    def save(self, path: Path) -> None:
        path.write_text(self.to_yaml())

    @classmethod
    def load(cls, path: Path) -> Strategy:
        try:
            return cls.from_yaml(path.read_text(), source=f"strategy {path}")
        except OSError as error:
            raise ConfigError(f"cannot read strategy file {path}: {error.strerror}") from None

    def summary(self) -> dict[str, float | int | str]:
        """Flat, comparable parameters for MLflow (each step's own); the full strategy goes in as a YAML artifact."""
        added = {f"{module.rpartition('.')[2]}.{key}": value for module, section in self.added.items()
                 for key, value in section.items()}  # fmt: skip
        return {**self.prune.summary(), **self.quantize.summary(), **self.distill.summary(), **added, "seed": self.seed}
