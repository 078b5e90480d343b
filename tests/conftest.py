"""Shared fixtures: one autocompress home per test session, so the digits model is trained once."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

USER_TASK_DIR = Path(__file__).parent / "user_task"


@pytest.fixture(scope="session", autouse=True)
def session_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("autocompress-home")
    os.environ["AUTOCOMPRESS_HOME"] = str(home)
    torch.set_num_threads(2)
    return home


@pytest.fixture(scope="session")
def digits_task(session_home: Path):
    from autocompress.examples.digits import load_task

    return load_task()


@pytest.fixture(scope="session")
def digits_untrained(session_home: Path):
    """The digits ResNet as initialised (no training, for tests of structure, not of accuracy) with its data."""
    from autocompress.examples.digits import IMAGE_SIZE, WIDTHS, data_splits
    from autocompress.examples.digits_model import DigitsResNet
    from autocompress.task import Task, accuracy

    torch.manual_seed(0)
    model = DigitsResNet(WIDTHS).eval()
    return Task("digits-untrained", model, torch.zeros(1, 1, IMAGE_SIZE, IMAGE_SIZE), data_splits(), accuracy)


@pytest.fixture(scope="session")
def tiny_task(session_home: Path):
    """The tests' user task (tests/user_task): a tiny CNN trained in a second, loaded as a config would."""
    from autocompress.config import load_config
    from autocompress.tasks import load_task

    return load_task(load_config(USER_TASK_DIR / "tiny.yaml"))


@pytest.fixture(scope="session")
def cpu_profile():
    from autocompress.hardware import get_profile

    return get_profile("cpu")


@dataclass(frozen=True)
class ServerSearch:
    """A finished search logged to a real `mlflow server`: its study, tracking URI, export folder and stderr."""

    study: str
    tracking: str
    out: Path
    stderr: str


@dataclass(frozen=True)
class MlflowServer:
    """A real `mlflow server` (SQLite backend, proxied artifacts) living for the test session: its URI and the
    folder where uploaded artifacts land."""

    tracking: str
    store: Path


@pytest.fixture(scope="session")
def session_mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """One server for the session's tests (each uses its own study, hence its own experiment): it takes about 12 s
    to start on this machine."""
    from tests.services import mlflow_server

    folder = tmp_path_factory.mktemp("mlflow-server") / "mlflow"
    with mlflow_server(folder) as tracking:
        yield MlflowServer(tracking, folder / "store")


@pytest.fixture(scope="session")
def tiny_search_on_a_server(
    session_mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory
) -> ServerSearch:
    """One tiny search (no compression, static int8, uniform 50% pruning; a loose bound, so a winner is exported
    and registered) logged to the session's `mlflow server`: what the MLflow views and the browser tests read (one
    search for both)."""
    from tests.helpers import invoke_cli

    out = tmp_path_factory.mktemp("tiny-mlflow") / "best"
    tracking = session_mlflow_server.tracking
    study = "tiny-mlflow"
    flags = ("--trials", "3", "--max-drop", "0.3", "--tracking-uri", tracking, "--out", str(out))
    result = invoke_cli("search", "--no-sensitivity", str(USER_TASK_DIR / "tiny.yaml"), "--study", study, *flags)
    assert result.returncode == 0, result.stderr[-2000:]
    return ServerSearch(study, tracking, out, result.stderr)
