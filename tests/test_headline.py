"""The exported figure across windows, on a simulated two-state machine (this VM's: the measured state pairs of a
digits CNN under ONNX Runtime, 2 threads — fast: baseline 1.14 ms, candidate 0.084 ms; slow: 1.28 and 0.113 ms)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from autocompress.evaluators.device.latency import Interleaved, LatencyStats, SpeedupStats, settled_across
from autocompress.evaluators.measure import CONFIRM_POLICY
from autocompress.hardware import get_profile
from autocompress.search.headline import Figure, calm_windows, time_headline, windows_in_calm

FAST, SLOW = (1.14e-3, 0.084e-3), (1.28e-3, 0.113e-3)
ROUNDS = 40


def _window(states: list[tuple[float, float]], seed: int) -> Interleaved:
    """One window whose rounds run in the given states, with 1% jitter per slot."""
    jitter = np.random.default_rng(seed).normal(1.0, 0.01, size=(2, len(states)))
    slots = [[state[artifact] * jitter[artifact, index] for index, state in enumerate(states)] for artifact in (0, 1)]
    latency = LatencyStats(1.0, 1.1, 1.0, 0.01, 0.99, 1.01, 100, False)
    ratios = np.asarray(slots[0]) / np.asarray(slots[1])
    own = SpeedupStats(float(np.median(ratios)), float(ratios.min()), float(ratios.max()), len(states), False)
    return Interleaved([latency, latency], [None, own], len(states), slots[0][0] * 1e3, None, slots,
                       [True] * len(states))  # fmt: skip


def _machine(windows: list[list[tuple[float, float]]]):
    """A timer that plays back the given windows, one per call, and counts the calls."""
    queue = iter(enumerate(windows))
    calls: list[int] = []
    fresh_sessions: list[bool] = []

    def timer(baseline: Path, candidates: list[Path], task, profile, policy, options=None, fresh=False) -> Interleaved:
        index, states = next(queue)
        calls.append(index)
        fresh_sessions.append(fresh)
        return _window(states, seed=index)

    timer.fresh_sessions = fresh_sessions  # type: ignore[attr-defined]
    return timer, calls


def _headline(timer, windows: int = 3):
    return time_headline(Path("b.onnx"), Path("c.onnx"), 7, None, get_profile("cpu"), CONFIRM_POLICY, timer,
                         windows=windows, gap_s=0.0)  # fmt: skip


FAST_RATIO, SLOW_RATIO = FAST[0] / FAST[1], SLOW[0] / SLOW[1]  # 13.57x and 11.33x


def test_a_window_spent_in_the_slow_state_is_left_out_of_the_figure():
    """Judged against its own floor, the all-slow first window would count as calm and pull the figure to
    12.8x; against the floors over all windows it never reached the undisturbed state and is left out."""
    timer, calls = _machine([[SLOW] * ROUNDS, [FAST] * ROUNDS, [FAST] * 30 + [SLOW] * 10])
    headline = _headline(timer)
    assert calls == [0, 1, 2] and headline.left_out == 1 and headline.windows == 2 and not headline.noisy
    assert timer.fresh_sessions == [True] * 3  # each window loads the baseline anew (a new memory layout)
    assert headline.default.speedup == pytest.approx(FAST_RATIO, rel=0.01)
    assert headline.default.ci_low > SLOW_RATIO * 1.05  # no slow-state ratio inside the figure's interval
    assert headline.settled_share == pytest.approx((1.0 + 0.75) / 2)


def test_windows_are_added_until_two_reach_the_undisturbed_state():
    timer, calls = _machine([[FAST] * ROUNDS, [SLOW] * ROUNDS, [SLOW] * ROUNDS, [SLOW] * ROUNDS, [FAST] * ROUNDS])
    headline = _headline(timer)
    assert calls == [0, 1, 2, 3, 4] and headline.windows == 2 and headline.left_out == 3
    assert headline.default.speedup == pytest.approx(FAST_RATIO, rel=0.01) and not headline.noisy


def test_one_window_asked_for_and_the_first_disturbed_gives_the_second_alone():
    """With `windows=1` a second window is timed because the first spent all but five rounds in the slow state; the
    figure is the calm window's, not both windows' own figures flagged noisy."""
    timer, calls = _machine([[FAST] * 5 + [SLOW] * (ROUNDS - 5), [FAST] * ROUNDS])
    headline = _headline(timer, windows=1)
    assert calls == [0, 1] and headline.windows == 1 and headline.left_out == 1 and not headline.noisy
    assert headline.default.speedup == pytest.approx(FAST_RATIO, rel=0.01)


def test_a_machine_that_never_settles_gives_a_noisy_figure_from_every_window():
    """Six windows (the cap: twice those asked for), only the first with a dozen undisturbed rounds."""
    timer, calls = _machine([[FAST] * 12 + [SLOW] * 28] + [[SLOW] * 35 + [FAST] * 5] * 5)
    headline = _headline(timer)
    assert len(calls) == 6 and headline.windows == 6 and headline.left_out == 0
    assert headline.noisy and headline.noisy_windows == 5


def test_a_machine_in_one_state_throughout_gives_that_states_figure():
    timer, calls = _machine([[SLOW] * ROUNDS] * 3)
    headline = _headline(timer)
    assert calls == [0, 1, 2] and headline.windows == 3 and headline.left_out == 0 and not headline.noisy
    assert headline.default.speedup == pytest.approx(SLOW_RATIO, rel=0.01)


def _crowded_window(artifacts: int, seed: int, slow_share: float = 0.25) -> Interleaved:
    """A window of many artifacts on a quiet machine: each slot on its own has a `slow_share` chance of running
    15% slow (a lone preemption), whatever the others do."""
    rng = np.random.default_rng(seed)
    base = np.linspace(1e-3, 4e-3, artifacts)[:, None]
    slots = base * rng.normal(1.0, 0.005, (artifacts, ROUNDS)) * np.where(rng.random((artifacts, ROUNDS)) < slow_share,
                                                                          1.15, 1.0)  # fmt: skip
    latency = LatencyStats(1.0, 1.1, 1.0, 0.01, 0.99, 1.01, 100, False)
    return Interleaved([latency] * artifacts, [None] * artifacts, ROUNDS, float(slots[0, 0]) * 1e3, None,
                       slots.tolist(), [True] * ROUNDS)  # fmt: skip


def test_a_figure_needs_calm_rounds_only_of_the_artifacts_it_compares():
    """Ten artifacts, each slot slow by chance a quarter of the time: rounds with all ten calm are about 6%, too few
    for a figure, so every figure would be noisy; each artifact against the baseline has about 56% calm rounds, and
    its figure comes from them, free of the slow slots."""
    artifacts = 10
    played = iter(range(100))
    timed = windows_in_calm(lambda: _crowded_window(artifacts, next(played)), 3, 0.0, 0.07,
                            groups=[[0, index] for index in range(1, artifacts)])  # fmt: skip
    assert len(timed.measured) == 3  # every pair had two undisturbed windows in the first three
    assert not calm_windows(timed.measured, 0.07).from_calm  # all ten at once: noisy
    base = np.linspace(1e-3, 4e-3, artifacts)
    for index in range(1, artifacts):
        pair = calm_windows(timed.measured, 0.07, [0, index])
        assert pair.from_calm and pair.noisy_windows == 0 and 0.35 < pair.settled_share < 0.8
        figure = Figure.across([timing.paired(0, index) for timing in pair.used])
        assert figure.speedup == pytest.approx(base[0] / base[index], rel=0.01)


def test_a_round_with_most_artifacts_slow_is_left_out_even_where_the_figures_two_were_calm():
    """The machine's state is judged by the median artifact: a round in which eight of ten ran 25% slow is in the
    other state, and no figure of the loop takes it, though the baseline and artifact 1 were calm in it."""
    window = _crowded_window(10, seed=3, slow_share=0.0)
    slots = np.asarray(window.slot_medians)
    slots[2:, :15] *= 1.25  # the first 15 rounds: every artifact but 0 and 1 slow
    window = replace(window, slot_medians=slots.tolist())
    (mask,) = settled_across([window], 0.07, among=[0, 1])
    assert not mask[:15].any() and mask[15:].all()


def test_a_fresh_request_loads_the_reference_anew_where_others_reuse_it(tmp_path):
    """The device keeps a study's baseline loaded between requests; the exported figure's windows ask for it
    fresh, so that each samples a new session (real ONNX Runtime sessions, a tiny exported model)."""
    import torch

    from autocompress.compress.export import export_onnx
    from autocompress.evaluators.device.runner import DeviceRequest, run_request, session_key

    model = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU()).eval()
    path = tmp_path / "model.onnx"
    export_onnx(model, torch.zeros(1, 8), path)
    session_file = str(get_profile("cpu").record.session_file)
    sample = np.zeros((1, 8), np.float32)

    def request(fresh: bool) -> DeviceRequest:
        return DeviceRequest([str(path)], session_file, {}, 1, score=[], timed=False, fresh_sessions=fresh)

    kept: dict = {}
    run_request(request(False), [], sample, kept)
    first = kept[session_key(str(path), request(False))]
    run_request(request(False), [], sample, kept)
    assert kept[session_key(str(path), request(False))] is first  # reused
    run_request(request(True), [], sample, kept)
    assert list(kept.values()) == [first]  # the fresh request neither used nor replaced the kept session
