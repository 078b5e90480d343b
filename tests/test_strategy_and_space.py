"""The Strategy contract (YAML round trip, schema version, validation) and the space derived from a model."""

from __future__ import annotations

import re

import optuna
import pytest
from pydantic import ValidationError

from autocompress.errors import ConfigError
from autocompress.examples.digits_model import DigitsResNet
from autocompress.spaces import SearchSpace, SpaceOptions, Strategy
from autocompress.spaces.strategy import DistillSettings, PruneSettings, QuantizeSettings


@pytest.fixture(scope="module")
def model_and_input():
    import torch

    return DigitsResNet().eval(), torch.zeros(1, 1, 32, 32)


def test_strategy_yaml_round_trip_is_exact():
    strategy = Strategy(
        seed=5,
        prune=PruneSettings(importance="fpgm", ratios={"stem.0": 0.25, "stage2.0.conv1": 0.5}),
        quantize=QuantizeSettings(calibration="entropy", precisions={"stem.0": "fp32", "fc": "int8"}),
        distill=DistillSettings(steps=50, temperature=3.5, alpha=0.25, lr=2e-3),
    )
    assert Strategy.from_yaml(strategy.to_yaml()) == strategy
    with pytest.raises(ValidationError):  # frozen: a strategy cannot be edited after sampling
        strategy.seed = 6  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("schema_version: 99\n", "schema_version 99 is not supported"),
        ("prune: {importance: magic}\n", "prune.importance"),
        ("distill: {steps: -1}\n", "distill.steps"),
        ("- a list\n", "must be a YAML mapping"),
        ("prune: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_strategy_files_are_one_line_errors(text, message):
    with pytest.raises(ConfigError, match=message) as raised:
        Strategy.from_yaml(text)
    assert "\n" not in str(raised.value)


def test_space_respects_residual_coupling(model_and_input, cpu_profile):
    space = SearchSpace.from_model(*model_and_input, cpu_profile)
    groups = {group.name: group for group in space.groups}
    assert len(groups) == 9
    assert {"stage1.0.conv2", "stage1.1.conv2", "stage2.0.conv1"} <= set(groups["stem.0"].layers)
    assert "fc" not in groups  # the classifier's outputs are the model's outputs
    assert set(space.precision_units()) == {layer.name for layer in space.layers}
    assert all(choices == ["int8", "fp32"] for choices in space.precision_units().values())


@pytest.mark.parametrize(
    ("granularity", "prune_units", "precision_units"), [("family", 6, 10), ("stage", 4, 5), ("global", 1, 1)]
)
def test_coarser_granularity_shares_knobs(model_and_input, cpu_profile, granularity, prune_units, precision_units):
    space = SearchSpace.from_model(*model_and_input, cpu_profile, SpaceOptions(granularity=granularity))
    assert len(space.prune_units()) == prune_units
    assert len(space.precision_units()) == precision_units
    study = optuna.create_study(directions=["maximize", "minimize"])
    strategy = space.sample(study.ask(), seed=1)
    assert len(strategy.prune.ratios) == 9 and len(strategy.quantize.precisions) == 16
    by_stage: dict[str, set[str]] = {}
    for layer, precision in strategy.quantize.precisions.items():
        key = {"family": re.sub(r"\.\d+", ".*", layer), "stage": layer.split(".")[0]}.get(granularity, "all")
        by_stage.setdefault(key, set()).add(precision)
    assert all(len(values) == 1 for values in by_stage.values())


def test_enqueued_baselines_sample_to_uniform_strategies(model_and_input, cpu_profile):
    space = SearchSpace.from_model(*model_and_input, cpu_profile)
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.enqueue_trial(space.fixed_params(0.0, "fp32", 0))
    study.enqueue_trial(space.fixed_params(0.5, "int8", 50))
    plain = space.sample(study.ask(), seed=0)
    compressed = space.sample(study.ask(), seed=0)
    assert set(plain.quantize.precisions.values()) == {"fp32"} and plain.prune.mean_ratio == 0
    assert plain.distill.steps == 0
    assert set(compressed.quantize.precisions.values()) == {"int8"} and compressed.prune.mean_ratio == 0.5
    assert compressed.distill.steps == 50


def test_warm_starts_are_the_hand_made_candidates(model_and_input, cpu_profile):
    space = SearchSpace.from_model(*model_and_input, cpu_profile)
    study = optuna.create_study(directions=["maximize", "minimize"])
    labels = []
    for label, params in space.warm_starts():
        study.enqueue_trial(params)
        labels.append(label)
    strategies = [space.sample(study.ask(), seed=0) for _ in labels]
    summary = [(s.prune.mean_ratio, set(s.quantize.precisions.values()), s.distill.steps) for s in strategies]
    most = max(space.options.distill_steps)
    assert summary == [(0, {"fp32"}, 0), (0, {"int8"}, 0), (0.5, {"fp32"}, most), (0.5, {"int8"}, most)], labels


def test_pruned_candidates_are_always_fine_tuned(model_and_input, cpu_profile):
    space = SearchSpace.from_model(*model_and_input, cpu_profile, SpaceOptions(granularity="global"))
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=0))
    strategies = [space.sample(study.ask(), seed=0) for _ in range(40)]
    pruned = [s for s in strategies if s.prune.mean_ratio > 0]
    assert pruned and all(s.distill.steps > 0 for s in pruned)
    assert any(s.distill.steps == 0 for s in strategies if s.prune.mean_ratio == 0)
