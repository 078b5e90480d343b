"""`autocompress export`: confirm a stored study's best candidates again and export the winner."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from autocompress.commands.common import (
    ConfigArg,
    ConfirmOpt,
    DeviceOpt,
    ExampleOpt,
    RegisterOpt,
    StorageOpt,
    StudyOpt,
    WindowsOpt,
    experiment_of,
    export_and_say,
    fail,
    print_summary,
    register_export,
    setup_logging,
    stopped,
)
from autocompress.errors import AutocompressError


def export(
    config: ConfigArg = None,
    example: ExampleOpt = None,
    device: DeviceOpt = None,
    study: StudyOpt = None,
    storage: StorageOpt = None,
    confirm: ConfirmOpt = None,
    confirm_windows: WindowsOpt = None,
    out: Annotated[Path, typer.Option(help="folder to write <device>/strategy.yaml, artifact, reports")] = Path("best"),
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI (default: the home's store)")] = None,
    register: RegisterOpt = True,
) -> None:
    """Export the confirmed fastest strategy of a stored study: strategy.yaml, artifact, report.json, pareto.json."""
    setup_logging(False, "export")
    try:
        import optuna

        from autocompress.hardware.availability import usable_profile
        from autocompress.run_log import protect_screen
        from autocompress.search.confirm import confirm as confirm_top
        from autocompress.search.study import open_storage
        from autocompress.tasks import load_task

        experiment = experiment_of(config, example, device, study=study, storage=storage, confirm=confirm,
                                 confirm_windows=confirm_windows, tracking_uri=tracking_uri)  # fmt: skip
        profile = usable_profile(experiment.device)
        name = experiment.search.study or f"{experiment.task_name}-{profile.name}"
        try:
            stored = optuna.load_study(study_name=name, storage=open_storage(experiment.search.storage))
        except KeyError:
            raise AutocompressError(
                f"no study named '{name}' in the storage: run `autocompress search` first"
            ) from None
        task = load_task(experiment)
        protect_screen(profile.record.build_packages)
        confirmed = confirm_top(stored, task, profile, max(1, experiment.search.confirm),
                                attempts=experiment.search.confirm_windows, settings=experiment.search)  # fmt: skip
        print_summary(stored, confirmed, profile.name, task.metric_name)
        target = export_and_say(stored, profile, out, lambda: task, confirmed, task.metric_name)
        if target is not None:
            if register:
                register_export(experiment.search.tracking_uri, name, target)
            typer.echo((target / "report.json").read_text())
    except AutocompressError as error:
        raise fail(str(error)) from None
    except (typer.Exit, typer.Abort):
        raise
    except Exception as error:  # a bug: one line naming the log file with its traceback
        raise stopped(error, resumable=False) from None
