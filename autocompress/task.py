"""A task is what the search compresses and how it is judged: a trained model, data splits and a metric."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from autocompress.errors import ConfigError

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]
Metric = Callable[[np.ndarray, np.ndarray], float]
# axis -> (name, min, max): the exported graph accepts any size in range on that axis
DynamicAxes = Mapping[int, tuple[str, int, int]]
BATCH_AXIS: DynamicAxes = {0: ("batch", 1, 4096)}


@dataclass(frozen=True)
class DataSplits:
    """Loaders of (inputs, labels) batches; they must be re-iterable and deterministic.

    train: pruning importance, re-fitting, distillation; calibration: the quantizers; validation: every decision
    of the search; test: held out, scored once for the confirmed candidates (what the report quotes). A task
    without a test split gets one carved out of validation (autocompress/splits.py).
    """

    train: Batches
    calibration: Batches
    validation: Batches
    test: Batches | None = None
    carved: tuple[int, int] | None = None  # (test samples set aside, validation samples before) when carved

    def carving_notice(self) -> str | None:
        """What a run says once when its test split was carved out of validation."""
        if self.carved is None:
            return None
        held, count = self.carved
        return (f"the task has no test split: {held} of its {count} validation samples are set aside as test (fixed "
                f"seed); the search decides on the other {count - held}, the report quotes the test split")  # fmt: skip


@dataclass(frozen=True)
class PruneHints:
    """What the dependency graph cannot know about a model: attention heads and layers that must keep their width.

    `num_heads` maps each query/key/value Linear to its head count, so whole heads are removed together;
    `keep_width` names layers whose output channels stay (those writing a transformer's residual stream);
    `after_prune` fixes attributes that cache sizes (e.g. HF attention's `num_attention_heads`).
    """

    num_heads: Mapping[str, int] = field(default_factory=dict)
    keep_width: tuple[str, ...] = ()
    after_prune: Callable[[nn.Module], None] | None = None


@dataclass(frozen=True)
class Task:
    """The trained model to compress, an example input for tracing, the data and the metric (higher is better).

    The optional fields describe models beyond plain classifiers: `dynamic_axes` exports e.g. a variable
    sequence length, `prune_hints` prunes attention by whole heads, `distill_layers` names modules whose
    outputs the student matches (hidden states), `extra_metrics` are reported but not optimised, `space` narrows
    the search to what the model can afford (granularity and any step's ranges, e.g. {"max_prune_ratio": 0.25};
    see spaces/space.py), `elastic` the elastic training settings measured to suit it (e.g. a pretrained
    transformer's learning rate, for what a config leaves unset under `search.elastic`), `runtimes` restricts the
    runtimes it may be exported to, and `steps` names modules that add a compression step (spaces/added.py).
    """

    name: str
    model: nn.Module
    example_input: torch.Tensor
    data: DataSplits
    metric: Metric
    metric_name: str = "accuracy"
    dynamic_axes: DynamicAxes = field(default_factory=lambda: dict(BATCH_AXIS))
    prune_hints: PruneHints | None = None
    distill_layers: tuple[str, ...] = ()
    extra_metrics: Mapping[str, Metric] = field(default_factory=dict)
    space: Mapping[str, Any] = field(default_factory=dict)
    elastic: Mapping[str, Any] = field(default_factory=dict)  # its elastic training's defaults (ElasticSettings.over)
    runtimes: tuple[str, ...] | None = None
    steps: tuple[str, ...] = ()  # modules of compression steps added from outside autocompress (spaces/added.py)


def accuracy(outputs: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy as a fraction in [0, 1]: argmax of the logits against integer labels."""
    return float(np.mean(np.argmax(outputs, axis=-1) == labels))


BUILTIN_METRICS: dict[str, Metric] = {"accuracy": accuracy}


def resolve_callable(reference: str, what: str) -> Callable[..., Any]:
    """Import `package.module:function`; any failure is a one-line ConfigError naming the reference."""
    module_name, sep, attribute = reference.partition(":")
    if not sep or not module_name or not attribute:
        raise ConfigError(f"{what} '{reference}' is not of the form package.module:function")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ConfigError(f"{what} '{reference}': cannot import module '{module_name}' ({error})") from None
    function = getattr(module, attribute, None)
    if function is None:
        raise ConfigError(f"{what} '{reference}': module '{module_name}' has no attribute '{attribute}'")
    if not callable(function):
        raise ConfigError(f"{what} '{reference}': '{attribute}' is not callable")
    return function
