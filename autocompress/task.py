"""A task is what the search compresses and how it is judged: a trained model, data splits and a metric."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from autocompress.errors import ConfigError

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]
Metric = Callable[[np.ndarray, np.ndarray], float]


@dataclass(frozen=True)
class DataSplits:
    """Three loaders of (inputs, labels) batches; they must be re-iterable and deterministic."""

    train: Batches
    calibration: Batches
    validation: Batches


@dataclass(frozen=True)
class Task:
    """The trained model to compress, an example input for tracing, the data and the metric (higher is better)."""

    name: str
    model: nn.Module
    example_input: torch.Tensor
    data: DataSplits
    metric: Metric
    metric_name: str = "accuracy"


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
