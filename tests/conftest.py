"""Shared fixtures: one autocompress home per test session, so the digits model is trained once."""

from __future__ import annotations

import os
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
