"""`autocompress sensitivity`: the sensitivity table alone (Markdown, CSV, JSON, PNG), kept in the study."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from autocompress.commands.common import (
    GRANULARITY_HELP,
    ConfigArg,
    DeviceOpt,
    ExampleOpt,
    StorageOpt,
    StudyOpt,
    err,
    experiment_of,
    fail,
    setup_logging,
    stopped,
)
from autocompress.errors import AutocompressError
from autocompress.signals import interrupts_as_keyboard


def sensitivity_command(
    config: ConfigArg = None,
    example: ExampleOpt = None,
    device: DeviceOpt = None,
    study: StudyOpt = None,
    storage: StorageOpt = None,
    granularity: Annotated[str | None, typer.Option(help=GRANULARITY_HELP)] = None,
    max_drop: Annotated[float | None, typer.Option(help="allowed metric drop, for the plot's line")] = None,
    out: Annotated[Path, typer.Option(help="folder for sensitivity.{md,csv,json,png}")] = Path("sensitivity"),
) -> None:
    """Measure what each single choice costs (metric) and saves (paired speedup) on the device; the table is kept
    in the study, so a search of the same study starts from it."""
    setup_logging(False, "sensitivity")
    try:
        with interrupts_as_keyboard():
            _sensitivity(config, example, device, out, dict(study=study, storage=storage, granularity=granularity,
                         max_drop=max_drop))  # fmt: skip
    except KeyboardInterrupt:
        typer.echo("interrupted: nothing was stored; run the same command again", err=True)
        raise typer.Exit(130) from None
    except AutocompressError as error:
        raise fail(str(error)) from None
    except (typer.Exit, typer.Abort):
        raise
    except Exception as error:  # a bug: one line naming the log file with its traceback
        raise stopped(error, resumable=True) from None


def _sensitivity(config: Path | None, example: str | None, device: str | None, out: Path, flags: dict) -> None:
    from datetime import datetime

    from autocompress.hardware.availability import usable_profile
    from autocompress.home import default_tracking_uri
    from autocompress.run_log import protect_screen
    from autocompress.search.baseline import measure_baseline
    from autocompress.search.candidates import sensitivity_table
    from autocompress.search.results import allowed_drop
    from autocompress.search.sensitivity_report import write
    from autocompress.search.study import open_storage, open_study
    from autocompress.search.tracking import MlflowTracker
    from autocompress.spaces.space import SearchSpace
    from autocompress.tasks import load_task

    experiment = experiment_of(config, example, device, **flags)
    profile = usable_profile(experiment.device)
    storage = open_storage(experiment.search.storage)
    task = load_task(experiment)
    settings = experiment.search
    name = settings.study or f"{task.name}-{profile.name}"
    space = SearchSpace.for_task(task, profile, settings.granularity)
    stored = open_study(name, storage, settings, space)
    protect_screen(profile.record.build_packages)
    tracker = MlflowTracker(settings.tracking_uri or default_tracking_uri(), name)
    tracker.start_parent(f"sensitivity-{datetime.now():%Y%m%d-%H%M%S}", {"device": profile.name}, {"study": name})
    baseline, baseline_path = measure_baseline(task, profile, stored)
    table = sensitivity_table(stored, task, profile, space, baseline, baseline_path, settings, tracker)
    tracker.end_parent("FINISHED")
    bound = allowed_drop(settings, baseline["metric"])
    paths = write(table, out, task.metric_name, bound, f"{task.name} on {profile.name}")
    err.print(f"{len(table.rows)} choices measured in {table.seconds:.0f} s; wrote {', '.join(map(str, paths))}")
