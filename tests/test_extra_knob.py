"""A knob added from the tests folder (tests/extra_knob/sparsity.py: one module, and `steps:` in a config) reaches
every stage of a search with no change to autocompress: the space samples it, the warm starts leave it neutral,
the sensitivity stage measures it alone, the seeds set it, the estimate credits it, MLflow's views show it, the
pipeline applies it and a strategy records it."""

from __future__ import annotations

import dataclasses
import hashlib
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from autocompress.compress.pipeline import build
from autocompress.runtimes import importable_from
from autocompress.search.plan import SEARCH
from autocompress.search.run_views import layer_table, run_name
from autocompress.search.seeds import estimate, seeds
from autocompress.search.sensitivity import SENSITIVITY_ATTR, Choice, Row, Sensitivity, choices, strategy_of
from autocompress.spaces.added import added_step
from autocompress.spaces.space import SearchSpace
from autocompress.spaces.strategy import Strategy
from tests.helpers import invoke_cli, load_study

ROOT = Path(__file__).resolve().parent.parent
EXTRA = Path(__file__).parent / "extra_knob"
MODULE = "sparsity"  # as the config names it: a module beside the config file

with importable_from(EXTRA):
    added_step(MODULE)
FRACTION = sys.modules[MODULE].FRACTION  # the knob object, as the step made it


@pytest.fixture(scope="module")
def space_and_task(tiny_task, cpu_profile):
    task = dataclasses.replace(tiny_task, steps=(MODULE,))
    return SearchSpace.for_task(task, cpu_profile, "stage"), task


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_no_product_file_names_the_extra_knob():
    for path in (ROOT / "autocompress").rglob("*.py"):
        text = path.read_text()
        assert "sparsity" not in text.lower() and "import tests" not in text and "from tests" not in text, path


def test_the_extra_knob_is_sampled_left_neutral_by_warm_starts_and_recorded(space_and_task):
    space, _ = space_and_task
    assert FRACTION in space.knobs() and f";added={MODULE}:" in space.signature()
    assert all(FRACTION.read(params) == FRACTION.neutral for _, params in space.warm_starts())
    strategy = space.strategy(space.uniform(0.0, "int8") | FRACTION.param(0.25))
    assert strategy.added == {MODULE: {"fraction": 0.25}}
    assert Strategy.from_yaml(strategy.to_yaml()) == strategy and strategy.summary()[f"{MODULE}.fraction"] == 0.25
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(6):
        trial = study.ask()
        sampled = space.sample(trial, seed=0)
        assert sampled.added[MODULE]["fraction"] == FRACTION.read(trial.params) in FRACTION.choices


def test_the_extra_knob_is_measured_alone_seeded_and_estimated(space_and_task):
    space, _ = space_and_task
    found = choices(space)
    assert Choice(FRACTION.kind, FRACTION.unit, 0.5) in found
    assert strategy_of(space, Choice(FRACTION.kind, FRACTION.unit, 0.5)) == Strategy(added={MODULE: {"fraction": 0.5}})
    rows = [Row(choice.kind, choice.unit, choice.value, 0.9, 0.05, 1.01, (0.99, 1.03), 1000) for choice in found
            if choice.kind != FRACTION.kind]  # fmt: skip
    rows.append(Row(FRACTION.kind, FRACTION.unit, 0.5, 0.899, 0.001, 1.2, (1.1, 1.3), 900))  # cheap and fast
    table = Sensitivity(rows, 0.9, 1.0, 10)
    planted = seeds(space, table, allowed_drop=0.01)
    assert planted and all(FRACTION.read(seed.params) == 0.5 for seed in planted)
    drop, speedup = estimate(space, table, space.strategy(planted[0].params))
    assert drop == pytest.approx(0.001) and speedup == pytest.approx(1.2)


def test_the_extra_knob_is_shown_and_applied(space_and_task, cpu_profile, tmp_path):
    space, task = space_and_task
    plain = Strategy(added={MODULE: {"fraction": 0.0}})
    sparse = Strategy(added={MODULE: {"fraction": 0.5}})
    assert run_name(3, sparse, space.added) == "t3 sparse 0.5"
    assert layer_table(sparse, space.quantize.layers, space.added)["sparsity"] == [0.5] * len(space.quantize.layers)
    first = build(task, plain, cpu_profile, tmp_path / "plain").path
    second = build(task, sparse, cpu_profile, tmp_path / "sparse").path
    assert _digest(first) != _digest(second)  # half the weights are zero


@pytest.mark.e2e
def test_a_search_with_an_extra_knob_from_the_tests_folder(tmp_path):
    """Three trials of the CLI with the step's config, the sensitivity stage included. The bound is loose
    (0.1): every stage, confirmation included, must run, and the config's 0.02 can leave no trial feasible (the
    three warm starts measured drops of 0, 0.026 and 0.041), which skips confirmation and export. Run in this
    process, where the config's `tests.user_task` is importable."""
    name = "tiny-extra-knob"
    result = invoke_cli("search", str(EXTRA / "tiny-sparsity.yaml"), "--trials", "3", "--study", name,
                        "--max-drop", "0.1")  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    study = load_study(name)
    trials = [t for t in study.trials if t.state.is_finished()]
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    assert all(FRACTION.read(t.params) is not None for t in trials)
    assert all(t.user_attrs["strategy"]["added"][MODULE]["fraction"] == FRACTION.read(t.params) for t in trials)
    table = study.user_attrs[SENSITIVITY_ATTR]["rows"]
    assert [row["value"] for row in table if row["kind"] == FRACTION.kind] == [0.5]
    cached = {stage.name: stage.cache_key for stage in SEARCH if stage.cache_key}  # where each stage keeps its result
    for name in ("set-up claim", "baseline", "sensitivity table", "confirmation"):
        assert cached[name] in study.user_attrs, name
