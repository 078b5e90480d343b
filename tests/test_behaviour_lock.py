"""Behaviour lock: the parameters a seeded search tries, recorded before the search was restructured (issue 29)
and kept since as the check that a seed reproduces a search.

Two locks, each against a committed fixture under tests/behaviour_lock/:

- `test_a_seeded_search_draws_the_same_first_trials` (e2e) runs the real CLI on the tests' tiny user task at
  layer granularity (its trials take a second; the digits version took 35-40 s of the suite). Only the part of a
  search that does not react to measured latency is deterministic, so it runs with `--no-sensitivity` (the
  table's seeds come from timings) and a budget of 20 trials (TPE's start-up is then 10 trials: the warm starts
  and the start-up sampler's draws, both fixed by the seed). It is stopped after five trials: the four warm
  starts and a draw (the next draws distil 400 steps). It records the parameters, not the measurements, so it
  holds on any machine.
- `test_sampled_parameters_given_the_same_values_are_unchanged` (fast) drives the stages on the digits network
  with a fixed sensitivity table and trial values computed from each strategy: then the seeds, the promotions,
  the depth step and TPE's modelled draws are deterministic too.

`AUTOCOMPRESS_RECORD_LOCK=1` rewrites the fixtures (on unchanged code only: that is what they lock).
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
import zlib
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from autocompress.config import SearchSettings
from autocompress.search.candidates import first_candidates, worker_sampler
from autocompress.search.refine import PromoteProbes, SkipFromIncumbent
from autocompress.search.results import METRICS_ATTR
from autocompress.search.sensitivity import Row, Sensitivity, choices
from autocompress.spaces.space import SearchSpace
from tests.helpers import load_study, start_cli, user_config

FIXTURES = Path(__file__).parent / "behaviour_lock"
RECORD = os.environ.get("AUTOCOMPRESS_RECORD_LOCK") == "1"
SEED = 7
TRIALS = 5


def _same(got: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Equal keys and values; floats to 1e-12 relative (JSON keeps them exact, but numpy's AVX-512 and AVX2
    paths round TPE's arithmetic differently in the last bit: 1.034285268343063 vs ...064 on two CPUs)."""
    return got.keys() == wanted.keys() and all(
        math.isclose(value, wanted[key], rel_tol=1e-12) if isinstance(value, float) else value == wanted[key]
        for key, value in got.items()
    )


def _locked(name: str, found: list[dict[str, Any]]) -> None:
    """Compare with the fixture's first entries (exact but for floats' last bit), or record it."""
    path = FIXTURES / name
    if RECORD:
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(found, indent=1, sort_keys=True) + "\n")
        pytest.skip(f"recorded {path}")
    expected = json.loads(path.read_text())[: len(found)]
    assert len(found) == len(expected)
    for number, (got, wanted) in enumerate(zip(found, expected, strict=True)):
        assert _same(got, wanted), f"trial {number} differs: {got} != {wanted}"


@pytest.mark.e2e
def test_a_seeded_search_draws_the_same_first_trials():
    study_name = "tiny-behaviour-lock"
    process = start_cli("search", str(user_config()), "--granularity", "layer", "--no-sensitivity", "--trials", "20",
                        "--seed", str(SEED), "--study", study_name, "--confirm", "0")  # fmt: skip
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and process.poll() is None:
            try:
                trials = load_study(study_name).get_trials(deepcopy=False)
            except KeyError:
                trials = []
            if len([t for t in trials if t.state.is_finished()]) >= TRIALS:
                break
            time.sleep(0.5)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)  # what follows those trials is not locked
        _, stderr = process.communicate(timeout=300)
    trials = sorted(load_study(study_name).trials, key=lambda t: t.number)[:TRIALS]
    assert len(trials) == TRIALS and all(t.state == TrialState.COMPLETE for t in trials), stderr[-2000:]
    assert len({repr(sorted(t.params.items())) for t in trials}) == TRIALS  # five different candidates
    _locked("tiny_cli_first_five.json", [t.params for t in trials])


def _table(space: SearchSpace) -> Sensitivity:
    """A fixed table over every single choice, in a fixed order: drops and speedups that vary with the choice
    (a checksum of its kind, unit and value, so neither depends on the order the stage measures them in)."""
    rows = []
    for choice in sorted(choices(space), key=lambda choice: (choice.kind, choice.unit, str(choice.value))):
        mixed = zlib.crc32(f"{choice.kind}|{choice.unit}|{choice.value}".encode())
        speedup = 1.0 + 0.01 * (mixed % 5) + (0.08 if choice.kind == "skip" else 0.0)
        drop = 0.001 * (mixed % 7)
        rows.append(Row(choice.kind, choice.unit, choice.value, 0.98 - drop, drop, speedup,
                        (speedup - 0.004, speedup + 0.004), 1000))  # fmt: skip
    return Sensitivity(rows, 0.98, 1.0, 10)


def test_sampled_parameters_given_the_same_values_are_unchanged(digits_untrained, cpu_profile):
    model, example = digits_untrained.model, digits_untrained.example_input
    space = SearchSpace.from_model(model, example, cpu_profile, {"distill_steps": [0, 25, 50]})
    settings = SearchSettings(trials=24, seed=SEED)
    table = _table(space)
    study = optuna.create_study(directions=["maximize", "minimize"])
    first_candidates(study, space, settings, table, baseline_metric=0.98)
    worker_sampler(study, settings, "ran", SEED)

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        strategy = space.sample(trial, seed=trial.number)
        int8 = len(strategy.quantize.layers_at("int8")) / max(len(strategy.quantize.precisions), 1)
        steps = strategy.distill.steps / 50
        drop = 0.03 * strategy.prune.mean_ratio * (1.0 - 0.5 * steps) + 0.004 * int8 + 0.006 * len(strategy.prune.skip)
        speedup = 1.0 + strategy.prune.mean_ratio + 0.4 * int8 + 0.1 * len(strategy.prune.skip)
        feasible = drop <= settings.max_drop
        trial.set_user_attr(METRICS_ATTR, {"metric_drop": drop, "speedup": speedup, "feasible": float(feasible)})
        trial.set_user_attr("strategy", strategy.model_dump())
        trial.set_constraint("metric_drop", drop - settings.max_drop)
        return 0.98 - drop, 1.0 / speedup

    ran: list[int] = []
    left = lambda: settings.trials - len(ran)  # noqa: E731
    callbacks = [PromoteProbes(space, settings), SkipFromIncumbent(space, table, left),
                 lambda study, trial: ran.append(trial.number)]  # fmt: skip
    study.optimize(objective, n_trials=settings.trials, callbacks=callbacks)
    _locked("digits_values_given.json", [t.params for t in sorted(study.trials, key=lambda t: t.number)])
