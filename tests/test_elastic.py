"""The elastic model (issue 27): reordering keeps the function, a masked sub-network is exactly its extraction,
training improves the small sub-networks, an interrupted training resumes to the same weights, and the cache key
follows what the weights depend on."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest
import torch
from torch import nn

from autocompress.compress.distill import DistillSettings, distillation_loss
from autocompress.compress.elastic import ElasticModel, recalibrate_batch_norm
from autocompress.compress.elastic_space import ElasticConfig, ElasticSpace
from autocompress.compress.elastic_train import (
    ElasticProgress,
    ElasticSettings,
    elastic_key,
    sandwich,
    shrink_level,
    train_elastic,
)
from autocompress.compress.prune import parameter_count
from autocompress.errors import ConfigError


def _busy_batch_norm(model: nn.Module) -> nn.Module:
    """Untrained batch norm is the identity; random statistics make a reordering mistake visible."""
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            size = module.num_features
            module.running_mean.copy_(torch.randn(size, generator=generator))
            module.running_var.copy_(torch.rand(size, generator=generator) + 0.5)
            module.weight.data.copy_(torch.randn(size, generator=generator))
            module.bias.data.copy_(torch.randn(size, generator=generator))
    return model.eval()


@pytest.fixture(scope="module")
def digits_elastic(digits_untrained):
    model = _busy_batch_norm(digits_untrained.model)
    space = ElasticSpace.from_model(model, digits_untrained.example_input)
    return model, ElasticModel.build(model, digits_untrained.example_input, space)


def _bert():
    from transformers import BertConfig, BertModel

    from autocompress.spaces.transformers import hf_attention_hints

    class Embedder(nn.Module):
        def __init__(self, encoder: nn.Module) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
            return self.encoder(input_ids=input_ids).last_hidden_state.mean(dim=1)

    config = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=32, attn_implementation="eager")  # fmt: skip
    torch.manual_seed(0)
    model = Embedder(BertModel(config, add_pooling_layer=False)).eval()
    return model, torch.randint(0, 50, (3, 7)), hf_attention_hints(model)


def test_space_of_the_digits_resnet(digits_elastic):
    """Every channel group is a dimension, widths are fractions snapped to 8, the residual blocks may be skipped."""
    _, elastic = digits_elastic
    dims = {dim.name: dim for dim in elastic.space.dims}
    assert dims["stem.0"].widths == (32, 24, 16, 8) and dims["stage3.1.conv1"].widths == (128, 96, 64, 32)
    assert elastic.space.blocks == ("stage1.0", "stage1.1", "stage2.1", "stage3.1")
    with pytest.raises(ConfigError, match="does not have"):
        elastic.space.check(ElasticConfig({"fc": 3}))


def test_a_plain_block_is_not_depth_elastic():
    """A block without a shortcut can be skipped by shape, but its input and output groups would merge."""

    class Plain(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.b(torch.relu(self.a(x)))

    class Residual(Plain):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + super().forward(x)

    model = nn.Sequential(nn.Conv2d(1, 8, 3), Plain(), Residual(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(8, 3)).eval()  # fmt: skip
    space = ElasticSpace.from_model(model, torch.zeros(1, 1, 8, 8), round_to=2)
    assert space.blocks == ("2",)  # "1" (Plain) is skippable by shape only


def test_reordering_keeps_the_function_and_sorts_by_importance(digits_elastic, digits_untrained):
    import torch_pruning as tp

    model, elastic = digits_elastic
    inputs = torch.randn(6, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(elastic.model(inputs), model(inputs), atol=1e-5)
    assert not torch.equal(elastic.model.stem[0].weight, model.stem[0].weight)  # something did move
    graph = tp.DependencyGraph().build_dependency(elastic.model, example_inputs=digits_untrained.example_input)
    root = elastic.model.stage3[1].conv1
    scores = tp.importance.GroupMagnitudeImportance(p=2)(
        graph.get_pruning_group(root, tp.prune_conv_out_channels, list(range(128)))
    )
    assert torch.all(scores[:-1] >= scores[1:] - 1e-6)


def test_taylor_reordering_keeps_the_function(tiny_task):
    space = ElasticSpace.from_model(tiny_task.model, tiny_task.example_input)
    elastic = ElasticModel.build(tiny_task.model, tiny_task.example_input, space, importance="taylor",
                                 data=tiny_task.data.train, batches=2)  # fmt: skip
    inputs, _ = next(iter(tiny_task.data.validation))
    with torch.no_grad():
        assert torch.allclose(elastic.model(inputs), tiny_task.model(inputs), atol=1e-5)
    assert all(parameter.grad is None for parameter in elastic.model.parameters())


def test_extracted_digits_subnetworks_equal_the_masked_ones(digits_elastic):
    model, elastic = digits_elastic
    space, inputs = elastic.space, torch.randn(4, 1, 32, 32, generator=torch.Generator().manual_seed(2))
    rng = random.Random(0)
    configs = [space.smallest(), space.uniform(0.5), space.uniform(0.75, skip=["stage2.1"]), space.sample(rng)]
    for config in configs:
        assert elastic.extraction_error(config, inputs) <= 1e-5, config
        assert parameter_count(elastic.extract(config)) < parameter_count(model)
    assert elastic.extraction_error(space.full(), inputs) <= 1e-5
    smallest = elastic.extract(space.smallest())
    assert smallest.stem[0].out_channels == 8 and isinstance(smallest.stage1[0], type(smallest.stage1[1]))
    with torch.no_grad(), elastic.configured(space.smallest()) as masked:  # the masks do take effect
        assert not torch.allclose(masked(inputs), model(inputs), atol=1e-3)
    assert elastic.model.stem[0].out_channels == 32  # the shared weights are left whole


def test_recalibrated_extraction_matches_the_recalibrated_masked_model(digits_untrained):
    """After training, batch norm statistics are re-measured per sub-network: on the extracted model they come out
    as the masked model's own would (the kept channels see the same inputs)."""
    model = _busy_batch_norm(digits_untrained.model)
    example = digits_untrained.example_input
    elastic = ElasticModel.build(model, example, ElasticSpace.from_model(model, example, depth=False))
    generator = torch.Generator().manual_seed(3)
    batches = [(torch.randn(8, 1, 32, 32, generator=generator), torch.zeros(8)) for _ in range(2)]
    inputs = torch.randn(4, 1, 32, 32, generator=generator)
    config = elastic.space.uniform(0.5)
    extracted = elastic.extract(config, batches, batches=2)
    with torch.no_grad(), elastic.configured(config) as masked:
        stale = masked(inputs)
        recalibrate_batch_norm(masked, batches, 2)
        expected = masked(inputs)
        assert torch.allclose(extracted(inputs), expected, atol=1e-4)
        assert not torch.allclose(stale, expected, atol=1e-3)
    assert not extracted.training


