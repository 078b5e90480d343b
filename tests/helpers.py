"""Helpers for end-to-end tests: run the real CLI, read the real study and MLflow store."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

import optuna
import yaml
from mlflow.tracking import MlflowClient
from optuna.storages import BaseStorage

from autocompress.home import default_storage, default_tracking_uri
from autocompress.search.study import open_storage


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """The installed command as a user runs it, in a fresh process."""
    return subprocess.run(
        [sys.executable, "-m", "autocompress", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )


def invoke_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The same command in this process (typer's runner): no Python start-up and no imports to pay again (6-8 s
    a command on 2 cores), the measuring worker already running. For the tests that need no process of their own
    (signals, a fresh terminal, per-process counters of the tests' user task); what they get back reads like
    `run_cli`'s. An exception the command did not handle is a bug: its traceback ends stderr."""
    from typer.testing import CliRunner

    from autocompress.cli import app

    result = CliRunner().invoke(app, list(args), env=env)
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(result.exception))
    return subprocess.CompletedProcess(list(args), result.exit_code, result.stdout, stderr)


class BackgroundCli(subprocess.Popen):
    """The CLI started in the background. Its output goes to files, not pipes: nothing reads a pipe while the
    process runs, and a full one (64 KiB of warnings on a loaded machine) would block it mid-trial."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.stdout_file = tempfile.TemporaryFile("w+")  # noqa: SIM115 - lives as long as the process
        self.stderr_file = tempfile.TemporaryFile("w+")  # noqa: SIM115
        super().__init__(args, stdout=self.stdout_file, stderr=self.stderr_file, text=True, env=env)

    def communicate(self, input: str | None = None, timeout: float | None = None) -> tuple[str, str]:
        self.wait(timeout)
        return self.output()

    def output(self) -> tuple[str, str]:
        """(stdout, stderr) so far."""
        self.stdout_file.seek(0)
        self.stderr_file.seek(0)
        return self.stdout_file.read(), self.stderr_file.read()


def start_cli(*args: str, env: dict[str, str] | None = None) -> BackgroundCli:
    return BackgroundCli([sys.executable, "-m", "autocompress", *args], env={**os.environ, **(env or {})})


def load_study(name: str, storage: str | None = None) -> optuna.Study:
    """Tests poll studies in loops: one storage (one connection pool) per URL, or a PostgreSQL server runs out of
    connections (each RDBStorage keeps its own pool until its engine is garbage-collected)."""
    return optuna.load_study(study_name=name, storage=_storage(storage or default_storage()))


@functools.cache
def _storage(url: str) -> BaseStorage:
    return open_storage(url)


def mlflow_runs(study_name: str, tracking_uri: str | None = None) -> tuple[list, list]:
    """(parent runs, nested trial runs) of a study's MLflow experiment (registry export runs left out)."""
    client = MlflowClient(tracking_uri or default_tracking_uri())
    experiment = client.get_experiment_by_name(study_name)
    assert experiment is not None, f"no MLflow experiment for {study_name}"
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    parents = [
        run for run in runs if "mlflow.parentRunId" not in run.data.tags and run.data.tags.get("kind") != "export"
    ]
    children = [run for run in runs if "mlflow.parentRunId" in run.data.tags]
    return parents, children


def artifact_names(run_id: str, tracking_uri: str | None = None) -> set[str]:
    return {item.path for item in MlflowClient(tracking_uri or default_tracking_uri()).list_artifacts(run_id)}


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def digits_config(folder: Path, device: str, distill_steps: list[int]) -> Path:
    """The built-in example through a config, as a user narrows it: shorter distillation, and confirmation does
    not wait up to three 20 s gaps for the machine's faster state (test time; the tiny config does the same);
    where a test asks for more windows, they are 1 s apart."""
    path = folder / f"digits-{device}.yaml"
    settings = {"example": "digits", "device": device, "space": {"distill_steps": distill_steps}}
    confirm = {"confirm_windows": 1, "confirm_seconds": 4, "confirm_gap_seconds": 1}
    path.write_text(yaml.safe_dump(settings | {"search": confirm}))
    return path


def user_config() -> Path:
    return Path(__file__).parent / "user_task" / "tiny.yaml"
