"""The morning report's page from a study, and its command's errors."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from autocompress.search.morning_report import render
from autocompress.search.results import BASELINE_ATTR, METRICS_ATTR
from tests.helpers import invoke_cli


def _trial(study: optuna.Study, speedup: float, metric: float, feasible: bool) -> None:
    trial = study.ask()
    metrics = {"metric": metric, "speedup": speedup, "latency_ms": 1 / speedup, "size_bytes": 1e5,
               "feasible": float(feasible)}  # fmt: skip
    trial.set_user_attr(METRICS_ATTR, metrics)
    study.tell(trial, [metric, 1 / speedup])


def test_the_page_holds_the_plot_every_trial_and_each_failure_reason() -> None:
    study = optuna.create_study(study_name="made-up", directions=["maximize", "minimize"])
    study.set_user_attr(BASELINE_ATTR, {"metric": 0.95, "latency_ms": 1.0})
    _trial(study, 2.0, 0.94, True)
    _trial(study, 3.0, 0.80, False)
    failed = study.ask()
    failed.set_user_attr("fail_reason", "export failed: <Resize> not supported")
    study.tell(failed, state=optuna.trial.TrialState.FAIL)
    page = render([study])
    table = page.split("class=trials", 1)[1].split("</table>", 1)[0]
    assert table.count("<tr") == 1 + 3
    assert "export failed: &lt;Resize&gt; not supported" in table  # escaped, not markup
    assert "<svg" in page.split("class=pareto", 1)[1].split("</figure>", 1)[0]
    assert "Not confirmed yet" in page


@pytest.mark.e2e
def test_report_of_an_unknown_study_is_one_line(tmp_path: Path) -> None:
    result = invoke_cli("report", "no-such-study", "--out", str(tmp_path / "r.html"))
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "no study no-such-study" in lines[0], result.stderr
