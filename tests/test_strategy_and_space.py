"""The Strategy contract (YAML round trip, schema version, validation) and the space derived from a model."""

from __future__ import annotations

import re

import optuna
import pytest
from pydantic import ValidationError

from autocompress.compress.distill import DistillSettings
from autocompress.compress.prune import PruneSettings
from autocompress.compress.quantize import QuantizeSettings
from autocompress.errors import ConfigError
from autocompress.examples.digits_model import DigitsResNet
from autocompress.spaces.graph import quant_layers
from autocompress.spaces.space import SearchSpace
from autocompress.spaces.strategy import Strategy


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
    groups = {group.name: group for group in space.prune.groups}
    assert len(groups) == 9
    assert {"stage1.0.conv2", "stage1.1.conv2", "stage2.0.conv1"} <= set(groups["stem.0"].layers)
    assert "fc" not in groups  # the classifier's outputs are the model's outputs
    assert set(space.quantize.units()) == {layer.name for layer in space.quantize.layers}
    assert all(choices == ["int8", "fp32"] for choices in space.quantize.units().values())


def test_blocks_that_keep_their_input_shape_can_be_skipped(model_and_input, cpu_profile):
    space = SearchSpace.from_model(*model_and_input, cpu_profile)
    # the blocks with an identity shortcut; stage2.0 and stage3.0 change the shape, the stem is not a repeated block
    assert space.prune.blocks == ("stage1.0", "stage1.1", "stage2.1", "stage3.1")
    trial = optuna.create_study().ask()
    strategy = space.sample(trial, seed=0)
    assert {name for name in trial.params if name.startswith("skip/")} == {f"skip/{b}" for b in space.prune.blocks}
    assert strategy.prune.skip == [b for b in space.prune.blocks if trial.params[f"skip/{b}"]]
    assert space.strategy(space.uniform(0.5, "fp32", 200)).prune.skip == []  # uniform pruning keeps every block
    assert SearchSpace.from_model(*model_and_input, cpu_profile, {"skip_blocks": False}).prune.blocks == ()
    assert SearchSpace.from_model(*model_and_input, cpu_profile, {"granularity": "global"}).prune.blocks == ()
    skipped = Strategy(prune=PruneSettings(skip=["stage2.1"]))
    assert Strategy.from_yaml(skipped.to_yaml()) == skipped and skipped.prune.any and not skipped.is_uncompressed


def test_linear_layers_on_sequences_are_matmul_layers(cpu_profile):
    """A Linear applied to [batch, tokens, features] exports to MatMul, and the profile's MatMul row applies."""
    import torch
    from torch import nn

    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)).eval()
    assert [layer.kind for layer in quant_layers(model, torch.zeros(1, 8))] == ["Gemm", "Gemm"]
    assert [layer.kind for layer in quant_layers(model, torch.zeros(1, 5, 8))] == ["MatMul", "MatMul"]
    matmul_only = cpu_profile.model_copy(update={"precisions": {"MatMul": ["int8", "fp32"]}})
    space = SearchSpace.from_model(model, torch.zeros(1, 5, 8), matmul_only)
    assert space.quantize.units() == {"0": ["int8", "fp32"], "2": ["int8", "fp32"]}
    assert SearchSpace.from_model(model, torch.zeros(1, 8), matmul_only).quantize.units() == {}


@pytest.mark.parametrize(
    ("granularity", "prune_units", "precision_units"), [("family", 6, 10), ("stage", 4, 5), ("global", 1, 1)]
)
def test_coarser_granularity_shares_knobs(model_and_input, cpu_profile, granularity, prune_units, precision_units):
    space = SearchSpace.from_model(*model_and_input, cpu_profile, {"granularity": granularity})
    assert len(space.prune.ratio_units()) == prune_units
    assert len(space.quantize.units()) == precision_units
    study = optuna.create_study(directions=["maximize", "minimize"])
    strategy = space.sample(study.ask(), seed=1)
    assert len(strategy.prune.ratios) == 9 and len(strategy.quantize.precisions) == 16
    by_stage: dict[str, set[str]] = {}
    for layer, precision in strategy.quantize.precisions.items():
        key = {"family": re.sub(r"\.\d+", ".*", layer), "stage": layer.split(".")[0]}.get(granularity, "all")
        by_stage.setdefault(key, set()).add(precision)
    assert all(len(values) == 1 for values in by_stage.values())


def test_uniform_parameters_round_trip_to_uniform_strategies(model_and_input, cpu_profile):
    space = SearchSpace.from_model(*model_and_input, cpu_profile)
    plain = space.strategy(space.uniform(0.0, "fp32", 0))
    compressed = space.strategy(space.uniform(0.5, "int8", 50), seed=3)
    assert plain.is_uncompressed and plain.distill.steps == 0 and plain.prune.mean_ratio == 0
    assert set(compressed.quantize.precisions.values()) == {"int8"} and compressed.prune.mean_ratio == 0.5
    assert compressed.prune.reconstruct and compressed.distill.steps == 0 and compressed.seed == 3  # re-fitted
    unrepaired = SearchSpace.from_model(*model_and_input, cpu_profile, {"reconstruct": False})
    assert unrepaired.strategy(unrepaired.uniform(0.5, "int8", 50)).distill.steps == 50
    study = optuna.create_study(directions=["maximize", "minimize"])  # and the same through an enqueued trial
    study.enqueue_trial(space.uniform(0.5, "int8", 50))
    assert space.sample(study.ask(), seed=3) == compressed


