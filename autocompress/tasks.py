"""Turn an ExperimentConfig into a Task: a built-in example, or the user's model, data and metric functions.

What the user's functions return is checked once, here, before any work (autocompress/task_checks.py): each
mistake is one line naming the function and what it returned or raised.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from autocompress.config import ExperimentConfig
from autocompress.errors import ConfigError
from autocompress.examples import EXAMPLES, check_example
from autocompress.runtimes import importable_from
from autocompress.spaces.added import added_step
from autocompress.spaces.space import check_options
from autocompress.spaces.transformers import hf_attention_hints
from autocompress.splits import with_test_split
from autocompress.task import BUILTIN_METRICS, DataSplits, Metric, Task, resolve_callable
from autocompress.task_checks import Sources, check_task, first_line


def _call(function: Callable[..., Any], reference: str, what: str) -> Any:
    try:
        return function()
    except ConfigError:
        raise
    except Exception as error:  # the user's code may raise anything; report it as one line
        raise ConfigError(f"{what} '{reference}' raised {first_line(error)}") from None


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
    model.eval()
    return model, example


def _data(reference: str) -> DataSplits:
    result = _call(resolve_callable(reference, "data"), reference, "data")
    if isinstance(result, DataSplits):
        return result
    if isinstance(result, dict) and {"train", "calibration", "validation"} <= set(result):
        unknown = set(result) - {"train", "calibration", "validation", "test"}
        if unknown:
            raise ConfigError(f"data '{reference}' returned unknown split(s) {', '.join(sorted(map(str, unknown)))}: "
                              "the splits are train, calibration, validation and (optional) test")  # fmt: skip
        return DataSplits(result["train"], result["calibration"], result["validation"], result.get("test"))
    if isinstance(result, (tuple, list)) and len(result) in (3, 4):
        return DataSplits(*result)
    raise ConfigError(
        f"data '{reference}' must return (train, calibration, validation[, test]) loaders or a dict with those "
        f"keys, got {type(result).__name__}"
    )


def _metric(reference: str) -> Metric:
    if reference in BUILTIN_METRICS:
        return BUILTIN_METRICS[reference]
    return resolve_callable(reference, "metric")


def load_task(config: ExperimentConfig) -> Task:
    """The Task a config describes; user modules are imported relative to the config file's folder (which is on
    sys.path only while they are imported)."""
    check_options(config.space)  # before the model loads: a typo in the space costs no waiting
    if config.example is not None:
        check_example(config.example)
        example = resolve_callable(EXAMPLES[config.example], "example")()
        return _with_steps(_with_space(with_test_split(example), config.space), config)
    assert config.model is not None and config.data is not None
    with importable_from(config.base_dir):
        model, example = _model(config.model)
        data = _data(config.data)
        metric = _metric(config.metric)
    hints = hf_attention_hints(model)  # HF BERT-like attention found: prune whole heads, keep the residual width
    task = Task(
        config.task_name,
        model,
        example,
        data,
        metric,
        config.metric.split(":")[-1],
        prune_hints=hints if hints.num_heads else None,
    )
    check_task(task, Sources(config.model, config.data, config.metric))
    return _with_steps(_with_space(with_test_split(task), config.space), config)


def _with_steps(task: Task, config: ExperimentConfig) -> Task:
    """The config's added steps, imported now (from the config's folder) so a mistake is one line before any
    work, and so the pipeline finds them by module name later."""
    if not config.steps:
        return task
    with importable_from(config.base_dir):
        for module in config.steps:
            added_step(module)
    return dataclasses.replace(task, steps=tuple(config.steps))


def _with_space(task: Task, space: dict[str, Any]) -> Task:
    """The config's `space:` options over the task's own (the config wins, option by option)."""
    return dataclasses.replace(task, space={**task.space, **space}) if space else task