def test_extracted_transformer_subnetworks_equal_the_masked_ones():
    """Heads and FFN widths of a 2-layer, 4-head BERT: the masked value slice is the removed head."""
    model, input_ids, hints = _bert()
    space = ElasticSpace.from_model(model, input_ids[:1], hints)
    kinds = sorted(dim.kind for dim in space.dims)
    assert kinds == ["channels", "channels", "heads", "heads"] and len(space.blocks) == 2
    elastic = ElasticModel.build(model, input_ids[:1], space, hints)
    with torch.no_grad():
        assert torch.allclose(elastic.model(input_ids), model(input_ids), atol=1e-5)
    heads = [dim for dim in space.dims if dim.kind == "heads"]
    configs = [space.smallest(), space.uniform(0.5), ElasticConfig({heads[0].name: 3, heads[1].name: 1})]
    for config in configs:
        assert elastic.extraction_error(config, input_ids) <= 1e-5, config
    extracted = elastic.extract(configs[2])
    attention = [module for name, module in extracted.named_modules() if name.endswith("attention.self")]
    assert [module.num_attention_heads for module in attention] == [3, 1]
    assert parameter_count(extracted) < parameter_count(model)


def test_progressive_shrinking_opens_widths_then_depth(digits_elastic):
    space = digits_elastic[1].space
    assert space.levels == 3
    assert [shrink_level(p, space, 0.5) for p in (0.0, 0.2, 0.4, 0.5, 1.0)] == [1, 2, 3, 3, 3]
    first = sandwich(space, 1, random.Random(0), random_configs=3)
    assert first[0] == space.full() and len(first) == 5
    assert all(config.width(dim) >= dim.widths[1] for config in first for dim in space.dims)
    assert len(first[1].skip) == 2  # ceil(4 blocks * 1/3)
    assert space.smallest(3) == space.smallest()


