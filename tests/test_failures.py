"""Bugs are bugs: only the failures a trial may legitimately have fail it; anything else stops the search, the
candidate queued again (autocompress/search/failures.py). The end-to-end case (a planted AttributeError in a user's
forward, the one line naming the log file, the resume after the fix) is in tests/test_e2e_user_task.py."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

from autocompress.config import SearchSettings
from autocompress.errors import CandidateRefused, DeviceError, MeasurementFailed, NonFiniteMetric
from autocompress.search import trials
from autocompress.search.failures import (
    BUG_REASON,
    TRIAL_FAILURES,
    DeviceCodeBug,
    TrialBug,
    device_failure,
    is_trial_failure,
)
from autocompress.signals import DeadlineExceeded
from autocompress.spaces.space import SearchSpace


class NullTracker:
    """MLflow left out: what the objective tells it is kept for the assertions."""

    parent_id = None

    def __init__(self) -> None:
        self.ended: list[tuple[str, str]] = []

    def start_trial(self, number: int, tags: dict) -> str:
        return f"run-{number}"

    def log(self, *args: object, **kwargs: object) -> None:
        pass

    def log_text(self, *args: object) -> None:
        pass

    def log_table(self, *args: object) -> None:
        pass

    def end_trial(self, run_id: str, status: str) -> None:
        self.ended.append((run_id, status))


def _objective(task, profile) -> tuple[trials.Objective, NullTracker]:
    tracker = NullTracker()
    space = SearchSpace.for_task(task, profile)
    objective = trials.Objective(task, profile, SearchSettings(), space, "unit-failures", {}, Path("none"), tracker)
    return objective, tracker


def _study() -> optuna.Study:
    return optuna.create_study(directions=["maximize", "minimize"])


@pytest.mark.parametrize(
    "error",
    [CandidateRefused("ONNX export failed: x"), MeasurementFailed("the measuring process died"),
     NonFiniteMetric("metric is nan"), DeadlineExceeded("deadline: building"), DeviceError("SSH to pi failed"),
     MemoryError(), torch.OutOfMemoryError("CUDA out of memory")],  # fmt: skip
)
def test_what_a_trial_may_meet_fails_it_and_the_search_goes_on(tiny_task, cpu_profile, monkeypatch, error):
    def refuse(*args: object) -> None:
        raise error

    monkeypatch.setattr(trials, "build", refuse)
    objective, tracker = _objective(tiny_task, cpu_profile)
    study = _study()
    study.optimize(objective, n_trials=2, catch=TRIAL_FAILURES)
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.FAIL]  # the second one ran too
    assert study.trials[0].user_attrs["fail_reason"].startswith(type(error).__name__)
    assert tracker.ended == [("run-0", "FAILED"), ("run-1", "FAILED")]
    assert is_trial_failure(error)


@pytest.mark.parametrize("error", [TypeError("unsupported operand"), AttributeError("no attribute 'conv3'"),
                                   KeyError("layer"), ValueError("bad value"), AssertionError()])  # fmt: skip
def test_anything_else_stops_the_search_and_queues_the_candidate_again(tiny_task, cpu_profile, monkeypatch, error):
    def planted(*args: object) -> None:
        raise error

    monkeypatch.setattr(trials, "build", planted)
    objective, tracker = _objective(tiny_task, cpu_profile)
    study = _study()
    with pytest.raises(TrialBug, match=rf"^trial 0 raised {type(error).__name__}") as stopped:
        study.optimize(objective, n_trials=5, catch=TRIAL_FAILURES)
    assert stopped.value.__cause__ is error  # the traceback the log file gets is the bug's own
    failed, queued = study.trials
    assert failed.state == TrialState.FAIL and failed.user_attrs["fail_reason"].startswith(BUG_REASON)
    assert queued.state == TrialState.WAITING and queued.user_attrs["retry_of"] == 0
    assert tracker.ended == [("run-0", "FAILED")]
    assert not is_trial_failure(error)


@pytest.mark.parametrize(
    ("reported", "kind"),
    [("Fail: [ONNXRuntimeError] : 1 : FAIL : Load model failed", MeasurementFailed),
     ("RuntimeError: Exception from src/inference/src/cpp/core.cpp:100", MeasurementFailed),
     ("ValueError: Cannot set tensor: Dimension mismatch", MeasurementFailed),
     ("TypeError: run() got an unexpected keyword argument 'inputs'", DeviceCodeBug),
     ("AttributeError: 'Session' object has no attribute '_input'", DeviceCodeBug),
     ("KeyError: 'timing'", DeviceCodeBug)],  # fmt: skip
)
def test_what_the_device_reports_is_a_failed_measurement_or_a_bug(reported, kind):
    failure = device_failure("onnxruntime on cpu", reported)
    assert type(failure) is kind and reported in str(failure)
    assert is_trial_failure(failure) == (kind is MeasurementFailed)


# ---- inside the exporter and the quantizers: a refusal, or a bug in code they call back (autocompress/bugs.py) ----


def _caught(call, *args: object, **kwargs: object) -> BaseException:  # noqa: ANN001 - a callable that raises
    """Call a library's function from this frame, as the wrappers do, and return what it raised."""
    try:
        call(*args, **kwargs)
    except Exception as error:  # what the wrappers do: catch, then decide
        return error
    raise AssertionError("nothing raised")


def test_a_programming_error_is_a_bug_only_where_our_code_raised_it():
    import functools
    import textwrap

    from autocompress.bugs import raised_in_our_code

    assert not raised_in_our_code(_caught(textwrap.dedent, None))  # inside the standard library
    assert raised_in_our_code(_caught(functools.reduce, lambda a, b: a.real_part, [1, 2]))  # in a callback of ours
    assert not raised_in_our_code(_caught(functools.reduce, lambda a, b: int("x"), [1, 2]))  # ValueError: no bug type

    def library_wrapping(callback) -> None:  # noqa: ANN001 - as torch.export wraps what forward raised
        try:
            functools.reduce(callback, [1, 2])
        except AttributeError as error:
            raise RuntimeError("Failed to export the model") from error

    assert raised_in_our_code(_caught(library_wrapping, lambda a, b: a.missing))  # found through its cause


class _Typo(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convv(x)


def test_the_exporter_refuses_a_candidate_but_passes_a_bug_in_forward_on(tmp_path):
    from autocompress.compress.export import export_onnx
    from tests.user_task.tiny_task import unexportable_model

    model, example = unexportable_model()  # branches on a tensor's value: the exporter refuses it
    with pytest.raises(CandidateRefused, match="ONNX export failed"):
        export_onnx(model, example, tmp_path / "branch.onnx")
    with pytest.raises(Exception) as raised:  # noqa: PT011 - whatever the exporter wraps it in
        export_onnx(_Typo().eval(), torch.zeros(1, 1, 8, 8), tmp_path / "typo.onnx")
    assert not isinstance(raised.value, CandidateRefused) and "convv" in str(raised.value)