@pytest.mark.parametrize("reconstruct", [True, False])
def test_warm_starts_are_the_hand_made_candidates(model_and_input, cpu_profile, reconstruct):
    """Uniform pruning at 50%, re-fitted, or else distilled for the most steps the space offers."""
    space = SearchSpace.from_model(*model_and_input, cpu_profile, {"reconstruct": reconstruct})
    labels = [label for label, _ in space.warm_starts()]
    strategies = [space.strategy(params) for _, params in space.warm_starts()]
    summary = [(s.prune.mean_ratio, set(s.quantize.precisions.values()), s.distill.steps) for s in strategies]
    most = 0 if reconstruct else max(space.distill.distill_steps)
    assert summary == [(0, {"fp32"}, 0), (0, {"int8"}, 0), (0.5, {"fp32"}, most), (0.5, {"int8"}, most)], labels
    assert all(s.prune.reconstruct == reconstruct for s in strategies if s.prune.any)


def test_distillation_only_where_something_was_pruned(model_and_input, cpu_profile):
    """An unpruned candidate, quantized or not, gets no distillation and is asked no distillation knob: there is
    nothing to recover before export (quantization comes after it), and distilling only drifts."""
    space = SearchSpace.from_model(*model_and_input, cpu_profile, {"granularity": "global", "reconstruct": False})
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=0))
    trials = [study.ask() for _ in range(300)]
    strategies = [space.sample(trial, seed=0) for trial in trials]
    for trial, strategy in zip(trials, strategies, strict=True):
        if not strategy.prune.any:
            assert strategy.distill.steps == 0
            assert not any(name.startswith("distill/") for name in trial.params), trial.params
        else:  # pruned candidates are always fine-tuned (nothing re-fitted here)
            assert strategy.distill.steps > 0
    assert any(s.is_uncompressed for s in strategies) and any(s.prune.any for s in strategies)
    assert any(s.quantize.any and not s.prune.any for s in strategies)  # quantized-only ones were drawn
    for _, params in space.warm_starts():  # the hand-made candidates too
        assert any(key.startswith("prune/") and value for key, value in params.items()) or not any(
            key.startswith("distill/") for key in params
        ), params


def test_a_strategy_that_distils_without_pruning_is_built_without_distillation(caplog):
    """A strategy file may ask for it (written by hand, or before the rule): the build skips it and says so."""
    from autocompress.compress.pipeline import distillation
    from autocompress.compress.prune import PruneSettings
    from autocompress.compress.quantize import QuantizeSettings

    quantized_only = Strategy(quantize=QuantizeSettings(precisions={"conv1": "int8"}),
                              distill=DistillSettings(steps=200))  # fmt: skip
    with caplog.at_level("WARNING", logger="autocompress.compress.pipeline"):
        assert distillation(quantized_only).steps == 0
    assert "distils 200 steps but prunes nothing" in caplog.text
    pruned = quantized_only.model_copy(update={"prune": PruneSettings(ratios={"conv1": 0.5})})
    assert distillation(pruned).steps == 200
    skipped = quantized_only.model_copy(update={"prune": PruneSettings(skip=("layer1.1",))})
    assert distillation(skipped).steps == 200


def test_refitted_candidates_may_skip_distillation_and_skipped_blocks_may_not(model_and_input, cpu_profile):
    space = SearchSpace.from_model(*model_and_input, cpu_profile)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=0))
    strategies = [space.sample(study.ask(), seed=0) for _ in range(300)]
    refitted = [s for s in strategies if s.prune.any and not s.prune.skip]
    assert all(s.prune.reconstruct for s in refitted)
    assert {s.distill.steps == 0 for s in refitted} == {True, False}  # the sampler chooses
    assert all(s.distill.steps > 0 for s in strategies if s.prune.skip)


def test_unknown_space_options_are_one_line(model_and_input, cpu_profile):
    with pytest.raises(ConfigError, match="space option 'max_prune' is unknown; known options: .*max_prune_ratio"):
        SearchSpace.from_model(*model_and_input, cpu_profile, {"max_prune": 0.5})


def test_a_configs_space_narrows_the_tasks_own(cpu_profile):
    """The experiment YAML's `space:` goes over the task's ranges, option by option; the rest stays the task's."""
    import yaml

    from autocompress.config import validate_config
    from autocompress.tasks import load_task
    from tests.helpers import user_config

    raw = yaml.safe_load(user_config().read_text())
    narrowed = {"distill_steps": [0, 50], "max_prune_ratio": 0.25, "reconstruct": False}
    plain = SearchSpace.for_task(load_task(validate_config(raw, user_config().parent)), cpu_profile)
    task = load_task(validate_config(raw | {"space": narrowed}, user_config().parent))
    space = SearchSpace.for_task(task, cpu_profile)
    assert space.distill.distill_steps == (0, 50) and plain.distill.distill_steps != (0, 50)
    assert space.prune.max_prune_ratio == 0.25 < plain.prune.max_prune_ratio
    assert space.distill.lr == plain.distill.lr
    most = max(params.get("distill/steps_after_pruning", 0) for _, params in space.warm_starts())
    assert most == 50
