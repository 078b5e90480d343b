"""`autocompress apply STRATEGY [CONFIG]`: rebuild the artifact a strategy describes, with no study, score it on
both splits and time it against both baselines; say where it differs from the report it was exported with."""

from __future__ import annotations

import inspect
import json
import logging
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from autocompress.commands.common import EXAMPLES_HELP, experiment_of, fail, setup_logging, stopped
from autocompress.errors import AutocompressError, ConfigError
from autocompress.examples import EXAMPLES

log = logging.getLogger(__name__)


def _say(line: str) -> None:
    typer.echo(line, err=True)


def apply(
    strategy: Annotated[Path, typer.Argument(help="strategy.yaml written by search or export")],
    config: Annotated[Path | None, typer.Argument(help="experiment YAML of a user task (or --example)")] = None,
    example: Annotated[str | None, typer.Option(help=EXAMPLES_HELP)] = None,
    device: Annotated[str | None, typer.Option(help="hardware profile (default: the strategy's own device)")] = None,
    out: Annotated[Path, typer.Option(help="folder for the rebuilt artifact and its report")] = Path("rebuilt"),
    windows: Annotated[int, typer.Option(min=1, max=20, help="fresh timing windows, 10 s apart")] = 3,
    config_option: Annotated[Path | None, typer.Option("--config", hidden=True)] = None,
) -> None:
    """Rebuild the artifact a strategy describes (no study needed), score it on validation and test, and time it
    against the uncompressed model (runtime default and fp32); refuses a strategy pinned to another base model."""
    setup_logging(False, "apply")
    try:
        report = _apply(strategy, config or config_option, example, device, out, windows, experiment_of)
        typer.echo(json.dumps(report, indent=2))
    except AutocompressError as error:
        raise fail(str(error)) from None
    except (typer.Exit, typer.Abort):
        raise
    except Exception as error:  # a bug: one line naming the log file with its traceback
        raise stopped(error, resumable=False) from None


def usage_examples() -> list[str]:
    """One command per built-in example, and one for a user's own config: what `apply --help` shows."""
    lines = [f"autocompress apply best/cpu/strategy.yaml --example {name}" for name in sorted(EXAMPLES)]
    return [*lines, "autocompress apply best/cpu/strategy.yaml my-experiment.yaml",
            "autocompress apply best/cpu/strategy.yaml --example digits --out rebuilt/"]  # fmt: skip


apply.__doc__ = f"{inspect.cleandoc(apply.__doc__ or '')}\n\nExamples:\n\n\b\n" + "\n".join(usage_examples())


def _apply(strategy_path: Path, config: Path | None, example: str | None, device: str | None, out: Path,
           windows: int, experiment_of: Any) -> dict[str, Any]:  # fmt: skip
    from autocompress.compress.pipeline import build
    from autocompress.evaluators.measure import CONFIRM_POLICY, artifact_size, score_artifacts, time_together
    from autocompress.hardware.availability import usable_profile
    from autocompress.run_log import protect_screen
    from autocompress.search.headline import time_headline
    from autocompress.spaces.strategy import Strategy
    from autocompress.tasks import load_task

    if not strategy_path.is_file():
        raise AutocompressError(f"strategy file '{strategy_path}' does not exist")
    loaded = Strategy.load(strategy_path)
    experiment = experiment_of(config, example, device or loaded.device)
    profile = usable_profile(experiment.device)
    task = load_task(experiment)
    profile = _pinned_profile(loaded, task, profile)
    shipped = strategy_path.parent / "elastic.pt"  # search/export.py writes it beside an elastic strategy
    if loaded.elastic is not None and shipped.is_file():
        from autocompress.compress.elastic_store import install_weights

        install_weights(shipped)
    protect_screen(profile.record.build_packages)  # the libraries' output to the log file from here on
    with _build_threads(loaded):
        artifact = build(task, loaded, profile, out)
        baseline = build(task, Strategy(), profile, out / "baseline")
    paths = [baseline.path, artifact.path]
    if notice := task.data.carving_notice():
        _say(f"note: {notice}")
    validation = score_artifacts(paths, task, profile, "validation")
    test = score_artifacts(paths, task, profile, "test")
    final = time_headline(baseline.path, artifact.path, -1, task, profile, CONFIRM_POLICY, time_together, windows)

    report = {
        "device": profile.name,
        "accuracy": validation[1],
        "validation": {"metric": validation[1], "baseline": validation[0], "drop": validation[0] - validation[1]},
        "test": {"metric": test[1], "baseline": test[0], "drop": test[0] - test[1]},
        **final.report_fields(),
        "speedup_ci": [final.default.ci_low, final.default.ci_high],
        "latency_ms": final.latency_ms,
        "baseline_latency_ms": final.default_latency_ms,
        "size_bytes": artifact_size(artifact.path, profile),
        "artifact": str(artifact.path),
    }
    report["differences"] = differences(report, strategy_path.parent / "report.json")
    for line in report["differences"]:
        _say(f"differs from the exported report: {line}")
    (out / "report.json").write_text(json.dumps(report, indent=2))
    return report


