"""What a user reads in the morning, in a real browser (Debian's chromium driven by Playwright): a search logged to
a real `mlflow server` opens on its runs (not on the GenAI overview), lists every trial with its metric and
speedup once the search run is expanded, shows the registered best model; and `autocompress report` writes a page
whose plot and trial table render, logged to the server too; optuna-dashboard on the same study storage shows the
study and its trials. Screenshots land in the test's temporary folder."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import Page, sync_playwright

from autocompress.home import default_storage
from autocompress.search.tracking import ui_link
from tests.helpers import artifact_names, invoke_cli, load_study, mlflow_runs
from tests.services import chromium, optuna_dashboard

pytestmark = pytest.mark.e2e
RUN_NAME_CELL = "[role=gridcell][col-id='attributes.`Run Name`']"


def _add_column(page: Page, name: str) -> None:
    page.get_by_role("button", name="Columns").click()
    page.get_by_text(name, exact=True).first.click()
    page.keyboard.press("Escape")


def _get(server: str, path: str) -> dict:
    with urllib.request.urlopen(f"{server}{path}", timeout=30) as answer:
        return json.load(answer)


def test_the_mlflow_ui_lists_the_trials_and_the_registered_model(tmp_path: Path, tiny_search_on_a_server) -> None:
    """The session's tiny search on an MLflow server (tests/conftest.py), in a browser."""
    tracking = tiny_search_on_a_server.tracking
    study_name = tiny_search_on_a_server.study
    assert "registered as MLflow model" in tiny_search_on_a_server.stderr, tiny_search_on_a_server.stderr[-1500:]
    report = tmp_path / "report.html"
    written = invoke_cli("report", study_name, "--out", str(report), "--tracking-uri", tracking)
    assert written.returncode == 0 and "logged to the latest search run" in written.stderr, written.stderr
    study = load_study(study_name)
    metric = study.user_attrs["metric_name"]
    link = ui_link(tracking, study_name)
    assert link is not None
    url = link.split(": ", 1)[1]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1800, "height": 1100})
        page.goto(url)
        page.get_by_role("heading", name="Runs").wait_for(timeout=90_000)
        assert page.get_by_text("Detect issues in your traces").count() == 0  # not the GenAI overview
        page.locator(RUN_NAME_CELL, has_text="search-").first.wait_for(timeout=60_000)
        page.locator("button[data-component-id*='runnamecellrenderer']").first.click()  # expand the search run
        page.locator(RUN_NAME_CELL, has_text="t0 ").first.wait_for(timeout=30_000)
        for column in (metric, "speedup"):
            _add_column(page, column)
        page.get_by_role("columnheader", name="speedup").first.wait_for(timeout=30_000)
        page.screenshot(path=str(tmp_path / "runs.png"))
        names = [text.split("\n")[-1] for text in page.locator(RUN_NAME_CELL).all_inner_texts()]
        headers = sorted({text.strip() for text in page.locator("[role=columnheader]").all_inner_texts()} - {""})
        print(f"columns: {headers}; rows: {names}; screenshot {tmp_path / 'runs.png'}")
        trials = [name for name in names if name.startswith("t") and name[1:].split(" ")[0].isdigit()]
        assert len(trials) == len(study.trials)
        assert {metric, "speedup"} <= set(headers)
        speedups = page.locator("[role=gridcell][col-id='metrics.`speedup`']").all_inner_texts()
        assert sum(1 for text in speedups if text.strip() not in ("", "-")) == len(study.trials)

        model = f"{study_name}-cpu"
        page.goto(f"{tracking}/#/models/{model}")
        page.get_by_text("Version 1").first.wait_for(timeout=60_000)
        assert page.get_by_text("confirmed_speedup", exact=False).count() >= 1  # the version's tags are shown
        page.screenshot(path=str(tmp_path / "model.png"))

        page.goto(report.as_uri())
        plot = page.locator("figure.pareto svg")
        assert plot.is_visible() and plot.bounding_box()["width"] > 300
        assert page.locator("figure.pareto svg path").count() > 10  # axes, points, the front's line
        rows = page.locator("table.trials tr")
        assert rows.count() == 1 + len(study.trials) and rows.nth(1).is_visible()
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)

        with optuna_dashboard(default_storage(), tmp_path / "dashboard.log") as dashboard:
            listed = {item["study_name"]: item for item in _get(dashboard, "/api/studies")["study_summaries"]}
            assert study_name in listed and len(listed[study_name]["directions"]) == 2  # accuracy and relative latency
            study_id = listed[study_name]["study_id"]
            detail = _get(dashboard, f"/api/studies/{study_id}?after=0")
            assert len(detail["trials"]) == len(study.trials) and detail["best_trials"]  # the Pareto front
            assert detail["objective_names"] == [metric, "relative_latency"]  # axes named, not "0" and "1"
            page.goto(f"{dashboard}/dashboard/studies/{study_id}")
            page.get_by_text(study_name).first.wait_for(timeout=60_000)
            page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
        browser.close()
    parents, _ = mlflow_runs(study_name, tracking)
    (search_run,) = [run for run in parents if (run.info.run_name or "").startswith("search-")]
    assert "report.html" in artifact_names(search_run.info.run_id, tracking)
