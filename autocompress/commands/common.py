"""What every command shares: the consoles, the common options, one-line errors and logging, and the merge of a
config file with flags into a validated ExperimentConfig."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from autocompress.errors import AutocompressError
from autocompress.examples import EXAMPLES

err = Console(stderr=True)
out = Console()

ConfigArg = Annotated[Path | None, typer.Argument(help="experiment YAML (model, data, metric, device, search)")]
EXAMPLES_HELP = f"built-in example instead of a config: {' or '.join(sorted(EXAMPLES))}"
ExampleOpt = Annotated[str | None, typer.Option(help=EXAMPLES_HELP)]
DeviceOpt = Annotated[str | None, typer.Option(help="hardware profile name, alias or .yaml path")]
StudyOpt = Annotated[str | None, typer.Option(help="study name (default: <task>-<device>); same name resumes")]
StorageOpt = Annotated[str | None, typer.Option(help="Optuna storage URL (default: SQLite under the home)")]
ConfirmOpt = Annotated[
    int | None, typer.Option(help="top candidates re-timed together with the baseline before export (default 5)")
]
WindowsOpt = Annotated[int | None, typer.Option(help="fresh timing windows the exported figure comes from (default 3)")]
RegisterOpt = Annotated[bool, typer.Option(help="register the export in MLflow's Model Registry, once per strategy")]
GRANULARITY_HELP = "layer, family (one knob per layer of repeated blocks), stage or global; default: the task's"


def fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)  # plain: one line however narrow the terminal
    return typer.Exit(code)


def setup_logging(verbose: bool, command: str) -> None:
    """autocompress's warnings on the screen (its INFO lines and the libraries' warnings too with --verbose);
    everything in this invocation's log file under the home (autocompress/run_log.py)."""
    from autocompress.run_log import setup

    setup(command, verbose)


def stopped(error: Exception, resumable: bool) -> typer.Exit:
    """A bug (no user mistake, no failure a trial may have): its traceback in the log file, one line here, exit 1."""
    from autocompress.run_log import record_bug
    from autocompress.search.failures import TrialBug

    path = record_bug(error)
    if isinstance(error, TrialBug):
        return fail(
            f"{error}: a bug, not a failed candidate, so the search stopped (traceback in {path}); the "
            "study is kept and the candidate queued again: fix it and run the same command to resume",
            1,
        )
    first = (str(error).strip().splitlines() or [""])[0][:300]
    again = "; the study is kept: fix it and run the same command to resume" if resumable else ""
    return fail(f"stopped by an unexpected {type(error).__name__}: {first} (traceback in {path}){again}", 1)


def experiment_of(config: Path | None, example: str | None, device: str | None, **search: object):
    """Merge a config file (if any) with flags; flags win. Returns the validated ExperimentConfig."""
    from autocompress.config import load_config, validate_config

    if config is not None:
        if not config.is_file():
            raise AutocompressError(f"config file '{config}' does not exist")
        base = load_config(config).model_dump(exclude={"base_dir"})
        base_dir = config.resolve().parent
    else:
        base, base_dir = {"example": example or "digits"}, Path.cwd()
    if example is not None and config is not None:
        base.update(example=example, model=None, data=None)
    if device is not None:
        base["device"] = device
    budget = search.pop("elastic_budget", None)
    base["search"] = base.get("search", {}) | {k: v for k, v in search.items() if v is not None}
    if budget is not None:  # --elastic-budget turns the elastic model on, over the config's settings
        base["search"]["elastic"] = (base["search"].get("elastic") or {}) | {"budget_s": budget}
    if search.get("timeout") is not None and search.get("trials") is None:
        base["search"]["trials"] = None  # --timeout alone is the budget, whatever trial count the config names
    return validate_config(base, base_dir=base_dir, source=str(config or "command line"))


def export_and_say(study, profile, target: Path, load_task, confirmed, metric_name: str) -> Path | None:
    """Export the confirmed winner; "no improvement" is one line and exit 0, not an error."""
    from autocompress.search.export import NoImprovement, export_best

    try:
        exported = export_best(study, profile, target, load_task, confirmed, metric_name)
    except NoImprovement as nothing:
        err.print(str(nothing))
        return None
    err.print(f"exported the best strategy to {exported}")
    return exported


def register_export(tracking_uri: str | None, study_name: str, target: Path) -> None:
    from autocompress.search.registry import register_and_say

    err.print(register_and_say(tracking_uri, study_name, target))


def print_summary(study, confirmed, device: str, metric: str = "metric") -> None:
    from autocompress.search.summary import summary_lines

    for line in summary_lines(study, confirmed, device, metric):
        out.print(line, soft_wrap=True)
