"""Every check of a user's own model, data and metric, in one place, run once when a config is loaded.

What a user's functions return enters autocompress here and nowhere else: the search, the builders and the
device code then rely on it. Each mistake is one line naming the function, what it returned (or raised) and what
was expected, and the CLI exits 2; nothing is left to fail later inside a trial, where it would look like a
candidate's fault. Checked, in order:

1. each split is a re-iterable, non-empty loader of (inputs, labels) pairs of tensors;
2. its inputs have the example input's dtype and, on every axis the export fixes, its size; its labels one per
   input;
3. the model, on the example input, on a real training batch and on every validation batch, returns one tensor
   whose first axis is the batch (not a tuple or a dict: the runtimes return one output, and the metric scores
   one array);
4. the labels are what the metric scores: the built-in `accuracy` takes integer class indices of shape (batch,),
   each below the model's number of outputs;
5. the metric, once, on the whole validation split as the search will give it (outputs and labels of every batch
   joined), returns a finite number.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from autocompress.errors import ConfigError
from autocompress.task import Batches, DataSplits, Task

SPLITS = ("train", "calibration", "validation", "test")


@dataclass(frozen=True)
class Sources:
    """The config's references to the user's functions, which every message names."""

    model: str
    data: str
    metric: str


def first_line(error: BaseException) -> str:
    """An exception as `Type: first line of its message`, at most 300 characters."""
    return f"{type(error).__name__}: {error}".splitlines()[0][:300]


def describe(value: Any) -> str:
    """What a user's function returned, in a few words: a tensor's shape and dtype, a container's length."""
    if torch.is_tensor(value):
        return f"a {str(value.dtype).removeprefix('torch.')} tensor of shape {tuple(value.shape)}"
    if isinstance(value, dict):
        return f"a dict with keys {', '.join(map(repr, list(value)[:4]))}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)}"
    return f"a {type(value).__name__}"


def check_loaders(data: DataSplits, reference: str) -> None:
    """Each split is re-iterable (every build reads them again) and yields (inputs, labels) tensor pairs."""
    for split in SPLITS:
        loader = getattr(data, split)
        if loader is None and split == "test":
            continue  # carved out of validation later (splits.py)
        if isinstance(loader, Iterator) or not hasattr(loader, "__iter__"):
            raise ConfigError(
                f"data '{reference}': the {split} loader is a {type(loader).__name__}, which can be read only once; "
                "return a list of batches or a DataLoader"
            )
        try:
            batch = next(iter(loader), None)
        except Exception as error:  # the user's loader may raise anything
            raise ConfigError(f"data '{reference}': reading the {split} loader raised {first_line(error)}") from None
        if batch is None:
            raise ConfigError(f"data '{reference}': the {split} loader is empty")
        _pair(batch, reference, split)


