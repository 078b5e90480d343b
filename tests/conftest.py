"""Shared fixtures: one autocompress home per test session, so the digits model is trained once — in the
background from the session's start, while the tests that need no trained model run first."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from tests.helpers import BackgroundCli

USER_TASK_DIR = Path(__file__).parent / "user_task"
_TRAIN_DIGITS = pytest.StashKey[bool]()  # some collected test needs the trained digits model
_DIGITS_TRAINING = pytest.StashKey["BackgroundCli | None"]()  # its training, started with the session


def _heavy(item: pytest.Item) -> bool:
    return item.get_closest_marker("e2e") is not None or "digits_task" in getattr(item, "fixturenames", ())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Files with end-to-end runs or the trained digits model last (each file's tests stay together and in order,
    so module fixtures are set up once): the digits training, started in the background when the session begins,
    is done by the time they run (it took 40-45 s of a 15-minute suite, and the light files take about two
    minutes)."""
    heavy_files = {item.path for item in items if _heavy(item)}
    items.sort(key=lambda item: item.path in heavy_files)  # stable: the order within each group is kept
    config.stash[_TRAIN_DIGITS] = any("digits_task" in getattr(item, "fixturenames", ()) for item in items)


@pytest.fixture(scope="session", autouse=True)
def session_home(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("autocompress-home")
    os.environ["AUTOCOMPRESS_HOME"] = str(home)
    torch.set_num_threads(2)
    training = None
    if pytestconfig.stash.get(_TRAIN_DIGITS, False):  # the product's own training, as `load_task` runs it
        script = "from autocompress.examples.digits import load_task; load_task()"
        training = BackgroundCli([sys.executable, "-c", script], env=dict(os.environ))  # output to files, not pipes
    pytestconfig.stash[_DIGITS_TRAINING] = training
    yield home
    if training is not None and training.poll() is None:
        training.kill()
        training.wait()


@pytest.fixture(scope="session")
def digits_task(session_home: Path, pytestconfig: pytest.Config):
    """The trained digits example: the background training's result, read from the session home's cache."""
    from autocompress.examples.digits import load_task

    training = pytestconfig.stash.get(_DIGITS_TRAINING, None)
    if training is not None:
        _, stderr = training.communicate(timeout=1800)
        assert training.returncode == 0, f"training the digits example failed: {stderr[-2000:]}"
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
