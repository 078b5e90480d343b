"""`autocompress search`: run or resume a study, confirm its best, optionally export and register it."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated

import typer

from autocompress.commands.common import (
    GRANULARITY_HELP,
    ConfigArg,
    ConfirmOpt,
    DeviceOpt,
    ExampleOpt,
    RegisterOpt,
    StorageOpt,
    StudyOpt,
    WindowsOpt,
    err,
    experiment_of,
    fail,
    print_summary,
    setup_logging,
    stopped,
)
from autocompress.errors import AutocompressError
from autocompress.signals import interrupts_as_keyboard


def search(
    config: ConfigArg = None,
    example: ExampleOpt = None,
    device: DeviceOpt = None,
    trials: Annotated[int | None, typer.Option(help="trials to add in this invocation")] = None,
    timeout: Annotated[str | None, typer.Option(help="stop after this long: seconds, 90m, 8h")] = None,
    deadline_margin: Annotated[str | None, typer.Option(help="stop a trial this long past --timeout (10m)")] = None,
    study: StudyOpt = None,
    storage: StorageOpt = None,
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI (default: SQLite under home)")] = None,
    max_drop: Annotated[float | None, typer.Option(help="allowed metric drop, 0.01 = 1 accuracy point")] = None,
    drop_mode: Annotated[str | None, typer.Option(help="absolute or relative")] = None,
    max_size_mb: Annotated[float | None, typer.Option(help="reject artifacts larger than this")] = None,
    size_objective: Annotated[bool | None, typer.Option(help="model size as a third objective")] = None,
    granularity: Annotated[str | None, typer.Option(help=GRANULARITY_HELP)] = None,
    sampler: Annotated[str | None, typer.Option(help="tpe (default) or random (plain, for comparisons)")] = None,
    seed: Annotated[int | None, typer.Option(help="study seed")] = None,
    confirm: ConfirmOpt = None,
    confirm_windows: WindowsOpt = None,
    sensitivity: Annotated[
        bool | None, typer.Option(help="measure each choice alone first and seed the search (default on)")
    ] = None,
    warm_starts: Annotated[
        bool | None, typer.Option(help="start from hand-made and one-click recipe candidates (default on)")
    ] = None,
    polish_steps: Annotated[
        int | None, typer.Option(help="after the budget, distil the most promising pruned candidate this long")
    ] = None,
    elastic_budget: Annotated[str | None, typer.Option(
        help="train an elastic model this long (2h, 90m) once per study; candidates are extracted from it")] = None,
    out: Annotated[Path | None, typer.Option(help="export the best strategy per device here when done")] = None,
    register: RegisterOpt = True,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Search compression strategies for a model on a device; resumes a study of the same name."""
    setup_logging(verbose, "search")
    try:
        with interrupts_as_keyboard():  # from the first second: training the example or the baseline included
            _search(config, example, device, out, dict(trials=trials, timeout=timeout, study=study, storage=storage,
                    deadline_margin=deadline_margin,
                    tracking_uri=tracking_uri, max_drop=max_drop, drop_mode=drop_mode, max_size_mb=max_size_mb,
                    size_objective=size_objective, granularity=granularity, sampler=sampler, seed=seed,
                    confirm=confirm, confirm_windows=confirm_windows, sensitivity=sensitivity,
                    warm_starts=warm_starts, polish_steps=polish_steps,
                    elastic_budget=elastic_budget), register)  # fmt: skip
    except KeyboardInterrupt:
        typer.echo("interrupted: nothing was left half-done; run the same command again to go on", err=True)
        raise typer.Exit(130) from None
    except AutocompressError as error:
        raise fail(str(error)) from None
    except (typer.Exit, typer.Abort):
        raise
    except Exception as error:  # a bug: one line naming the log file with its traceback
        raise stopped(error, resumable=True) from None


def _search(
    config: Path | None, example: str | None, device: str | None, out: Path | None, flags: dict, register: bool = True
) -> None:
    from autocompress.examples import check_example
    from autocompress.hardware.availability import usable_profile

    experiment = experiment_of(config, example, device, **flags)
    if experiment.example is not None:
        check_example(experiment.example)  # mistakes in names are refused before the heavy imports below
    profile = usable_profile(experiment.device)

    from autocompress.compress.pipeline import check_runtime
    from autocompress.home import default_tracking_uri
    from autocompress.run_log import protect_screen
    from autocompress.search.driver import SearchInterrupted, run_search
    from autocompress.search.study import open_storage
    from autocompress.search.tracking import check_tracking_uri, ui_link
    from autocompress.tasks import load_task

    check_tracking_uri(experiment.search.tracking_uri)  # not a URL, or a server that does not answer: one line
    open_storage(experiment.search.storage)  # a wrong URL is reported before any training
    task = load_task(experiment)
    check_runtime(task, profile)
    name = experiment.search.study or f"{task.name}-{profile.name}"
    protect_screen(profile.record.build_packages)  # the libraries' output to the log file from here on
    try:
        outcome = run_search(task, profile, experiment.search, name, console=err, out=out, register=register)
    except SearchInterrupted as interrupted:
        typer.echo(str(interrupted), err=True)
        raise typer.Exit(130) from None
    failures = outcome.failures()
    if outcome.all_failed():
        reasons = "; ".join(f"{count}x {reason[:160]}" for reason, count in Counter(failures).most_common(3))
        raise fail(f"every trial of this search failed ({len(failures)}): {reasons}", code=1)
    print_summary(outcome.study, outcome.confirmed, profile.name, task.metric_name)
    if outcome.confirmed:
        err.print(f"confirmation took {outcome.confirm_s:.0f} s of this search's {outcome.wall_s:.0f} s")
    err.print(ui_link(experiment.search.tracking_uri or default_tracking_uri(), name) or "", soft_wrap=True)
    if outcome.export_note is not None:  # the export stage ran (search/plan.py): what it did
        err.print(outcome.export_note)
    elif outcome.exported is not None:
        err.print(f"exported the best strategy to {outcome.exported}")
    if outcome.registered is not None:
        err.print(outcome.registered)
