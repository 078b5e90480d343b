"""A log a person can follow off a terminal (autocompress/run_log.py, search/trial_lines.py): autocompress's
warnings on the screen, the libraries' in the invocation's log file (on the screen with --verbose), what C/C++
libraries print to file descriptor 2 in the log file too, one line per finished trial, and `apply --help` naming
every example. The search itself, with stdout a pipe, is in tests/test_e2e_user_task.py."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import optuna
import pytest
from typer.testing import CliRunner

from autocompress import run_log


@pytest.fixture
def restored_logging():
    """setup() reconfigures the process's logging and warnings: put them back for the other tests."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    own = logging.getLogger("autocompress").level
    with warnings.catch_warnings():
        yield
    logging.captureWarnings(False)
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("autocompress").setLevel(own)


def _speak() -> None:
    logging.getLogger("autocompress.search.driver").warning("own warning")
    logging.getLogger("autocompress.search.driver").info("own info")
    logging.getLogger("some_library.module").warning("library warning")
    logging.getLogger("some_library.store").info("library info")
    warnings.warn("a deprecated call", FutureWarning, stacklevel=1)


def test_the_screen_gets_autocompress_warnings_and_the_file_the_rest(restored_logging, capsys):
    path = run_log.setup("search", verbose=False)
    _speak()
    screen = capsys.readouterr().err
    assert screen.strip().splitlines() == ["WARNING autocompress.search.driver: own warning"]
    written = path.read_text()
    assert "own warning" in written and "own info" in written and "library warning" in written
    assert "FutureWarning: a deprecated call" in written and "library info" not in written  # libraries from WARNING
    assert path.parent.name == "logs" and path.name.startswith("search-")


def test_a_library_warning_repeated_between_filter_changes_is_logged_once(restored_logging):
    """Libraries enter `warnings.catch_warnings()` between calls (mlflow, once per trial); each exit resets
    Python's record of which warnings were shown."""
    path = run_log.setup("search", verbose=False)
    for _ in range(3):
        with warnings.catch_warnings():
            pass
        warnings.warn("select_dtypes will change", FutureWarning, stacklevel=1)
    assert path.read_text().count("FutureWarning: select_dtypes will change") == 1


def test_verbose_shows_the_libraries_warnings_and_autocompress_progress(restored_logging, capsys):
    run_log.setup("search", verbose=True)
    _speak()
    screen = capsys.readouterr().err
    assert "own info" in screen and "library warning" in screen and "a deprecated call" in screen
    assert "library info" not in screen


def test_a_library_that_prints_with_its_own_handler_goes_through_the_log(restored_logging, capsys):
    """NNCF, for one, logs to stdout with a handler of its own."""
    run_log.setup("search", verbose=False)
    chatty = logging.getLogger("some_library")
    chatty.addHandler(logging.StreamHandler(sys.stdout))
    chatty.propagate = False
    try:
        assert "some_library" in run_log.library_loggers_to_root()
        chatty.warning("statistics collection 100%")
        assert "statistics collection" not in capsys.readouterr().out
        assert "statistics collection" in run_log.log_path().read_text()
    finally:
        chatty.handlers.clear()


def test_what_native_code_writes_to_stderr_goes_to_the_log_file(tmp_path):
    """TensorFlow's absl and LiteRT write to file descriptor 2 from C++: in a real process it is diverted."""
    script = textwrap.dedent("""
        import logging, os, sys
        from autocompress import run_log
        run_log.setup("search", verbose=False)
        run_log.protect_screen(["json"])
        os.write(2, b"I0000 flatbuffer_export.cc:4410] native noise\\n")
        logging.getLogger("autocompress.x").warning("still on the screen")
        print(run_log.log_path())
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={"AUTOCOMPRESS_HOME": str(tmp_path), "PATH": "/usr/bin:/bin",
                               "PYTHONPATH": str(Path(__file__).parent.parent)})  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "WARNING autocompress.x: still on the screen"
    assert "native noise" in Path(done.stdout.strip()).read_text()


def test_one_line_per_finished_trial(capsys):
    from autocompress.compress.prune import PruneSettings
    from autocompress.search.trial_lines import TrialLines
    from autocompress.spaces.strategy import Strategy

    study = optuna.create_study(directions=["maximize", "minimize"])
    study.set_user_attr("baseline", {"metric": 0.99})
    strategy = Strategy(prune=PruneSettings(ratios={"conv": 0.25}))
    metrics = {"metric": 0.984, "metric_drop": 0.006 / 0.99, "speedup": 3.123, "speedup_ci_low": 3.05,
               "speedup_ci_high": 3.2, "feasible": 1.0}  # fmt: skip
    study.add_trial(optuna.trial.create_trial(values=[0.984, 0.32], user_attrs={
        "strategy": strategy.model_dump(), "metrics": metrics, "seeded": "sensitivity x1"}))  # fmt: skip
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL, user_attrs={
        "strategy": Strategy().model_dump(), "fail_reason": "CandidateRefused: ONNX export failed"}))  # fmt: skip
    lines = TrialLines("accuracy", stream=sys.stdout)
    for trial in study.trials:
        lines(study, trial)
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "trial 0 COMPLETE  prune 0.25  accuracy 0.9840 (drop +0.0060)  speedup 3.12x [3.05, 3.20]  feasible  "
        "(seed sensitivity x1)  0.0 s",
        "trial 1 FAIL  no compression  failed: CandidateRefused: ONNX export failed  0.0 s",
    ]


def test_apply_help_lists_every_example():
    from autocompress.cli import app
    from autocompress.examples import EXAMPLES

    shown = CliRunner().invoke(app, ["apply", "--help"], terminal_width=200).output
    for name in EXAMPLES:
        assert f"autocompress apply best/cpu/strategy.yaml --example {name}" in shown, shown
    assert "my-experiment.yaml" in shown and f"config: {' or '.join(sorted(EXAMPLES))}" in shown
