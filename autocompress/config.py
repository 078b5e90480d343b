"""The experiment config: what to compress (a built-in example or the user's own model, data and metric),
for which device, and how to search. YAML files and CLI flags both end up here, validated by pydantic."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from autocompress import yamlio
from autocompress.errors import ConfigError
from autocompress.spaces.sections import ElasticSettings

DURATION = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*([smhd]?)\s*$")  # a sign, so -5 is out of range, not a typo
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def safe_name(value: str | None) -> str | None:
    """Names become folders under the home: letters, digits, '.', '_', '-', never a path or '..'."""
    if value is not None and (not SAFE_NAME.match(value) or ".." in value):
        raise ValueError(f"'{value}' must be 1-128 letters, digits, '.', '_' or '-' (it names folders under the home)")
    return value


SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str | float | int | None) -> float | None:
    """`3600`, `90m`, `8h`, `1.5d` -> seconds; None stays None."""
    if text is None or isinstance(text, (int, float)):
        return None if text is None else float(text)
    match = DURATION.match(text)
    if not match:
        raise ConfigError(f"'{text}' is not a duration: use seconds or a number with s, m, h or d (e.g. 8h)")
    return float(match.group(1)) * SECONDS[match.group(2)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SearchSettings(_Strict):
    """Budget, objectives, constraint, storage and tracking of one search."""

    trials: int | None = Field(default=30, ge=1)
    timeout: float | None = Field(default=None, gt=0, description="seconds; YAML and CLI also accept 90m, 8h")
    deadline_margin: float = Field(
        default=600, ge=0, description="a trial still running this long after the timeout is stopped and failed"
    )
    study: str | None = None
    storage: str | None = None
    tracking_uri: str | None = None
    max_drop: float = Field(default=0.01, ge=0, description="allowed metric drop (0.01 = 1 point of accuracy)")
    drop_mode: Literal["absolute", "relative"] = "absolute"
    max_size_mb: float | None = Field(default=None, gt=0)
    size_objective: bool = False
    granularity: Literal["layer", "family", "stage", "global"] | None = Field(
        default=None, description="knob sharing; None = the task's default (layer for most models)"
    )
    sampler: Literal["tpe", "random"] = Field(
        default="tpe", description="tpe (starting from warm-start candidates) or random (plain, for comparisons)"
    )
    seed: int = Field(default=0, ge=0, le=2**31 - 1, description="samplers take 0 to 2**32 - 1 (plus trials run)")
    confirm: int = Field(default=5, ge=0, description="top candidates re-measured together before export (0: none)")
    confirm_windows: int = Field(
        default=3, ge=1, le=20, description="fresh timing windows (`confirm_gap_seconds` apart) the exported winner's "
        "figure comes from, and the windows the selection may take while the machine runs slower than its best"
    )  # fmt: skip
    confirm_gap_seconds: float = Field(
        default=10.0, ge=0, le=3600, description="between the confirmation's timing windows, and twice this before "
        "the selection is timed again on a slow machine: long enough for the machine to change state"
    )  # fmt: skip
    confirm_seconds: float = Field(
        default=10.0, gt=0, description="the most one timing window of the confirmation or the sensitivity table "
        "takes (one more if its interval is still wide): shorter is quicker, its interval wider"
    )  # fmt: skip
    sensitivity: bool = Field(default=True, description="measure each choice alone first and seed the search")
    warm_starts: bool = Field(default=True, description="start from hand-made and one-click recipe candidates")
    polish_steps: int = Field(
        default=0, ge=0, description="after the budget, distil the pruned candidate nearest the bound and faster "
        "than the best this many steps (search/polish.py); 0: off"
    )  # fmt: skip
    elastic: ElasticSettings | None = Field(
        default=None, description="train an elastic model once per study (budget_s: 2h, or steps) and extract "
        "pruned candidates from it instead of distilling each (compress/elastic_store.py); none: off"
    )  # fmt: skip

    _study_name = field_validator("study")(safe_name)

    @field_validator("timeout", "deadline_margin", mode="before")
    @classmethod
    def _duration(cls, value: object) -> float | None:
        return parse_duration(value)  # type: ignore[arg-type]

    @field_validator("elastic", mode="before")
    @classmethod
    def _elastic_budget(cls, value: object) -> object:
        if isinstance(value, dict) and isinstance(value.get("budget_s"), str):
            return value | {"budget_s": parse_duration(value["budget_s"])}
        return value

    @model_validator(mode="after")
    def _relative_bound_is_a_fraction(self) -> SearchSettings:
        if self.drop_mode == "relative" and self.max_drop > 1:
            raise ValueError(
                f"max_drop {self.max_drop:g} with drop_mode relative is above 100% of the baseline metric: "
                "give a fraction (0.05 = 5%)"
            )
        return self

    @model_validator(mode="after")
    def _time_budget_alone(self) -> SearchSettings:
        """A timeout without a trial count is the whole budget (an overnight search is not capped at 30)."""
        if self.timeout is not None and "trials" not in self.model_fields_set:
            self.trials = None
        return self


class ExperimentConfig(_Strict):
    """Either `example` or all of `model` and `data` (`package.module:function`); `metric` defaults to accuracy."""

    name: str | None = None
    example: str | None = None
    model: str | None = None
    data: str | None = None
    metric: str = "accuracy"
    device: str = "cpu"
    search: SearchSettings = Field(default_factory=SearchSettings)
    space: dict[str, Any] = Field(
        default_factory=dict,
        description="narrows the search space over the task's own: granularity and any step's ranges, e.g. "
        "{max_prune_ratio: 0.5, distill_steps: [0, 50, 100], skip_blocks: false} (spaces/space.py)",
    )
    steps: list[str] = Field(
        default_factory=list,
        description="modules that add a compression step (each defines STEP, spaces/added.py), imported relative to "
        "this file's folder",
    )
    base_dir: Path = Field(default_factory=Path.cwd, exclude=True)

    _name = field_validator("name")(safe_name)

    @model_validator(mode="after")
    def _one_task(self) -> ExperimentConfig:
        if self.example is None and (self.model is None or self.data is None):
            raise ValueError("name a built-in `example`, or give both `model` and `data` as package.module:function")
        if self.example is not None and (self.model or self.data):
            raise ValueError("give either `example` or `model`+`data`, not both")
        return self

    @property
    def task_name(self) -> str:
        return self.name or self.example or (self.model or "task").split(":")[-1]


def load_config(path: Path) -> ExperimentConfig:
    """Read and validate an experiment YAML; every problem is one line naming the file and the field."""
    try:
        raw = yamlio.load(path.read_text())
    except OSError as error:
        raise ConfigError(f"cannot read config {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"config {path} is not valid YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config {path} must be a YAML mapping (model, data, metric, device, search)")
    return validate_config(raw, base_dir=path.resolve().parent, source=str(path))


def validate_config(raw: dict, base_dir: Path, source: str = "config") -> ExperimentConfig:
    try:
        return ExperimentConfig(**raw, base_dir=base_dir)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "config"
        message = str(first["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"{source}: {where}: {message}") from None
