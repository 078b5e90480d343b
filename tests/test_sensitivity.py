"""Sensitivity analysis and the candidates it seeds: a planted sensitive layer is found, the solver keeps to its
budget and finds the best combination, and the stage runs inside a real search."""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path

import optuna
import pytest
import torch
from torch import nn

from autocompress.compress.pipeline import build
from autocompress.compress.quantize import RUNTIME_UNIT
from autocompress.config import SearchSettings
from autocompress.evaluators.measure import measure_artifact
from autocompress.search.candidates import first_candidates
from autocompress.search.seeds import estimate, params_of, recipe_with_pruning, seeds, solve
from autocompress.search.sensitivity import Row, Sensitivity, analyse, choices, in_turns
from autocompress.search.sensitivity_report import write
from autocompress.spaces.space import SearchSpace
from autocompress.spaces.strategy import Strategy
from autocompress.task import Task
from tests.helpers import invoke_cli, load_study, mlflow_runs, user_config


class Planted(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.fc(x.mean(dim=(2, 3)))


def _planted(tiny_task: Task) -> Task:
    """Trained, then two plants that leave the fp32 function unchanged: conv1 gets 8 dead channels (pruning them
    costs nothing), and one live channel of conv1 is scaled up 1000x (with conv2 scaling it back), an activation
    outlier that ruins a per-tensor int8 range wherever that tensor is quantized (conv1's output, conv2's input)."""
    torch.manual_seed(0)
    model = Planted()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(15):
        for images, labels in tiny_task.data.train:
            loss = nn.functional.cross_entropy(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    wide = Planted().eval()
    wide.conv1, wide.conv2 = nn.Conv2d(1, 16, 3, padding=1), nn.Conv2d(16, 16, 3, padding=1)
    with torch.no_grad():
        for tensor in (wide.conv1.weight, wide.conv1.bias, wide.conv2.weight):
            tensor.zero_()
        wide.conv1.weight[:8], wide.conv1.bias[:8] = model.conv1.weight, model.conv1.bias
        wide.conv2.weight[:, :8], wide.conv2.bias[:] = model.conv2.weight, model.conv2.bias
        wide.fc.load_state_dict(model.fc.state_dict())
        wide.conv1.weight[0] *= 1000
        wide.conv1.bias[0] *= 1000
        wide.conv2.weight[:, 0] /= 1000
        inputs = next(iter(tiny_task.data.validation))[0]
        assert torch.allclose(wide(inputs), model.eval()(inputs), atol=1e-3)
    return Task("planted", wide.eval(), tiny_task.example_input, tiny_task.data, tiny_task.metric)


@pytest.mark.e2e
def test_the_table_finds_the_planted_sensitive_layer(tiny_task, cpu_profile, tmp_path):
    task = _planted(tiny_task)
    space = SearchSpace.from_model(task.model, task.example_input, cpu_profile)
    units = {(c.kind, c.unit) for c in choices(space)}
    assert units == {("precision", "conv1"), ("precision", "conv2"), ("precision", "fc"), ("prune", "conv1"),
                     ("prune", "conv2")}  # fmt: skip
    baseline = build(task, Strategy(), cpu_profile, tmp_path / "baseline").path
    metric = measure_artifact(baseline, task, cpu_profile).metric
    table = analyse(task, cpu_profile, space, baseline, metric, tmp_path / "work")
    row = {(r.kind, r.unit, r.value): r for r in table.rows}
    # the dead half went (conv2 re-fitted to the same function, up to its damping), despite conv1's 1000x channel
    assert row[("prune", "conv1", 0.5)].drop == pytest.approx(0.0, abs=0.005)
    assert row[("prune", "conv2", 0.5)].drop > row[("prune", "conv1", 0.5)].drop  # conv2's channels all mattered
    outlier = min(row[("precision", "conv1", "int8")].drop, row[("precision", "conv2", "int8")].drop)
    assert row[("precision", "fc", "int8")].drop < 0.03 < outlier
    assert table.rounds >= 30
    assert not (tmp_path / "work").exists()  # the single-choice artifacts are removed
    files = write(table, tmp_path / "out", "accuracy", 0.02, "planted")
    assert [p.name for p in files] == ["sensitivity.md", "sensitivity.csv", "sensitivity.json", "sensitivity.png"]
    assert "| conv2 | int8 |" in files[0].read_text() and files[3].read_bytes()[:4] == b"\x89PNG"
    assert Sensitivity.from_dict(table.as_dict()) == table


def test_a_table_cut_short_by_its_budget_measures_each_kind_in_turn(tiny_task, digits_untrained, cpu_profile, tmp_path):
    """A time budget spent after the first build leaves one real row (the first choice of the first kind) and
    says how many were left out; the kinds take turns, so a longer partial table has each of them."""
    space = SearchSpace.from_model(tiny_task.model, tiny_task.example_input, cpu_profile)
    found = choices(space)
    baseline = build(tiny_task, Strategy(), cpu_profile, tmp_path / "baseline").path
    metric = measure_artifact(baseline, tiny_task, cpu_profile).metric
    table = analyse(tiny_task, cpu_profile, space, baseline, metric, tmp_path / "work", budget_s=0.0)
    (row,) = table.rows
    assert (row.kind, row.unit, row.value) == (found[0].kind, found[0].unit, found[0].value)
    assert row.speedup > 0 and row.metric == pytest.approx(metric, abs=0.05) and table.rounds >= 1
    assert table.unmeasured == len(found) - 1 and Sensitivity.from_dict(table.as_dict()) == table
    assert "left out" in write(table, tmp_path / "out", "accuracy", 0.02, "cut short")[0].read_text()

    digits = choices(SearchSpace.from_model(digits_untrained.model, digits_untrained.example_input, cpu_profile))
    order = in_turns(digits)
    kinds = {choice.kind for choice in digits}
    assert sorted(order) == list(range(len(digits))) and len(kinds) >= 3  # precision, prune, skip
    assert {digits[index].kind for index in order[: len(kinds)]} == kinds


def _row(kind: str, unit: str, value, drop: float, speedup: float) -> Row:
    return Row(kind, unit, value, 0.9 - drop, drop, speedup, (speedup * 0.99, speedup * 1.01), 1000)


TABLE = Sensitivity(
    [
        _row("precision", "a", "int8", 0.004, 1.10),
        _row("precision", "b", "int8", 0.012, 1.30),
        _row("precision", "c", "int8", 0.001, 0.95),  # slower: never chosen
        _row("prune", "p", 0.25, 0.003, 1.15),
        _row("prune", "p", 0.5, 0.009, 1.40),
        _row("prune", "q", 0.25, 0.006, 1.05),
    ],
    0.9,
    1.0,
    40,
)


def test_the_solver_finds_the_best_combination_within_its_budget():
    for budget in (0.005, 0.01, 0.02, 0.04):
        chosen = solve(TABLE, budget)
        assert sum(r.drop for r in chosen) <= budget + 1e-12
        assert len({(r.kind, r.unit) for r in chosen}) == len(chosen)  # one choice per unit
        faster = [r for r in TABLE.rows if r.speedup > 1]
        groups = [[None, *[r for r in faster if (r.kind, r.unit) == key]] for key in {(r.kind, r.unit) for r in faster}]
        best = max(
            sum(r.saving for r in combo if r)
            for combo in itertools.product(*groups)
            if sum(r.drop for r in combo if r) <= budget
        )
        assert sum(r.saving for r in chosen) == pytest.approx(best, abs=1e-9)  # the brute-force optimum


def test_seeds_are_valid_parameters_with_estimates_within_their_budgets(digits_untrained, cpu_profile):
    space = SearchSpace.from_model(digits_untrained.model, digits_untrained.example_input, cpu_profile)
    rows = [_row("precision", unit, "int8", 0.002 * i, 1.02) for i, unit in enumerate(space.quantize.units())]
    rows += [_row("prune", unit, 0.5, 0.004 * i, 1.1) for i, unit in enumerate(space.prune.ratio_units())]
    rows += [_row("skip", block, True, 0.003, 1.15) for block in space.prune.blocks]
    table = Sensitivity(rows, 0.99, 1.0, 30)
    planted = seeds(space, table, allowed_drop=0.01)
    within = next(seed for seed in planted if seed.label == "sensitivity x1")
    assert within.drop <= 0.01 + 1e-12
    assert any(space.strategy(seed.params).prune.skip for seed in planted)  # skipping blocks is among the choices
    study = optuna.create_study(directions=["maximize", "minimize"])
    for seed in planted:
        study.enqueue_trial(seed.params)
        strategy = space.sample(study.ask(), seed=0)  # the parameters are exactly the space's
        drop, speedup = estimate(space, table, strategy)
        assert drop == pytest.approx(seed.drop) and speedup == pytest.approx(seed.speedup)
        if strategy.prune.any:  # distilled where re-fitting does not repair (skipped blocks), else not
            most = max(space.distill.distill_steps)
            assert strategy.distill.steps == (most if strategy.prune.needs_recovery else 0)


@pytest.mark.e2e
def test_a_search_runs_the_sensitivity_stage_and_its_seeds(tmp_path: Path):
    # on this CPU int8 slows the tiny model down and pruning costs much accuracy before distillation: a loose
    # bound leaves the solver the choices that pay (conv1 pruned by half: measured drop 0.52, 1.02-1.13x faster)
    # without warm starts, so that no seed coincides with one (uniform 50% pruning of the one group) and is dropped
    result = invoke_cli("search", str(user_config()), "--study", "tiny-seeded", "--trials", "6", "--sensitivity",
                        "--no-warm-starts", "--max-drop", "0.6", "--confirm", "0")  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    study = load_study("tiny-seeded")
    table = Sensitivity.from_dict(study.user_attrs["sensitivity"])
    assert table.rows and {r.kind for r in table.rows} == {"precision", "prune"}
    seeded = [t for t in study.trials if "seeded" in t.user_attrs]
    # the tiny model's savings are close to timing noise: seeds exist exactly when a measured choice pays within
    # the solver's widest budget (4x the bound), and every seed runs
    paying = [row for row in table.rows if row.saving > 0 and row.drop <= 4 * 0.6]
    assert bool(seeded) == bool(paying), [(r.unit, r.value, r.drop, r.speedup) for r in table.rows]
    assert all(t.state.name == "COMPLETE" for t in seeded)
    assert all("estimate_speedup" in t.user_attrs["metrics"] for t in study.trials if t.state.name == "COMPLETE")
    parents, _ = mlflow_runs("tiny-seeded")
    from tests.helpers import artifact_names

    assert {"sensitivity.md", "sensitivity.png"} <= artifact_names(parents[0].info.run_id)
    again = invoke_cli("sensitivity", str(user_config()), "--study", "tiny-seeded", "--max-drop", "0.6",
                       "--out", str(tmp_path))  # fmt: skip
    assert again.returncode == 0, again.stderr[-2000:]  # the stored table, written out again without measuring
    assert (tmp_path / "sensitivity.md").read_text().count("\n| ") == len(table.rows) + 1


def _probe_trial(study: optuna.Study, steps: int, drop: float, speedup: float, feasible: bool) -> None:
    params = {"prune/all": 0.5, "prune/importance": "l2", "distill/steps_after_pruning": steps, "distill/alpha": 0.7}
    distributions = {
        "prune/all": optuna.distributions.FloatDistribution(0, 0.75, step=0.125),
        "prune/importance": optuna.distributions.CategoricalDistribution(["l2"]),
        "distill/steps_after_pruning": optuna.distributions.CategoricalDistribution([25, 50, 150]),
        "distill/alpha": optuna.distributions.FloatDistribution(0, 1),
    }
    metrics = {"metric_drop": drop, "speedup": speedup, "feasible": float(feasible)}
    attrs = {"metrics": metrics, "strategy": Strategy().model_dump()}
    trial = optuna.trial.create_trial(params=params, distributions=distributions, values=[0.9, 1 / speedup],
                                      user_attrs=attrs)  # fmt: skip
    study.add_trial(trial)


def test_a_promising_probe_gets_the_full_distillation_budget(digits_untrained, cpu_profile):
    from autocompress.config import SearchSettings
    from autocompress.search.refine import PromoteProbes

    space = SearchSpace.from_model(digits_untrained.model, digits_untrained.example_input, cpu_profile,
                                   {"granularity": "global", "distill_steps": (0, 25, 50, 150)})  # fmt: skip
    study = optuna.create_study(directions=["maximize", "minimize"])
    promote = PromoteProbes(space, SearchSettings(max_drop=0.01))
    _probe_trial(study, 25, drop=0.025, speedup=3.0, feasible=False)  # close to the bound and fast: promoted
    promote(study, study.trials[-1])
    _probe_trial(study, 25, drop=0.2, speedup=4.0, feasible=False)  # far from the bound: not worth 150 steps
    promote(study, study.trials[-1])
    _probe_trial(study, 150, drop=0.02, speedup=3.5, feasible=False)  # already had the most steps
    promote(study, study.trials[-1])
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert len(waiting) == 1 and waiting[0].user_attrs["promoted_from"] == 0
    queued = waiting[0].system_attrs["fixed_params"]  # what the next trial will be asked for
    assert queued["distill/steps_after_pruning"] == 150 and queued["prune/all"] == 0.5


def _incumbent(study: optuna.Study, space: SearchSpace, skip: tuple[str, ...], speedup: float,
               ratios: dict[str, float] | None = None) -> None:  # fmt: skip
    params = space.prune.params(ratios or {}, {}, skip) | {"distill/steps_after_pruning": 25}
    distributions = {name: optuna.distributions.CategoricalDistribution([value]) for name, value in params.items()}
    metrics = {"metric_drop": 0.0, "speedup": speedup, "feasible": 1.0}
    strategy = Strategy(prune=space.prune.settings(ratios or {}, {}, skip)).model_dump()
    study.add_trial(optuna.trial.create_trial(params=params, distributions=distributions, values=[0.99, 1 / speedup],
                                              user_attrs={"metrics": metrics, "strategy": strategy}))  # fmt: skip


def _waiting_skips(study: optuna.Study, space: SearchSpace) -> list[list[str]]:
    queued = [t.system_attrs["fixed_params"] for t in study.get_trials(states=(optuna.trial.TrialState.WAITING,))]
    return [[block for block in space.prune.blocks if params[f"skip/{block}"]] for params in queued]


def _run_queued(study: optuna.Study, refine, feasible: bool) -> None:
    """The queued depth trial, measured as holding the bound or not, then the step's callback on it."""
    trial = study.ask()
    trial.set_user_attr("metrics", {"metric_drop": 0.0 if feasible else 0.05, "speedup": 4.0, "feasible": feasible})
    study.tell(trial, [0.99, 0.25])
    refine(study, study.trials[-1])


def test_the_fastest_feasible_trial_is_queued_again_with_the_cheapest_blocks_skipped(digits_untrained, cpu_profile):
    from autocompress.search.refine import DEPTH_ATTR, REFINED_ATTR, SkipFromIncumbent

    space = SearchSpace.from_model(digits_untrained.model, digits_untrained.example_input, cpu_profile)
    drops = {"stage1.0": 0.03, "stage1.1": 0.01, "stage2.1": 0.02, "stage3.1": 0.0}
    rows = [_row("skip", block, True, drop, 1.2) for block, drop in drops.items()]
    rows[-1] = _row("skip", "stage3.1", True, 0.0, 0.97)  # skipping it measured slower: never proposed
    refine = SkipFromIncumbent(space, Sensitivity(rows, 0.99, 1.0, 30), left=lambda: None)
    study = optuna.create_study(directions=["maximize", "minimize"])
    _incumbent(study, space, (), speedup=2.0)
    _incumbent(study, space, ("stage1.1",), speedup=3.0)  # the incumbent: already skips the cheapest block
    study.enqueue_trial({})
    refine(study, study.trials[-1])
    assert REFINED_ATTR not in study.user_attrs  # a queued first candidate is not measured yet: wait for it
    study.tell(study.ask(), state=optuna.trial.TrialState.FAIL)
    refine(study, study.trials[-1])
    refine(study, study.trials[-1])  # once per study
    assert _waiting_skips(study, space) == [["stage1.0", "stage1.1", "stage2.1"]]  # both remaining blocks first
    queued = study.get_trials(states=(optuna.trial.TrialState.WAITING,))[0].system_attrs["fixed_params"]
    assert queued["distill/steps_after_pruning"] == max(space.distill.distill_steps)
    assert study.user_attrs[REFINED_ATTR] == 1
    _run_queued(study, refine, feasible=False)  # too deep: halfway, the cheapest of the two
    assert _waiting_skips(study, space) == [["stage1.1", "stage2.1"]]
    _run_queued(study, refine, feasible=True)
    assert not _waiting_skips(study, space)  # one more block holds, two do not: the step is done
    assert (study.user_attrs[DEPTH_ATTR]["holds"], study.user_attrs[DEPTH_ATTR]["fails"]) == (1, 2)
    study = optuna.create_study(directions=["maximize", "minimize"])
    _incumbent(study, space, ("stage3.1",), speedup=2.0)
    SkipFromIncumbent(space, Sensitivity(rows, 0.99, 1.0, 30), left=lambda: 0)(study, study.trials[-1])
    assert REFINED_ATTR not in study.user_attrs  # no budget: the step waits for a resumed search
    SkipFromIncumbent(space, Sensitivity(rows, 0.99, 1.0, 30), left=lambda: 1)(study, study.trials[-1])
    assert len(study.get_trials(states=(optuna.trial.TrialState.WAITING,))) == 1  # one trial at a time
    assert study.user_attrs[REFINED_ATTR] == 0


def test_the_depth_step_bisects_over_the_count_of_blocks(digits_untrained, cpu_profile):
    """Four blocks, of which the two cheapest hold: all four, then two, then three, and no trial more."""
    from autocompress.search.refine import SkipFromIncumbent

    space = SearchSpace.from_model(digits_untrained.model, digits_untrained.example_input, cpu_profile)
    drops = {"stage1.0": 0.03, "stage1.1": 0.01, "stage2.1": 0.04, "stage3.1": 0.02}
    refine = SkipFromIncumbent(space, Sensitivity([_row("skip", b, True, d, 1.2) for b, d in drops.items()], 0.99,
                                                  1.0, 30), left=lambda: None)  # fmt: skip
    study = optuna.create_study(directions=["maximize", "minimize"])
    _incumbent(study, space, (), speedup=2.0, ratios={"stem.0": 0.5})
    refine(study, study.trials[-1])
    tried = []
    while _waiting_skips(study, space):
        (skipped,) = _waiting_skips(study, space)
        tried.append(skipped)
        _run_queued(study, refine, feasible=set(skipped) <= {"stage1.1", "stage3.1"})
    assert tried == [list(space.prune.blocks), ["stage1.1", "stage3.1"], ["stage1.0", "stage1.1", "stage3.1"]]


def test_an_interrupted_depth_trial_leaves_the_decision_to_its_retry(digits_untrained, cpu_profile):
    """Interrupted and queued again: the retry carries the count and decides; a depth trial that failed for
    good counts as not holding."""
    from autocompress.search.recovery import requeue
    from autocompress.search.refine import DEPTH_ATTR, SkipFromIncumbent

    space = SearchSpace.from_model(digits_untrained.model, digits_untrained.example_input, cpu_profile)
    rows = [_row("skip", block, True, 0.01, 1.2) for block in ("stage1.0", "stage1.1")]
    refine = SkipFromIncumbent(space, Sensitivity(rows, 0.99, 1.0, 30), left=lambda: None)
    study = optuna.create_study(directions=["maximize", "minimize"])
    _incumbent(study, space, (), speedup=2.0, ratios={"stem.0": 0.5})
    refine(study, study.trials[-1])
    interrupted = study.ask()
    space.sample(interrupted, seed=0)  # the queued parameters, as the objective takes them
    requeue(study, interrupted)
    study.tell(interrupted, state=optuna.trial.TrialState.FAIL)
    refine(study, study.trials[interrupted.number])
    assert study.user_attrs[DEPTH_ATTR]["fails"] == 3  # undecided
    assert _waiting_skips(study, space) == [["stage1.0", "stage1.1"]]  # the retry, with the depth trial's count
    broken = study.ask()
    study.tell(broken, state=optuna.trial.TrialState.FAIL)
    refine(study, study.trials[broken.number])
    assert study.user_attrs[DEPTH_ATTR]["fails"] == 2 and _waiting_skips(study, space) == [["stage1.0"]]


def test_a_narrow_pruning_range_gets_its_middle_measured(digits_untrained, cpu_profile):
    """Where the space stops below the table's second ratio (MiniLM's 0.25), its middle is measured too: the
    accuracy bound's edge may lie there, and the solver can only pick ratios the table has."""
    model, example = digits_untrained.model, digits_untrained.example_input
    options = {"granularity": "global", "max_prune_ratio": 0.25, "prune_step": 0.0625}
    narrow = SearchSpace.from_model(model, example, cpu_profile, options)
    wide = SearchSpace.from_model(model, example, cpu_profile, {"granularity": "global"})
    assert [c.value for c in choices(narrow) if c.kind == "prune"] == [0.125, 0.25]
    assert [c.label for c in choices(narrow) if c.kind == "prune"] == ["all: 12.5%", "all: 25%"]
    assert [c.value for c in choices(wide) if c.kind == "prune"] == [0.25, 0.5]


def test_the_best_recipe_is_seeded_with_the_pruning_that_fits_half_the_bound(digits_untrained, cpu_profile):
    """A recipe is no row of the table, so the solver alone never proposes 'recipe + pruning'; this seed does,
    with the pruning the table says costs at most half the bound."""
    space = SearchSpace.from_model(digits_untrained.model, digits_untrained.example_input, cpu_profile,
                                   {"granularity": "global"})  # fmt: skip
    table = Sensitivity([_row("prune", "all", 0.25, 0.004, 1.3), _row("prune", "all", 0.5, 0.03, 1.8)], 0.99, 1.0, 30)
    in_order = seeds(space, table, allowed_drop=0.01)
    planted = {seed.label: seed for seed in in_order}
    recipe = space.quantize.recipes[0]
    on_recipe = planted[f"{recipe.label} + sensitivity pruning"]
    assert in_order[0] is on_recipe and len(in_order) > 1  # it runs before the solver's seeds
    strategy = space.strategy(on_recipe.params)
    assert strategy.prune.ratios == {group.name: 0.25 for group in space.prune.groups}  # 0.5 costs past half
    assert strategy == space.strategy(on_recipe.params | space.quantize.recipe(recipe))  # the recipe's precisions
    assert strategy.quantize.any and strategy.distill.steps == 0  # re-fitted: not distilled
    assert not recipe_with_pruning(space, Sensitivity([_row("prune", "all", 0.25, 0.02, 1.3)], 0.99, 1.0, 30), 0.01, 0)


def test_the_recipe_seed_is_queued_before_the_pruned_warm_starts(digits_untrained, cpu_profile):
    """A time budget may end inside the first candidates: the recipe with the table's pruning runs after the
    unpruned warm starts and before the pruned ones, which cost most (MiniLM: 35-44 s each, past the bound)."""
    space = SearchSpace.from_model(digits_untrained.model, digits_untrained.example_input, cpu_profile,
                                   {"granularity": "global"})  # fmt: skip
    table = Sensitivity([_row("prune", "all", 0.25, 0.004, 1.3), _row("prune", "all", 0.5, 0.03, 1.8)], 0.99, 1.0, 30)
    study = optuna.create_study(directions=["maximize", "minimize"])
    queued = first_candidates(study, space, SearchSettings(trials=30), table, baseline_metric=0.99)
    trials = study.get_trials(deepcopy=False)
    labels = [t.user_attrs.get("enqueued") or t.user_attrs["seeded"] for t in trials]
    fixed = [t.system_attrs["fixed_params"] for t in trials]  # waiting: not yet run
    prunes = [space.strategy(params).prune.any for params in fixed]
    warm, planted = space.warm_starts(), seeds(space, table, allowed_drop=0.01)
    recipe_seed = f"{space.quantize.recipes[0].label} + sensitivity pruning"
    unpruned = [label for label, params in warm if not space.strategy(params).prune.any]
    assert queued == len(trials) == len({repr(sorted(params.items())) for params in fixed})
    assert labels[: len(unpruned) + 1] == [*unpruned, recipe_seed] and not any(prunes[: len(unpruned)])
    pruned_warm = [label for label, params in warm if space.strategy(params).prune.any]
    assert pruned_warm and labels[len(unpruned) + 1 : len(unpruned) + 1 + len(pruned_warm)] == pruned_warm
    assert {label for label, _ in warm} <= set(labels) <= {label for label, _ in warm} | {s.label for s in planted}


@pytest.mark.parametrize("layers_saving", [0.6, 0.3])
def test_the_runtime_s_compute_precision_and_int8_layers_are_alternatives(digits_untrained, cpu_profile, layers_saving):
    """bf16 compute speeds up the layers int8 would (MiniLM/openvino-cpu: bf16 alone 1.72x, int8 alone 2.73x, both
    2.54x): their savings do not add. The seeds take the better plan of the two and the estimate the larger saving,
    so bf16 compute joins a seed only where it beats the per-layer int8 it overlaps."""
    space = SearchSpace.from_model(digits_untrained.model, digits_untrained.example_input, cpu_profile)
    space = replace(space, quantize=replace(space.quantize, runtime_precisions=("fp32", "bf16")))  # as on a bf16 CPU
    units = list(space.quantize.units())
    rows = [_row("precision", unit, "int8", 0.0001, 1 / (1 - layers_saving / len(units))) for unit in units]
    assert all(row.speedup_ci[0] > 1 for row in rows)  # each a choice the solver may add to bf16's
    table = Sensitivity([*rows, _row("precision", RUNTIME_UNIT, "bf16", 0.0, 1.72)], 0.99, 1.0, 30)
    first = space.strategy(seeds(space, table, allowed_drop=0.01)[0].params)
    int8_wins = layers_saving > 1 - 1 / 1.72
    assert first.quantize.any == int8_wins and (first.quantize.runtime_precision == "bf16") != int8_wins
    all_int8 = space.strategy(params_of(space, rows, 0))
    both = all_int8.model_copy(update={"quantize": all_int8.quantize.model_copy(update={"runtime_precision": "bf16"})})
    assert estimate(space, table, both)[1] == pytest.approx(1 / (1 - max(layers_saving, 1 - 1 / 1.72)))
