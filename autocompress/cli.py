"""The `autocompress` command: parse, validate, call the library; user errors are one line and exit 2."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from autocompress.apply_command import EXAMPLES_HELP, apply
from autocompress.errors import AutocompressError
from autocompress.report_command import report
from autocompress.signals import interrupts_as_keyboard

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Search, per device, how to make a trained PyTorch model smaller and faster while keeping its accuracy.",
)
app.command()(report)
app.command()(apply)
err = Console(stderr=True)
out = Console()

ConfigArg = Annotated[Path | None, typer.Argument(help="experiment YAML (model, data, metric, device, search)")]
ExampleOpt = Annotated[str | None, typer.Option(help=EXAMPLES_HELP)]
DeviceOpt = Annotated[str | None, typer.Option(help="hardware profile name, alias or .yaml path")]
StudyOpt = Annotated[str | None, typer.Option(help="study name (default: <task>-<device>); same name resumes")]
StorageOpt = Annotated[str | None, typer.Option(help="Optuna storage URL (default: SQLite under the home)")]


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)  # plain: one line however narrow the terminal
    return typer.Exit(code)


def _setup_logging(verbose: bool, command: str) -> None:
    """autocompress's warnings on the screen (its INFO lines and the libraries' warnings too with --verbose);
    everything in this invocation's log file under the home (autocompress/run_log.py)."""
    from autocompress.run_log import setup

    setup(command, verbose)


def _stopped(error: Exception, resumable: bool) -> typer.Exit:
    """A bug (no user mistake, no failure a trial may have): its traceback in the log file, one line here, exit 1."""
    from autocompress.run_log import record_bug
    from autocompress.search.failures import TrialBug

    path = record_bug(error)
    if isinstance(error, TrialBug):
        return _fail(f"{error}: a bug, not a failed candidate, so the search stopped (traceback in {path}); the "
                     "study is kept and the candidate queued again: fix it and run the same command to resume", 1)
    first = (str(error).strip().splitlines() or [""])[0][:300]
    again = "; the study is kept: fix it and run the same command to resume" if resumable else ""
    return _fail(f"stopped by an unexpected {type(error).__name__}: {first} (traceback in {path}){again}", 1)


def _experiment(config: Path | None, example: str | None, device: str | None, **search: object):
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
    base["search"] = base.get("search", {}) | {k: v for k, v in search.items() if v is not None}
    if search.get("timeout") is not None and search.get("trials") is None:
        base["search"]["trials"] = None  # --timeout alone is the budget, whatever trial count the config names
    return validate_config(base, base_dir=base_dir, source=str(config or "command line"))


ConfirmOpt = Annotated[
    int | None, typer.Option(help="top candidates re-timed together with the baseline before export (default 5)")
]
WindowsOpt = Annotated[
    int | None, typer.Option(help="fresh timing windows the exported figure comes from (default 3)")
]
RegisterOpt = Annotated[bool, typer.Option(help="register the export in MLflow's Model Registry, once per strategy")]
GRANULARITY_HELP = "layer, family (one knob per layer of repeated blocks), stage or global; default: the task's"


