"""The teacher's remembered outputs: the same numbers as running it, found again across shuffled batches, never
used for a teacher that mixes the examples of a batch or whose weights changed."""

from __future__ import annotations

import copy

import torch
from torch import nn

from autocompress.compress.distill import DistillSettings, distill
from autocompress.compress.teacher import TeacherOutputs, teacher_outputs


def _examples(count: int = 96) -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(count, 1, 32, 32)


def test_shuffled_batches_of_seen_examples_come_from_memory_with_the_same_numbers(digits_untrained):
    teacher = digits_untrained.model.eval()
    memory = TeacherOutputs(teacher)
    examples = _examples()
    for start in range(0, len(examples), 32):
        memory.outputs(examples[start : start + 32])
    assert memory.hits == 0 and len(memory.rows) == len(examples)
    shuffled = examples[torch.randperm(len(examples))]
    for start in range(0, len(shuffled), 32):
        batch = shuffled[start : start + 32]
        with torch.no_grad():
            assert torch.equal(memory.outputs(batch), teacher(batch))
    assert memory.hits == 3


class _BatchMixing(nn.Module):
    """Subtracts the batch mean: each example's output depends on the others in its batch."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x - x.mean(0, keepdim=True))


def test_a_teacher_that_mixes_a_batch_is_always_run():
    teacher = _BatchMixing().eval()
    memory = TeacherOutputs(teacher)
    examples = torch.randn(8, 4)
    memory.outputs(examples[:4])
    mixed = torch.cat([examples[:2], examples[4:6]])
    with torch.no_grad():
        assert torch.equal(memory.outputs(examples[:4]), teacher(examples[:4]))
        assert torch.equal(memory.outputs(mixed), teacher(mixed))
    assert memory.row_wise is False and memory.hits == 0 and not memory.rows


def test_a_teacher_changed_in_place_is_run_again(digits_untrained):
    teacher = copy.deepcopy(digits_untrained.model).eval()
    memory = TeacherOutputs(teacher)
    batch = _examples(8)
    before = memory.outputs(batch)
    with torch.no_grad():
        teacher.fc.bias.add_(1.0)
        after = teacher(batch)
    assert torch.equal(memory.outputs(batch), after) and not torch.equal(after, before)
    assert memory.hits == 0


def test_a_distillation_from_memory_trains_the_same_student(digits_untrained):
    """The second distillation finds every example remembered and gives bit-identical weights."""
    teacher = copy.deepcopy(digits_untrained.model).eval()
    batches = [(x, torch.zeros(len(x), dtype=torch.long)) for x in _examples().split(32)]
    settings = DistillSettings(steps=6, alpha=1.0)
    first = distill(copy.deepcopy(teacher), teacher, batches, settings, seed=3)
    memory = teacher_outputs(teacher)
    hits_before = memory.hits
    second = distill(copy.deepcopy(teacher), teacher, batches, settings, seed=3)
    assert memory.hits - hits_before == settings.steps
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