def _smallest_loss(elastic: ElasticModel, teacher: nn.Module, train: list, validation: list) -> float:
    """The distillation loss of the smallest sub-network, extracted with its batch norm recalibrated."""
    settings, smallest = DistillSettings(alpha=1.0), elastic.extract(elastic.space.smallest(), train)
    with torch.no_grad():
        return sum(float(distillation_loss(smallest(x), teacher(x), y, settings)) for x, y in validation) / len(
            validation
        )


def test_training_improves_the_smallest_subnetwork(tiny_task):
    """30 sandwich steps on the tiny task: the smallest sub-network (16 of 64 channels) gets closer to the original
    on held-out data than batch norm recalibration alone brings it (measured: 7.5 -> 5.6), and the callback
    reports each step with the time left."""
    space = ElasticSpace.from_model(tiny_task.model, tiny_task.example_input)
    elastic = ElasticModel.build(tiny_task.model, tiny_task.example_input, space)
    train = [(inputs[:32], labels[:32]) for inputs, labels in list(tiny_task.data.train)[:8]]
    validation = list(tiny_task.data.validation)[:2]
    before = _smallest_loss(elastic, tiny_task.model, train, validation)
    heard: list[ElasticProgress] = []
    settings = ElasticSettings(steps=30, lr=3e-3, random_configs=0)
    run = train_elastic(elastic, tiny_task.model, train, settings, seed=0, callback=heard.append)
    after = _smallest_loss(elastic, tiny_task.model, train, validation)
    assert after < 0.85 * before, (before, after)
    assert [progress.step for progress in heard] == list(range(1, 31)) and run.steps == 30
    assert heard[-1].left_s == 0 and heard[0].left_s > 0 and heard[-1].level == space.levels


class _Stop(Exception):
    pass


def test_interrupted_training_resumes_to_the_same_weights(tiny_task, tmp_path: Path):
    """Stopped after 2 of 6 steps, resumed from the checkpoint: steps 3 to 6 follow, and the weights are those of
    an uninterrupted run (the shuffling loader replays the same batches, the same sub-networks are drawn). A
    finished checkpoint is a cache hit; other settings do not take it."""
    space = ElasticSpace.from_model(tiny_task.model, tiny_task.example_input)
    settings = ElasticSettings(steps=6, random_configs=1)

    def fresh() -> ElasticModel:
        return ElasticModel.build(tiny_task.model, tiny_task.example_input, space)

    straight = fresh()
    train_elastic(straight, tiny_task.model, tiny_task.data.train, settings, seed=3)

    def stop_at_2(progress: ElasticProgress) -> None:
        if progress.step == 2:
            raise _Stop

    checkpoint = tmp_path / "elastic.pt"
    with pytest.raises(_Stop):
        train_elastic(fresh(), tiny_task.model, tiny_task.data.train, settings, 3, stop_at_2, checkpoint, 100)
    assert torch.load(checkpoint, weights_only=True)["step"] == 2
    steps: list[int] = []
    resumed = fresh()
    run = train_elastic(resumed, tiny_task.model, tiny_task.data.train, settings, 3,
                        lambda progress: steps.append(progress.step), checkpoint)  # fmt: skip
    assert steps == [3, 4, 5, 6] and run.resumed_at == 2 and run.steps == 6
    for name, value in straight.state_dict().items():
        assert torch.allclose(resumed.state_dict()[name], value, atol=1e-6), name
    cached = fresh()
    again = train_elastic(cached, tiny_task.model, tiny_task.data.train, settings, 3, checkpoint=checkpoint)
    assert again.resumed_at == again.steps == 6
    assert torch.equal(cached.model.conv1.weight, resumed.model.conv1.weight)
    other = ElasticSettings(steps=1, random_configs=1)
    run = train_elastic(fresh(), tiny_task.model, tiny_task.data.train, other, 3, checkpoint=checkpoint)
    assert run.resumed_at == 0


