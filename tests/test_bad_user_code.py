"""Broken user code that only running it shows: the model, the loaders and the metric are run once at load
(autocompress/task_checks.py) and each mistake is exit 2 and one line naming the function, what it returned and
what was expected, before any search or build.

Each case loads the tests' tiny user task (its weights kept under the session's home after the first load), so
they run in the fast lane.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.test_bad_inputs import _config, refused

CASES = {
    # what the model returns
    "model returns a dict": (dict(model="tiny_task:dict_output_model"),
                             "model 'tiny_task:dict_output_model' returned a dict with keys 'logits', 'features' on "
                             "its own example input; it must return one tensor of shape (batch, ...)"),
    "model returns a tuple": (dict(model="tiny_task:tuple_output_model"),
                              "model 'tiny_task:tuple_output_model' returned a tuple of 2 on its own example input"),
    "model averages the batch away": (dict(model="tiny_task:batch_averaging_model"),
                                      "returned a tensor of shape (1, 10) on a training batch of 64 inputs; its "
                                      "first axis must be the batch (64)"),
    # what the loaders yield
    "inputs of another dtype": (dict(data="tiny_task:float64_loaders"),
                                "data 'tiny_task:float64_loaders': train inputs are float64, but the model's example "
                                "input is float32"),
    "inputs of another size": (dict(data="tiny_task:larger_image_loaders"),
                               "train inputs have shape (1000, 1, 16, 16), but the example input (1, 1, 8, 8) fixes "
                               "every axis but the batch"),
    "labels one short": (dict(data="tiny_task:short_label_loaders"),
                         "a train batch has 1000 inputs but labels of shape (999,): give one label per input"),
    "labels one-hot for accuracy": (dict(data="tiny_task:one_hot_label_loaders", metric="accuracy"),
                                    "metric 'accuracy' needs one class index per input, but the validation labels "
                                    "have shape (10,) per input"),
    "labels past the classes": (dict(data="tiny_task:shifted_label_loaders", metric="accuracy"),
                                "metric 'accuracy': validation labels run from 1 to 10, but model "
                                "'tiny_task:build_model' has 10 outputs per input (classes 0 to 9)"),
    "validation loader fails part-way": (dict(data="tiny_task:failing_validation_loaders"),
                                         "reading the validation loader raised OSError: image 213 cannot be read: "
                                         "truncated file at batch 3, after 2 good ones"),
    # what the metric does with them
    "metric raises": (dict(metric="tiny_task:metric_raises"),
                      "metric 'tiny_task:metric_raises' failed on (outputs, labels) arrays: IndexError"),
    "metric is not finite": (dict(metric="tiny_task:metric_nan"),
                             "metric 'tiny_task:metric_nan' returned nan on the uncompressed model's validation "
                             "outputs; it must return a finite number"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_broken_user_code_is_one_line_and_exit_2(case, tmp_path):
    changes, message = CASES[case]
    refused(lambda t: ["search", _config(t, **changes)], tmp_path, message)


def test_the_metric_is_called_once_on_the_whole_validation_split(tiny_task):
    """What the check gives the metric is what a trial gives it: every validation batch, joined."""
    from autocompress.task_checks import Sources, read_validation

    outputs, labels = read_validation(tiny_task, Sources("m", "d", "accuracy"))
    count = sum(len(batch_labels) for _, batch_labels in tiny_task.data.validation)
    assert outputs.shape == (count, 10) and labels.shape == (count,) and labels.dtype == np.int64


def test_a_well_formed_task_passes_every_check(tiny_task):
    from autocompress.task_checks import Sources, check_task

    check_task(tiny_task, Sources("tiny_task:build_model", "tiny_task:loaders", "tiny_task:flaky_accuracy"))
    assert torch.is_tensor(tiny_task.model(tiny_task.example_input))