def _pair(batch: Any, reference: str, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    if not (isinstance(batch, (tuple, list)) and len(batch) == 2 and all(torch.is_tensor(x) for x in batch)):
        raise ConfigError(
            f"data '{reference}': {split} batches must be (inputs, labels) pairs of tensors, got {describe(batch)}"
        )
    return batch[0], batch[1]


def check_batch(inputs: torch.Tensor, labels: torch.Tensor, task: Task, reference: str, split: str) -> None:
    """Inputs as the exported model takes them (the example's dtype, its size on every fixed axis), one label per
    input."""
    example = task.example_input
    where = f"data '{reference}': {split} inputs"
    if inputs.dtype != example.dtype:
        raise ConfigError(
            f"{where} are {str(inputs.dtype).removeprefix('torch.')}, but the model's example input is "
            f"{str(example.dtype).removeprefix('torch.')} (the exported model takes that): give inputs of one dtype"
        )
    if inputs.dim() != example.dim() or inputs.shape[0] == 0:
        raise ConfigError(f"{where} have shape {tuple(inputs.shape)}; the example input has shape "
                          f"{tuple(example.shape)} (a batch of them, first axis the batch)")  # fmt: skip
    fixed = [axis for axis in range(1, example.dim()) if axis not in task.dynamic_axes]
    if any(inputs.shape[axis] != example.shape[axis] for axis in fixed):
        raise ConfigError(f"{where} have shape {tuple(inputs.shape)}, but the example input {tuple(example.shape)} "
                          "fixes every axis but the batch in the exported model")  # fmt: skip
    if labels.dim() == 0 or labels.shape[0] != inputs.shape[0]:
        raise ConfigError(
            f"data '{reference}': a {split} batch has {inputs.shape[0]} inputs but labels of shape "
            f"{tuple(labels.shape)}: give one label per input (first axis the batch)"
        )


def check_output(output: Any, batch: int, sources: Sources, on: str) -> torch.Tensor:
    """The model's output on a batch of `batch` inputs: one tensor whose first axis is that batch."""
    if not torch.is_tensor(output):
        raise ConfigError(
            f"model '{sources.model}' returned {describe(output)} on {on}; it must return one tensor of shape "
            "(batch, ...): wrap the model so that forward returns the tensor the metric scores (e.g. the logits)"
        )
    if output.dim() == 0 or output.shape[0] != batch:
        raise ConfigError(
            f"model '{sources.model}' returned a tensor of shape {tuple(output.shape)} on {on} of {batch} inputs; "
            f"its first axis must be the batch ({batch})"
        )
    return output


def _forward(task: Task, inputs: torch.Tensor, sources: Sources, on: str) -> torch.Tensor:
    try:
        with torch.no_grad():
            output = task.model(inputs)
    except Exception as error:  # the user's forward may raise anything
        raise ConfigError(f"model '{sources.model}' fails on {on} of shape {tuple(inputs.shape)}: "
                          f"{first_line(error)}") from None  # fmt: skip
    return check_output(output, inputs.shape[0], sources, on)


def _batches(loader: Batches, reference: str, split: str) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """(index, inputs, labels) of every batch; a loader that raises part-way is named with the batch."""
    iterator = iter(loader)
    index = 0
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except Exception as error:  # the user's loader may raise anything
            raise ConfigError(f"data '{reference}': reading the {split} loader raised {first_line(error)} at batch "
                              f"{index + 1}, after {index} good ones") from None  # fmt: skip
        inputs, labels = _pair(batch, reference, split)
        yield index, inputs, labels
        index += 1


def read_validation(task: Task, sources: Sources) -> tuple[np.ndarray, np.ndarray]:
    """Every validation batch read once and run through the model; the outputs and labels joined as the search
    joins them to score an artifact."""
    outputs, labels = [], []
    for index, inputs, batch_labels in _batches(task.data.validation, sources.data, "validation"):
        check_batch(inputs, batch_labels, task, sources.data, "validation")
        outputs.append(_forward(task, inputs, sources, f"validation batch {index + 1}").numpy())
        labels.append(batch_labels.numpy())
    for name, arrays in (("outputs", outputs), ("labels", labels)):
        shapes = {array.shape[1:] for array in arrays}
        if len(shapes) > 1:
            owner = f"model '{sources.model}'" if name == "outputs" else f"data '{sources.data}'"
            raise ConfigError(
                f"{owner}: the validation {name} differ in shape beyond the batch axis "
                f"({', '.join(str(s) for s in sorted(shapes))}); they are joined to be scored at once"
            )
    return np.concatenate(outputs), np.concatenate(labels)


def check_labels(outputs: np.ndarray, labels: np.ndarray, sources: Sources) -> None:
    """The built-in accuracy scores integer class indices of shape (batch,) against the argmax of (batch, classes)
    outputs; other metrics take what they take (their one call decides)."""
    if sources.metric != "accuracy":
        return
    if not np.issubdtype(labels.dtype, np.integer):
        raise ConfigError(
            f"metric 'accuracy' needs integer class labels, but the validation labels are {labels.dtype} "
            f"(data '{sources.data}'): give integer labels, or your own metric (metric: package.module:function)"
        )
    if labels.ndim != 1:
        raise ConfigError(
            f"metric 'accuracy' needs one class index per input, but the validation labels have shape "
            f"{labels.shape[1:]} per input (data '{sources.data}'; one-hot?): give labels of shape (batch,)"
        )
    if outputs.ndim != 2:
        raise ConfigError(
            f"metric 'accuracy' needs outputs of shape (batch, classes), but model '{sources.model}' returns shape "
            f"{outputs.shape[1:]} per input: give your own metric (metric: package.module:function)"
        )
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= outputs.shape[1]:
        raise ConfigError(
            f"metric 'accuracy': validation labels run from {low} to {high}, but model '{sources.model}' has "
            f"{outputs.shape[1]} outputs per input (classes 0 to {outputs.shape[1] - 1})"
        )


def check_metric(task: Task, outputs: np.ndarray, labels: np.ndarray, sources: Sources) -> None:
    """One call of the metric on the whole validation split: a finite number, higher is better."""
    try:
        value = task.metric(outputs, labels)
    except Exception as error:  # the user's metric may raise anything, e.g. a TypeError for a wrong signature
        raise ConfigError(
            f"metric '{sources.metric}' failed on (outputs, labels) arrays: {first_line(error)}; it must be "
            f"(outputs: np.ndarray, labels: np.ndarray) -> float (called with shapes {outputs.shape} and "
            f"{labels.shape}: the whole validation split)"
        ) from None
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise ConfigError(
            f"metric '{sources.metric}' returned {type(value).__name__} {value!r:.40}; it must return a number"
        )
    if not np.isfinite(float(value)):
        raise ConfigError(
            f"metric '{sources.metric}' returned {float(value)} on the uncompressed model's validation outputs; "
            "it must return a finite number (higher is better)"
        )


def check_task(task: Task, sources: Sources) -> None:
    """Everything above, on a task built from a user's functions (before any search or build)."""
    check_loaders(task.data, sources.data)
    _forward(task, task.example_input, sources, "its own example input")
    for split in ("train", "calibration", "test"):
        loader = getattr(task.data, split)
        if loader is not None:
            inputs, labels = _pair(next(iter(loader)), sources.data, split)
            check_batch(inputs, labels, task, sources.data, split)
    train_inputs, _ = _pair(next(iter(task.data.train)), sources.data, "train")
    _forward(task, train_inputs, sources, "a training batch")
    outputs, labels = read_validation(task, sources)
    check_labels(outputs, labels, sources)
    check_metric(task, outputs, labels, sources)
