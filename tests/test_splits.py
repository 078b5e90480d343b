"""The held-out test split: carved deterministically when a task brings none, disjoint, and read from a user's
data function when it does."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from autocompress.errors import ConfigError
from autocompress.splits import TEST_SHARE, carve_test, check_disjoint, with_test_split
from autocompress.task import DataSplits


def _batches(start: int, count: int, batch: int = 16) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Samples whose single input value is their index: easy to follow through a split."""
    values = torch.arange(start, start + count, dtype=torch.float32)
    return [(values[i : i + batch, None], (values[i : i + batch] % 10).long()) for i in range(0, count, batch)]


def _ids(loader) -> list[int]:
    return [int(value) for inputs, _ in loader for value in inputs[:, 0]]


def test_a_task_without_test_gets_one_carved_out_of_validation_the_same_way_every_time(tiny_task):
    data = DataSplits(_batches(0, 200), _batches(200, 50), _batches(1000, 300))
    first, second = carve_test(data), carve_test(data)
    assert _ids(first.test) == _ids(second.test) and _ids(first.validation) == _ids(second.validation)
    test, validation = set(_ids(first.test)), set(_ids(first.validation))
    assert len(test) == round(300 * TEST_SHARE) and not test & validation
    assert test | validation == set(range(1000, 1300))  # nothing lost, nothing invented
    assert sorted(test) != list(range(1000, 1090))  # a seeded draw, not the first batches
    assert max(len(labels) for _, labels in first.validation) == 16  # the user's batch size kept
    assert first.train is data.train and first.calibration is data.calibration
    # the tests' user task (tests/user_task, no test split) went through the same carving when it was loaded
    assert sum(len(labels) for _, labels in tiny_task.data.test) == round(597 * TEST_SHARE)


def test_a_given_test_split_is_kept_and_must_be_disjoint():
    given = DataSplits(_batches(0, 200), _batches(200, 50), _batches(1000, 100), _batches(2000, 100))
    assert carve_test(given) is given
    check_disjoint(given, "ok")
    leaking = dataclasses.replace(given, test=_batches(1050, 100))  # half of it is validation
    with pytest.raises(ConfigError, match="test split shares 50 of its 100 samples with the validation split"):
        check_disjoint(leaking, "leaky")


def test_too_little_validation_to_carve_is_one_line():
    with pytest.raises(ConfigError, match="too few to set 30% aside"):
        with_test_split(dataclasses.replace(_tiny(), data=DataSplits(_batches(0, 50), _batches(50, 10),
                                                                        _batches(100, 12))))  # fmt: skip


def _tiny():
    from autocompress.task import Task, accuracy

    return Task("t", torch.nn.Linear(1, 10), torch.zeros(1, 1), DataSplits([], [], []), accuracy)


def test_the_built_in_examples_bring_their_own_disjoint_test_split(digits_untrained):
    """The digits example's splits (what its load_task gives the task, without training its model: fast lane)."""
    data = digits_untrained.data
    sizes = {split: sum(len(labels) for _, labels in getattr(data, split)) for split in ("validation", "test")}
    assert sizes == {"validation": 360, "test": 360}
    check_disjoint(data, "digits")
