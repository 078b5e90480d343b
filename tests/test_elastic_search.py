"""The elastic model in the search (issue 27): the space follows its trained widths, a trial extracts its
sub-network instead of pruning and distilling, the training happens once (cached under the home, found by a second
search of the same model on another device), is logged as its own MLflow run, resumes after an interruption, and
ships with an export so `apply` rebuilds the same artifact."""

from __future__ import annotations

import json
import signal
import time
import uuid

import optuna
import pytest
import torch
import yaml
from mlflow import MlflowClient

from autocompress.compress import elastic_store
from autocompress.compress.pipeline import build
from autocompress.compress.prune import parameter_count
from autocompress.config import SearchSettings
from autocompress.errors import ConfigError
from autocompress.home import default_tracking_uri
from autocompress.search.refine import PromoteProbes, SkipFromIncumbent
from autocompress.search.seeds import seeds
from autocompress.search.sensitivity import Row, Sensitivity
from autocompress.spaces.sections import ElasticSettings, PruneSettings
from autocompress.spaces.space import SearchSpace, finetune_steps
from autocompress.spaces.strategy import Strategy
from tests.helpers import invoke_cli, load_study, mlflow_runs, start_cli, user_config

SETTINGS = ElasticSettings(steps=12, random_configs=1)


@pytest.fixture(scope="module")
def trained(tiny_task):
    run = elastic_store.train(tiny_task, SETTINGS)
    return elastic_store.trained(tiny_task, SETTINGS), run