def _pinned_profile(strategy: Any, task: Any, profile: Any) -> Any:
    """Refuse another base model; build with the quantizer settings resolved when the strategy was exported."""
    from autocompress.fingerprint import model_fingerprint, package_versions

    pinned = strategy.pinned
    if pinned is None:
        return profile
    found = model_fingerprint(task.model)
    if found != pinned.base_model:
        raise ConfigError(
            f"this strategy was searched on another base model (fingerprint {pinned.base_model}; this model is "
            f"{found}): apply it to the model it was found for, or search again for this one"
        )
    if pinned.runtime != profile.record.name:
        raise ConfigError(f"this strategy was built for the {pinned.runtime} runtime, not {profile.record.name}: "
                          "pass the device it was exported for (--device)")  # fmt: skip
    now = package_versions(profile.record.build_packages)
    for package, version in pinned.versions.items():
        if now.get(package) != version:
            _say(f"note: {package} {now.get(package, 'missing')} here, {version} when the strategy was exported: "
                 "the artifact may differ")  # fmt: skip
    return profile.model_copy(update={"quantize": {**profile.quantize, **pinned.resolved}})


class _build_threads:  # noqa: N801 (a context manager used like a function)
    """The torch threads the exported artifact was built with (distillation's sums depend on it)."""

    def __init__(self, strategy: Any) -> None:
        pinned = strategy.pinned
        self.threads = None if pinned is None or not pinned.build_threads else str(pinned.build_threads)
        self.before: str | None = None

    def __enter__(self) -> None:
        self.before = os.environ.get("AUTOCOMPRESS_BUILD_THREADS")
        if self.threads:
            os.environ["AUTOCOMPRESS_BUILD_THREADS"] = self.threads

    def __exit__(self, *exc: object) -> None:
        if self.before is None:
            os.environ.pop("AUTOCOMPRESS_BUILD_THREADS", None)
        else:
            os.environ["AUTOCOMPRESS_BUILD_THREADS"] = self.before


def differences(rebuilt: dict[str, Any], report_path: Path) -> list[str]:
    """Where the rebuilt artifact's figures differ from the report exported beside the strategy: a metric that is
    not the same, a speedup whose interval does not meet the report's, another size."""
    if not report_path.is_file():
        return []
    report = json.loads(report_path.read_text())
    found = []
    if "accuracy" in report and abs(report["accuracy"] - rebuilt["accuracy"]) > 1e-9:
        found.append(f"validation metric {rebuilt['accuracy']:.6f}, reported {report['accuracy']:.6f}")
    reported_test = report.get("test", {}).get("metric")
    if reported_test is not None and abs(reported_test - rebuilt["test"]["metric"]) > 1e-9:
        found.append(f"test metric {rebuilt['test']['metric']:.6f}, reported {reported_test:.6f}")
    if report.get("size_bytes") not in (None, rebuilt["size_bytes"]):
        found.append(f"size {rebuilt['size_bytes']} bytes, reported {report['size_bytes']}")
    low, high = report.get("confirmed_speedup_ci", [None, None])
    if low is not None and (rebuilt["speedup_ci"][1] < low or rebuilt["speedup_ci"][0] > high):
        ours = f"{rebuilt['speedup']:.2f}x [{rebuilt['speedup_ci'][0]:.2f}, {rebuilt['speedup_ci'][1]:.2f}]"
        theirs = f"{report['confirmed_speedup']:.2f}x [{low:.2f}, {high:.2f}]"
        found.append(f"speedup {ours}, reported {theirs} (threads {rebuilt['threads']} vs {report.get('threads')})")
    return found
