"""The morning report: written from a real study, logged to its MLflow search run, rendered by a real browser."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers import artifact_names, load_study, mlflow_runs, run_cli, user_config
from tests.services import chromium

pytestmark = pytest.mark.e2e
STUDY = "tiny-report"
FRONT_GREEN = (0x2C, 0xA0, 0x2C)  # matplotlib's tab:green, the front's line in the plot


def _screenshot(page: Path, png: Path) -> None:
    subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--screenshot={png}",
         "--window-size=1300,1600", page.as_uri()],
        capture_output=True, timeout=120, check=True,
    )  # fmt: skip


def _dom(page: Path) -> str:
    return subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip


def test_the_report_of_a_search_renders_its_plot_and_every_trial(tmp_path: Path) -> None:
    searched = run_cli("search", "--no-sensitivity", str(user_config()), "--study", STUDY, "--trials", "4")
    assert searched.returncode == 0, searched.stderr[-2000:]
    page = tmp_path / "report.html"
    written = run_cli("report", STUDY, "--out", str(page))
    assert written.returncode == 0, written.stderr[-2000:]
    assert "wrote" in written.stderr and "logged to the latest search run" in written.stderr

    study = load_study(STUDY)
    dom = _dom(page)
    assert "<svg" in dom.split('class="pareto"', 1)[1].split("</figure>", 1)[0]  # the plot is in the page
    table = dom.split('class="trials"', 1)[1].split("</table>", 1)[0]
    assert table.count("<tr") == 1 + len(study.trials)  # a header and one row per trial
    for trial in study.trials:
        assert f"<td>{trial.number}</td>" in table
    png = tmp_path / "report.png"
    _screenshot(page, png)
    print(f"screenshot: {png}")
    pixels = np.asarray(Image.open(png).convert("RGB")).reshape(-1, 3)
    green = np.all(np.abs(pixels.astype(int) - FRONT_GREEN) <= 8, axis=1).sum()
    assert green > 50, "the Pareto front's line is not drawn in the rendered page"

    parents, _ = mlflow_runs(STUDY)
    (search_run,) = [run for run in parents if (run.info.run_name or "").startswith("search-")]
    assert "report.html" in artifact_names(search_run.info.run_id)  # logged by the search, and again by `report`


def test_report_of_an_unknown_study_is_one_line(tmp_path: Path) -> None:
    result = run_cli("report", "no-such-study", "--out", str(tmp_path / "r.html"))
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "no study no-such-study" in lines[0], result.stderr
