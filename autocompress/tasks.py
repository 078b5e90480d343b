"""Turn an ExperimentConfig into a Task: a built-in example, or the user's model, data and metric functions."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from autocompress.config import ExperimentConfig
from autocompress.errors import ConfigError
from autocompress.spaces.transformers import hf_attention_hints
from autocompress.task import BUILTIN_METRICS, DataSplits, Metric, Task, resolve_callable

EXAMPLES: dict[str, str] = {
    "digits": "autocompress.examples.digits:load_task",
    "minilm": "autocompress.examples.minilm:load_task",
}


def _call(function: Callable[..., Any], reference: str, what: str) -> Any:
    try:
        return function()
    except ConfigError:
        raise
    except Exception as error:  # the user's code may raise anything; report it as one line
        raise ConfigError(f"{what} '{reference}' raised {type(error).__name__}: {error}".splitlines()[0]) from None


def _model(reference: str) -> tuple[nn.Module, torch.Tensor]:
    result = _call(resolve_callable(reference, "model"), reference, "model")
    if not (isinstance(result, tuple) and len(result) == 2):
        raise ConfigError(f"model '{reference}' must return (nn.Module, example_input), got {type(result).__name__}")
    model, example = result
    if not isinstance(model, nn.Module) or not isinstance(example, torch.Tensor):
        raise ConfigError(
            f"model '{reference}' must return (nn.Module, torch.Tensor), "
            f"got ({type(model).__name__}, {type(example).__name__})"
        )
    return model.eval(), example


def _data(reference: str) -> DataSplits:
    result = _call(resolve_callable(reference, "data"), reference, "data")
    if isinstance(result, DataSplits):
        return result
    if isinstance(result, dict) and {"train", "calibration", "validation"} <= set(result):
        return DataSplits(result["train"], result["calibration"], result["validation"])
    if isinstance(result, (tuple, list)) and len(result) == 3:
        return DataSplits(*result)
    raise ConfigError(
        f"data '{reference}' must return (train, calibration, validation) loaders or a dict with those keys, "
        f"got {type(result).__name__}"
    )


def _metric(reference: str) -> Metric:
    if reference in BUILTIN_METRICS:
        return BUILTIN_METRICS[reference]
    return resolve_callable(reference, "metric")


def load_task(config: ExperimentConfig) -> Task:
    """The Task a config describes; user modules are imported relative to the config file's folder."""
    if config.example is not None:
        if config.example not in EXAMPLES:
            known = ", ".join(sorted(EXAMPLES))
            raise ConfigError(f"unknown example '{config.example}': built-in examples are {known}")
        return resolve_callable(EXAMPLES[config.example], "example")()
    base = str(config.base_dir)
    if base not in sys.path:
        sys.path.insert(0, base)
    assert config.model is not None and config.data is not None
    model, example = _model(config.model)
    metric_name = config.metric.split(":")[-1]
    hints = hf_attention_hints(model)  # HF BERT-like attention found: prune whole heads, keep the residual width
    return Task(
        config.task_name,
        model,
        example,
        _data(config.data),
        _metric(config.metric),
        metric_name,
        prune_hints=hints if hints.num_heads else None,
    )
