"""`autocompress report STUDY...`: the morning report as one static HTML page, also logged to each study's
latest search run in MLflow."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

REPORT_NAME = "report.html"


def _say(line: str) -> None:
    typer.echo(line, err=True)  # not rich: a long line must stay one line


def report(
    studies: Annotated[list[str], typer.Argument(help="study names (one per model and device)")],
    out: Annotated[Path, typer.Option(help="the HTML file to write")] = Path(REPORT_NAME),
    storage: Annotated[str | None, typer.Option(help="Optuna storage URL (default: SQLite under the home)")] = None,
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI (default: under the home)")] = None,
    mlflow: Annotated[bool, typer.Option("--mlflow/--no-mlflow", help="also log it to each study's search run")] = True,
) -> None:
    """Write the morning report: per study its Pareto plot, the confirmed best, every trial (state, metric,
    speedup, failure reason) and the sensitivity table."""
    import optuna

    from autocompress.errors import AutocompressError
    from autocompress.search.morning_report import render
    from autocompress.search.study import open_storage

    started = time.monotonic()
    try:
        opened = open_storage(storage)
    except AutocompressError as error:
        _say(f"error: {error}")
        raise typer.Exit(2) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    known = [summary.study_name for summary in optuna.get_all_study_summaries(opened)]
    missing = [name for name in studies if name not in known]
    if missing:
        listed = ", ".join(name for name in known if "::" not in name) or "none"
        _say(f"error: no study {', '.join(missing)} in this storage (studies: {listed}); check the name")
        raise typer.Exit(2)
    loaded = [optuna.load_study(study_name=name, storage=opened) for name in studies]
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(render(loaded))
    except OSError as error:
        _say(f"error: cannot write {out}: {error.strerror}; pick another --out")
        raise typer.Exit(2) from None
    logged = [name for name in studies if mlflow and log_to_search_run(name, out, tracking_uri)]
    where = f"; logged to the latest search run of {', '.join(logged)}" if logged else ""
    _say(f"wrote {out} in {time.monotonic() - started:.1f} s{where}")


def latest_search_run(client, study_name: str) -> str | None:  # noqa: ANN001 (an MlflowClient)
    """The study's most recent parent run of a search (not a trial, not an export or sensitivity run)."""
    experiment = client.get_experiment_by_name(study_name)
    if experiment is None:
        return None
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"], max_results=200)
    for run in runs:
        if "mlflow.parentRunId" not in run.data.tags and (run.info.run_name or "").startswith("search-"):
            return run.info.run_id
    return None


def log_to_search_run(study_name: str, page: Path, tracking_uri: str | None) -> bool:
    from mlflow.tracking import MlflowClient

    from autocompress.home import default_tracking_uri

    client = MlflowClient(tracking_uri or default_tracking_uri())
    run_id = latest_search_run(client, study_name)
    if run_id is None:
        return False
    client.log_artifact(run_id, str(page))
    return True