@app.command()
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
    out: Annotated[Path | None, typer.Option(help="export the best strategy per device here when done")] = None,
    register: RegisterOpt = True,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Search compression strategies for a model on a device; resumes a study of the same name."""
    _setup_logging(verbose, "search")
    try:
        with interrupts_as_keyboard():  # from the first second: training the example or the baseline included
            _search(config, example, device, out, dict(trials=trials, timeout=timeout, study=study, storage=storage,
                    deadline_margin=deadline_margin,
                    tracking_uri=tracking_uri, max_drop=max_drop, drop_mode=drop_mode, max_size_mb=max_size_mb,
                    size_objective=size_objective, granularity=granularity, sampler=sampler, seed=seed,
                    confirm=confirm, confirm_windows=confirm_windows, sensitivity=sensitivity,
                    warm_starts=warm_starts, polish_steps=polish_steps), register)  # fmt: skip
    except KeyboardInterrupt:
        typer.echo("interrupted: nothing was left half-done; run the same command again to go on", err=True)
        raise typer.Exit(130) from None
    except AutocompressError as error:
        raise _fail(str(error)) from None
    except (typer.Exit, typer.Abort):
        raise
    except Exception as error:  # a bug: one line naming the log file with its traceback
        raise _stopped(error, resumable=True) from None


def _search(
    config: Path | None, example: str | None, device: str | None, out: Path | None, flags: dict, register: bool = True
) -> None:
    from autocompress.examples import check_example
    from autocompress.hardware.availability import usable_profile

    experiment = _experiment(config, example, device, **flags)
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
        outcome = run_search(task, profile, experiment.search, name, console=err)
    except SearchInterrupted as interrupted:
        typer.echo(str(interrupted), err=True)
        raise typer.Exit(130) from None
    failures = outcome.failures()
    if outcome.all_failed():
        reasons = "; ".join(f"{count}x {reason[:160]}" for reason, count in Counter(failures).most_common(3))
        raise _fail(f"every trial of this search failed ({len(failures)}): {reasons}", code=1)
    _print_summary(outcome.study, outcome.confirmed, profile.name, task.metric_name)
    if outcome.confirmed:
        err.print(f"confirmation took {outcome.confirm_s:.0f} s of this search's {outcome.wall_s:.0f} s")
    err.print(ui_link(experiment.search.tracking_uri or default_tracking_uri(), name) or "", soft_wrap=True)
    if out is not None:
        target = _export(outcome.study, profile, out, lambda: task, outcome.confirmed, task.metric_name)
        if target is not None and register:
            _register(experiment.search.tracking_uri, name, target)


def _export(study, profile, out: Path, load_task, confirmed, metric_name: str) -> Path | None:
    """Export the confirmed winner; "no improvement" is one line and exit 0, not an error."""
    from autocompress.search.export import NoImprovement, export_best

    try:
        target = export_best(study, profile, out, load_task, confirmed, metric_name)
    except NoImprovement as nothing:
        err.print(str(nothing))
        return None
    err.print(f"exported the best strategy to {target}")
    return target


def _register(tracking_uri: str | None, study_name: str, target: Path) -> None:
    from autocompress.search.registry import register_and_say

    err.print(register_and_say(tracking_uri, study_name, target))


def _print_summary(study, confirmed, device: str, metric: str = "metric") -> None:
    from autocompress.search.summary import summary_lines

    for line in summary_lines(study, confirmed, device, metric):
        out.print(line, soft_wrap=True)


@app.command()
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
    _setup_logging(False, "export")
    try:
        import optuna

        from autocompress.hardware.availability import usable_profile
        from autocompress.run_log import protect_screen
        from autocompress.search.confirm import confirm as confirm_top
        from autocompress.search.study import open_storage
        from autocompress.tasks import load_task

        experiment = _experiment(config, example, device, study=study, storage=storage, confirm=confirm,
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
        _print_summary(stored, confirmed, profile.name, task.metric_name)
        target = _export(stored, profile, out, lambda: task, confirmed, task.metric_name)
        if target is not None:
            if register:
                _register(experiment.search.tracking_uri, name, target)
            typer.echo((target / "report.json").read_text())
    except AutocompressError as error:
        raise _fail(str(error)) from None
    except (typer.Exit, typer.Abort):
        raise
    except Exception as error:  # a bug: one line naming the log file with its traceback
        raise _stopped(error, resumable=False) from None


@app.command(name="sensitivity")
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
    _setup_logging(False, "sensitivity")
    try:
        with interrupts_as_keyboard():
            _sensitivity(config, example, device, out, dict(study=study, storage=storage, granularity=granularity,
                         max_drop=max_drop))  # fmt: skip
    except KeyboardInterrupt:
        typer.echo("interrupted: nothing was stored; run the same command again", err=True)
        raise typer.Exit(130) from None
    except AutocompressError as error:
        raise _fail(str(error)) from None
    except (typer.Exit, typer.Abort):
        raise
    except Exception as error:  # a bug: one line naming the log file with its traceback
        raise _stopped(error, resumable=True) from None


def _sensitivity(config: Path | None, example: str | None, device: str | None, out: Path, flags: dict) -> None:
    from datetime import datetime

    from autocompress.hardware.availability import usable_profile
    from autocompress.home import default_tracking_uri
    from autocompress.run_log import protect_screen
    from autocompress.search.driver import measure_baseline
    from autocompress.search.sensitivity_report import write
    from autocompress.search.stages import allowed_drop, sensitivity_table
    from autocompress.search.study import open_storage, open_study
    from autocompress.search.tracking import MlflowTracker
    from autocompress.spaces.space import SearchSpace
    from autocompress.tasks import load_task

    experiment = _experiment(config, example, device, **flags)
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


@app.command()
def devices(
    probe_remote: Annotated[bool, typer.Option(help="connect to remote devices to check them")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON list, for scripts")] = False,
) -> None:
    """List the hardware profiles: runtime, precisions, host, and whether each is usable here (and if not, why)."""
    try:
        from autocompress.hardware import all_profiles
        from autocompress.hardware.availability import availability

        rows = []
        for profile in all_profiles().values():
            checked = not (profile.is_remote and not probe_remote)
            problem = availability(profile) if checked else None
            rows.append(
                {
                    "name": profile.name,
                    "aliases": profile.aliases,
                    "runtime": profile.record.name,
                    "precisions": profile.precisions,
                    "host": profile.host,
                    "usable": ("yes" if problem is None else "no") if checked else "unchecked",
                    "why_not": problem,
                    "verified_on_hardware": profile.verified_on_hardware,
                }
            )
        if as_json:
            typer.echo(json.dumps(rows, indent=2))
            return
        _devices_table(rows)
    except AutocompressError as error:
        raise _fail(str(error)) from None


def _devices_table(rows: list[dict]) -> None:
    """Names and hosts are never cut: they are what a user types next (in a pipe or a log file too)."""
    table = Table("name", "runtime", "precisions", "host", "usable here", "notes", show_lines=False)
    for column, key in ((table.columns[0], "name"), (table.columns[3], "host")):
        column.no_wrap = True
        column.min_width = max(len(row[key]) for row in rows)
    for row in rows:
        precisions = sorted({p for choices in row["precisions"].values() for p in choices})
        notes = [row["why_not"] or ""]
        if not row["verified_on_hardware"]:
            notes.append("not verified on hardware")
        if row["aliases"]:
            notes.append(f"aliases: {', '.join(row['aliases'])}")
        table.add_row(row["name"], row["runtime"], ", ".join(precisions), row["host"], row["usable"],
                      "; ".join(note for note in notes if note))  # fmt: skip
    Console(width=None if sys.stdout.isatty() else 200).print(table)