def test_the_space_follows_the_elastic_model(tiny_task, cpu_profile):
    plain = SearchSpace.for_task(tiny_task, cpu_profile, "layer")
    space = SearchSpace.for_task(tiny_task, cpu_profile, "layer", SETTINGS)
    trained_space = elastic_store.elastic_space(tiny_task, SETTINGS)
    assert {group.name for group in space.prune.groups} == {dim.name for dim in trained_space.dims}
    assert set(space.prune.blocks) <= set(trained_space.blocks)
    assert not space.distill.finetune_after_pruning and space.signature() != plain.signature()  # 0 steps allowed
    most = max(plain.distill.distill_steps)  # a short fine-tune: up to a quarter of the task's most steps
    assert space.distill.distill_steps == tuple(s for s in plain.distill.distill_steps if s <= most // 4), most
    for knob in space.prune.ratio_knobs():  # the ratios of the trained widths, nothing between
        assert (knob.low, knob.high, knob.step) == (0.0, 0.75, 0.25)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    pruned = unpruned = 0
    tuned = set()
    for _ in range(12):
        strategy = space.sample(study.ask(), seed=0)
        tuned.add(strategy.distill.steps if strategy.prune.any else None)
        assert (strategy.elastic == SETTINGS) == strategy.prune.any  # only a pruned candidate is extracted
        pruned, unpruned = pruned + strategy.prune.any, unpruned + (not strategy.prune.any)
    assert pruned and Strategy.from_yaml(strategy.to_yaml()) == strategy
    assert 0 in tuned and len(tuned - {None}) > 1  # a pruned candidate may take no fine-tune, or some steps
    pruned_starts = [space.strategy(params) for _, params in space.warm_starts()]
    pruned_starts = [strategy for strategy in pruned_starts if strategy.prune.any]
    assert pruned_starts and all(strategy.distill.steps == 0 for strategy in pruned_starts)  # extracted as trained
    rows = [Row("prune", unit, 0.5, 0.9, 0.002, 1.3, (1.28, 1.32), 1000) for unit in space.prune.ratio_units()]
    planted = [space.strategy(seed.params) for seed in seeds(space, Sensitivity(rows, 0.9, 1.0, 10), 0.01)]
    assert any(strategy.prune.any for strategy in planted)  # the table's sub-networks were measured untrained
    assert all(strategy.distill.steps == 0 for strategy in planted), [s.distill.steps for s in planted]
    assert "elastic" not in Strategy().to_yaml()  # strategies without it are written as before


def test_an_extracted_candidate_fine_tunes_a_quarter_of_the_task_s_most_steps_or_its_least():
    assert finetune_steps((0, 25, 50, 100, 200, 400)) == (0, 25, 50, 100)
    assert finetune_steps((50, 100)) == (0, 50)  # MiniLM's: a quarter of 100 is below its least, which stays
    assert finetune_steps((0,)) == (0,)


def test_a_strategy_snaps_to_trained_widths_and_refuses_what_was_not_trained(trained):
    elastic, _ = trained
    dim = elastic.space.dims[0]
    config = elastic_store.config_for(elastic.space, PruneSettings(ratios={dim.name: 0.3}))
    assert config.width(dim) == dim.nearest(0.7) and config.width(dim) in dim.widths
    with pytest.raises(ConfigError, match="not trained to skip"):
        elastic_store.config_for(elastic.space, PruneSettings(skip=["no.such.block"]))


def test_the_depth_step_and_promotion_fine_tune_an_elastic_candidate(tiny_task, cpu_profile):
    """They queue a candidate again with the most steps: in an elastic space that is `distill/steps` (0 allowed),
    not the after-pruning knob a plain space asks, which an elastic candidate would ignore (trained 0 steps)."""
    space = SearchSpace.for_task(tiny_task, cpu_profile, "layer", SETTINGS)
    _, pruned = next((label, params) for label, params in space.warm_starts() if space.strategy(params).prune.any)
    losses = {k: v for k, v in space.distill.uniform(100, True, True).items() if "steps" not in k}  # what TPE adds
    for step in (SkipFromIncumbent(space, None, lambda: None), PromoteProbes(space, SearchSettings(trials=1))):
        strategy = space.strategy(pruned | losses | step.steps.param(step.most))
        assert strategy.elastic == SETTINGS and strategy.distill.steps == step.most == 100  # the capped fine-tune


def test_a_trial_extracts_its_sub_network_without_distilling(tiny_task, cpu_profile, trained, tmp_path):
    elastic, run = trained
    assert run.steps == SETTINGS.steps
    ratios = {dim.name: 0.5 for dim in elastic.space.dims}
    strategy = Strategy(prune=PruneSettings(ratios=ratios), elastic=SETTINGS)
    artifact = build(tiny_task, strategy, cpu_profile, tmp_path / "extracted")
    config = elastic_store.config_for(elastic.space, strategy.prune)
    expected = elastic.extract(config)
    assert artifact.metadata["parameters"] == parameter_count(expected) < parameter_count(tiny_task.model)
    assert artifact.metadata["distill_s"] < 1.0  # nothing trained per trial
    extracted = elastic_store.extract(tiny_task, SETTINGS, strategy.prune)  # the same weights as the shared model
    shared = dict(elastic.model.named_parameters())
    for name, weight in extracted.named_parameters():
        assert torch.equal(weight, shared[name][tuple(slice(0, size) for size in weight.shape)]), name


def test_a_strategy_of_weights_this_home_lacks_is_one_line(tiny_task):
    other = SETTINGS.model_copy(update={"seed": 99})
    with pytest.raises(ConfigError, match="does not hold trained"):
        elastic_store.trained(tiny_task, other)


def _elastic_config(tmp_path, steps: int, device: str = "cpu") -> str:
    config = yaml.safe_load(user_config().read_text())
    config["device"] = device
    config["search"] |= {"elastic": {"steps": steps, "random_configs": 1}, "max_drop": 0.3}
    path = user_config().parent / f"elastic-{uuid.uuid4().hex[:8]}.yaml"  # beside the task's module
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest.mark.e2e
def test_the_elastic_model_is_trained_once_for_two_devices_and_shipped_with_the_export(tmp_path):
    config = _elastic_config(tmp_path, steps=30)
    try:
        first = invoke_cli("search", "--no-sensitivity", config, "--trials", "4", "--study", "tiny-elastic-cpu",
                        "--out", str(tmp_path / "best"))  # fmt: skip
        assert first.returncode == 0, first.stderr[-2000:]
        study = load_study("tiny-elastic-cpu")
        attr = study.user_attrs["elastic"]
        assert attr["trained_here"] and attr["steps"] == 30
        extracted = [t for t in study.trials if t.user_attrs.get("strategy", {}).get("elastic")]
        assert extracted and all(t.user_attrs["strategy"]["prune"]["ratios"] for t in extracted)
        parents, children = mlflow_runs("tiny-elastic-cpu")
        (training,) = [run for run in children if run.info.run_name == "elastic-training"]
        assert json.loads(parents[0].data.params["elastic"])["steps"] == 30  # the parent run says how it was trained
        assert training.data.tags["elastic_key"] == attr["key"] and training.info.status == "FINISHED"
        assert len(MlflowClient(default_tracking_uri()).get_metric_history(training.info.run_id, "loss")) >= 3

        second = invoke_cli("search", "--no-sensitivity", config, "--device", "openvino-cpu", "--trials", "1",
                         "--study", "tiny-elastic-ov", "--confirm", "0")  # fmt: skip
        assert second.returncode == 0, second.stderr[-2000:]
        assert "found trained" in second.stderr
        again = load_study("tiny-elastic-ov").user_attrs["elastic"]
        assert again["key"] == attr["key"] and not again["trained_here"]
        _, ov_children = mlflow_runs("tiny-elastic-ov")
        assert not [run for run in ov_children if run.info.run_name == "elastic-training"]

        exported = tmp_path / "best" / "cpu"  # the bound is loose: a pruned (extracted) candidate wins
        assert Strategy.load(exported / "strategy.yaml").elastic is not None and (exported / "elastic.pt").is_file()
        elastic_store.checkpoint_path(attr["key"]).unlink()  # as on a machine without the study's home
        rebuilt = invoke_cli("apply", str(exported / "strategy.yaml"), config, "--windows", "1",
                          "--out", str(tmp_path / "rebuilt"))  # fmt: skip
        assert rebuilt.returncode == 0, rebuilt.stderr[-2000:]
        assert elastic_store.is_trained(attr["key"])  # installed from the export's elastic.pt
        report = json.loads((exported / "report.json").read_text())
        assert json.loads((tmp_path / "rebuilt" / "report.json").read_text())["test"]["metric"] == report["test"][
            "metric"]  # fmt: skip
    finally:
        (user_config().parent / config).unlink(missing_ok=True)


@pytest.mark.e2e
def test_an_interrupted_elastic_training_resumes_from_its_checkpoint(tmp_path):
    config = _elastic_config(tmp_path, steps=80)
    name = "tiny-elastic-resume"
    try:
        checkpoints = elastic_store.checkpoint_path("any").parent
        before = set(checkpoints.glob("*.pt"))
        process = start_cli("search", "--no-sensitivity", config, "--trials", "1", "--study", name, "--confirm", "0")
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not set(checkpoints.glob("*.pt")) - before and process.poll() is None:
            time.sleep(0.2)  # the first checkpoint is written at step 50
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 130, stderr[-2000:]
        resumed = invoke_cli("search", "--no-sensitivity", config, "--trials", "1", "--study", name, "--confirm", "0")
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        attr = load_study(name).user_attrs["elastic"]
        assert attr["steps"] == 80 and attr["resumed_at"] >= 50
    finally:
        (user_config().parent / config).unlink(missing_ok=True)


def test_the_elastic_budget_flag_turns_it_on_over_the_config(tmp_path):
    from autocompress.commands.common import experiment_of

    assert experiment_of(None, "digits", None).search.elastic is None  # off unless asked
    flagged = experiment_of(None, "digits", None, elastic_budget="90m").search.elastic
    assert flagged is not None and flagged.budget_s == 5400 and flagged.steps is None
    config = tmp_path / "elastic.yaml"
    config.write_text(yaml.safe_dump({"example": "digits", "search": {"elastic": {"steps": 500, "lr": 3e-4}}}))
    merged = experiment_of(config, None, None, elastic_budget="2h").search.elastic
    assert merged is not None and (merged.steps, merged.budget_s, merged.lr) == (500, 7200, 3e-4)
    config.write_text(yaml.safe_dump({"example": "digits", "search": {"elastic": {"lr": 3e-4}}}))
    with pytest.raises(ConfigError, match="needs `steps` or `budget_s`"):
        experiment_of(config, None, None)


def test_a_model_with_nothing_elastic_is_refused_in_one_line(tiny_task):
    import dataclasses

    from torch import nn

    flat = nn.Sequential(nn.Flatten(), nn.Linear(tiny_task.example_input[0].numel(), 10))  # its output width is fixed
    task = dataclasses.replace(tiny_task, model=flat)
    with pytest.raises(ConfigError, match="has no channel group or block an elastic model can shrink"):
        elastic_store.train(task, SETTINGS)