def test_a_time_budget_ends_training(tiny_task):
    space = ElasticSpace.from_model(tiny_task.model, tiny_task.example_input)
    elastic = ElasticModel.build(tiny_task.model, tiny_task.example_input, space)
    run = train_elastic(elastic, tiny_task.model, tiny_task.data.train, ElasticSettings(budget_s=0.5))
    assert run.steps >= 1 and 0.5 <= run.elapsed_s < 5


def test_the_cache_key_follows_what_the_weights_depend_on(tiny_task):
    model, example = tiny_task.model, tiny_task.example_input
    space, settings = ElasticSpace.from_model(model, example), ElasticSettings(steps=100)
    key = elastic_key("base", space, settings, 0)
    assert key == elastic_key("base", ElasticSpace.from_model(model, example), ElasticSettings(steps=100), 0)
    same_widths = ElasticSpace.from_model(model, example, round_to=16)  # 64 channels: still 64, 48, 32, 16
    assert key == elastic_key("base", same_widths, settings, 0)
    changed = [
        elastic_key("other", space, settings, 0),
        elastic_key("base", ElasticSpace.from_model(model, example, fractions=(1.0, 0.5)), settings, 0),
        elastic_key(
            "base", ElasticSpace.from_model(model, example, fractions=(1.0, 0.75, 0.5, 0.25, 0.125)), settings, 0
        ),
        elastic_key("base", dataclasses.replace(space, blocks=("conv2",)), settings, 0),
        elastic_key("base", space, ElasticSettings(steps=100, lr=2e-3), 0),
        elastic_key("base", space, ElasticSettings(steps=100, importance="taylor"), 0),
        elastic_key("base", space, ElasticSettings(steps=200), 0),
        elastic_key("base", space, settings, 1),
    ]
    assert len({key, *changed}) == len(changed) + 1
    with pytest.raises(ValueError, match="steps"):
        ElasticSettings()


def test_a_models_own_elastic_settings_fill_what_the_user_left_unset() -> None:
    """`--elastic-budget 2h` on MiniLM trains at its measured lr 5e-5 with warmup, not the generic 1e-3 that wrecks
    a pretrained network; what the user sets still wins, and resolving twice changes nothing."""
    from autocompress.examples.minilm_space import ELASTIC

    resolved = ElasticSettings(budget_s=7200).over(ELASTIC)
    assert (resolved.lr, resolved.warmup, resolved.importance, resolved.depth) == (5e-5, 0.1, "obs", False)
    assert resolved.budget_s == 7200 and resolved.fractions == (1.0, 0.875, 0.75)
    assert ElasticSettings(budget_s=60, lr=2e-4).over(ELASTIC).lr == 2e-4
    assert resolved.over(ELASTIC) == resolved
    assert ElasticSettings(steps=5).over({}) == ElasticSettings(steps=5)  # a model without its own: the defaults


def test_the_search_resolves_the_models_elastic_settings_once(tiny_task) -> None:
    from autocompress.config import SearchSettings
    from autocompress.search.driver import with_model_elastic

    task = dataclasses.replace(tiny_task, elastic={"lr": 2e-4, "warmup": 0.2})
    settings = with_model_elastic(SearchSettings(elastic=ElasticSettings(steps=3, warmup=0.05)), task)
    assert settings.elastic is not None and (settings.elastic.lr, settings.elastic.warmup) == (2e-4, 0.05)
    assert with_model_elastic(SearchSettings(), task).elastic is None  # no elastic model asked for: none
