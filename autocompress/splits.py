"""The held-out test split: given by the task, or carved out of validation, deterministically.

The search decides everything on validation (feasibility, tables, seeds, promotion, the winner), so a figure
scored on validation is optimistic by construction: the exported model is the best of many that passed a noisy
threshold there. The report therefore quotes a split the search never saw. A task that brings no test split
gets a fixed share of its validation samples set aside (the same samples on every run: a fixed seed, not the
study's), and the run says so once (`DataSplits.carving_notice`, when the search or `apply` starts).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging

import torch

from autocompress.errors import ConfigError
from autocompress.task import Batches, DataSplits, Task

log = logging.getLogger(__name__)

TEST_SHARE = 0.3
CARVE_SEED = 0
MIN_SAMPLES = 10  # per split, after carving


def _samples(loader: Batches) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Every (input, label) sample of a loader, and its batch size."""
    inputs, labels, batch_size = [], [], 0
    for batch_inputs, batch_labels in loader:
        batch_size = max(batch_size, len(batch_labels))
        inputs.append(batch_inputs)
        labels.append(batch_labels)
    try:
        return torch.cat(inputs), torch.cat(labels), batch_size
    except RuntimeError as error:  # batches of different trailing shapes (e.g. sentences of their own length)
        raise ConfigError(
            f"the task has no test split and its validation batches cannot be split by sample ({error}); "
            "return a 'test' loader beside train, calibration and validation"
        ) from None


def _batches(inputs: torch.Tensor, labels: torch.Tensor, batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(inputs[i : i + batch_size], labels[i : i + batch_size]) for i in range(0, len(labels), batch_size)]


def carve_test(data: DataSplits) -> DataSplits:
    """`data` with a test split: its own, or TEST_SHARE of the validation samples (fixed seed, order kept)."""
    if data.test is not None:
        return data
    inputs, labels, batch_size = _samples(data.validation)
    count = len(labels)
    held = round(count * TEST_SHARE)
    if held < MIN_SAMPLES or count - held < MIN_SAMPLES:
        raise ConfigError(
            f"the task has no test split and its {count} validation samples are too few to set "
            f"{TEST_SHARE:.0%} aside; give more validation data or a 'test' loader"
        )
    order = torch.randperm(count, generator=torch.Generator().manual_seed(CARVE_SEED))
    test_index, validation_index = order[:held].sort().values, order[held:].sort().values
    return dataclasses.replace(
        data,
        validation=_batches(inputs[validation_index], labels[validation_index], batch_size),
        test=_batches(inputs[test_index], labels[test_index], batch_size),
        carved=(held, count),
    )


def _fingerprints(loader: Batches) -> set[bytes]:
    """One digest per sample's input (a row of a batch)."""
    digests = set()
    for inputs, _ in loader:
        for row in inputs:
            digests.add(hashlib.blake2b(row.detach().contiguous().numpy().tobytes(), digest_size=16).digest())
    return digests


def check_disjoint(data: DataSplits, name: str) -> None:
    """The test split shares no sample with validation or train (inputs compared byte for byte). A few identical
    inputs can occur in real data (a warning); more than 1% of the test split is a leak (an error)."""
    assert data.test is not None
    test = _fingerprints(data.test)
    for split in ("validation", "train"):
        shared = len(test & _fingerprints(getattr(data, split)))
        if shared > 0.01 * len(test):
            raise ConfigError(
                f"{name}: the test split shares {shared} of its {len(test)} samples with the {split} split; "
                "the held-out split must be disjoint from what the search uses"
            )
        if shared:
            log.warning("%s: %d test samples have an identical input in the %s split", name, shared, split)


def with_test_split(task: Task) -> Task:
    """The task with a checked, disjoint test split."""
    data = carve_test(task.data)
    check_disjoint(data, task.name)
    return task if data is task.data else dataclasses.replace(task, data=data)
