"""Pruning with least-damage channel choice (obs) and re-fitted readers (reconstruct), on planted models."""

from __future__ import annotations

import pytest
import torch
import yaml
from torch import nn

from autocompress.compress.prune import PruneKnobs, PruneSettings, prune
from autocompress.compress.reconstruct import obs_ranking, reconstruct, shrunk_layers
from autocompress.spaces.strategy import Strategy


def _duplicated_mlp() -> nn.Sequential:
    """8 -> 16 -> 4 where hidden channels 8..15 copy channels 0..7: half the hidden layer is redundant, and which
    half does not matter as long as one of each pair stays. The copies' outgoing weights are large, so magnitude
    ranks them first to keep and their originals last, losing whole pairs at once."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    with torch.no_grad():
        model[0].weight[8:] = model[0].weight[:8]
        model[0].bias[8:] = model[0].bias[:8]
        model[2].weight[:, :4] *= 0.01  # small originals of pairs 0..3: magnitude drops them and their copies
        model[2].weight[:, 8:12] *= 0.01
    return model.eval()


def _batches(count: int = 16, features: int = 8) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    return [(torch.randn(32, features, generator=generator), torch.zeros(32)) for _ in range(count)]


def _error(student: nn.Module, teacher: nn.Module, batches: list) -> float:
    """Relative output error of the student against the teacher over the batches."""
    with torch.no_grad():
        inputs = torch.cat([x for x, _ in batches])
        reference = teacher(inputs)
        return float((student(inputs) - reference).norm() / reference.norm())


def test_obs_keeps_one_of_each_duplicate_and_the_refit_restores_the_output():
    teacher, batches = _duplicated_mlp(), _batches()
    example = batches[0][0][:1]
    half = {"0": 0.5}
    repaired = prune(teacher, example, PruneSettings(importance="obs", ratios=half, reconstruct=True), data=batches)
    magnitude = prune(teacher, example, PruneSettings(importance="l2", ratios=half), data=batches)
    assert repaired[0].out_features == magnitude[0].out_features == 8  # physically half
    assert _error(repaired, teacher, batches) < 0.01
    assert _error(magnitude, teacher, batches) > 0.2


def test_refit_alone_recovers_what_magnitude_pruning_lost():
    torch.manual_seed(3)
    teacher, batches = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 4)).eval(), _batches()
    example = batches[0][0][:1]
    quarter = {"0": 0.25}
    refitted = prune(teacher, example, PruneSettings(importance="l2", ratios=quarter, reconstruct=True), data=batches)
    plain = prune(teacher, example, PruneSettings(importance="l2", ratios=quarter), data=batches)
    assert _error(refitted, teacher, batches) < 0.5 * _error(plain, teacher, batches)


def test_obs_ranks_a_silent_channel_first_and_a_lone_strong_one_last():
    torch.manual_seed(0)
    inputs = torch.randn(512, 6)
    inputs[:, 2] = 0.0  # channel 2 never carries anything
    inputs[:, 4] = inputs[:, 0] + inputs[:, 1]  # channel 4 is what channels 0 and 1 already say
    weight = torch.randn(3, 6)
    weight[:, 5] *= 10  # channel 5: independent and heavily used
    rows = torch.cat([inputs, torch.ones(len(inputs), 1)], 1).double()
    rank = obs_ranking(weight, torch.zeros(3), rows.T @ rows)
    assert rank[2] == 0
    assert rank[5] == rank.max()
    assert sorted(rank.tolist()) == list(range(len(rank) - 1)) + [len(rank)]  # one order, the survivor last


def test_conv_readers_are_refitted_too():
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Conv2d(3, 12, 3, padding=1), nn.ReLU(), nn.Conv2d(12, 5, 3, padding=1, stride=2))
    teacher.eval()
    generator = torch.Generator().manual_seed(2)
    batches = [(torch.randn(8, 3, 8, 8, generator=generator), torch.zeros(8)) for _ in range(16)]
    settings = PruneSettings(importance="l2", ratios={"0": 0.5})
    plain = prune(teacher, batches[0][0][:1], settings, data=batches)
    refitted = prune(teacher, batches[0][0][:1], settings.model_copy(update={"reconstruct": True}), data=batches)
    assert shrunk_layers(refitted, teacher) == ["2"]
    assert refitted[2].in_channels == 6
    assert _error(refitted, teacher, batches) < 0.8 * _error(plain, teacher, batches)


def test_an_unpruned_model_is_left_as_it_is():
    teacher, batches = _duplicated_mlp(), _batches()
    student = reconstruct(_duplicated_mlp(), teacher, batches)
    assert shrunk_layers(student, teacher) == []
    assert all(torch.equal(a, b) for a, b in zip(student.parameters(), teacher.parameters(), strict=True))


def test_pruning_that_needs_data_refuses_a_task_without_it():
    teacher = _duplicated_mlp()
    with pytest.raises(Exception, match="needs training data"):
        prune(teacher, torch.zeros(1, 8), PruneSettings(importance="obs", ratios={"0": 0.5}))


def test_strategies_written_before_reconstruction_rebuild_as_they_were(tmp_path):
    """A strategy file without `reconstruct` is re-applied without it; the search's own candidates use it."""
    old = {"prune": {"importance": "l2", "ratios": {"0": 0.5}}}
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump(old))
    assert Strategy.load(path).prune.reconstruct is False
    knobs = PruneKnobs.for_model(_duplicated_mlp(), torch.zeros(1, 8), None)
    searched = knobs.settings({unit: 0.25 for unit in knobs.ratio_units()}, {})
    assert searched.reconstruct is True and searched.importance == "obs"
