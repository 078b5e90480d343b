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
def cpu_profile():
    from autocompress.hardware import get_profile

    return get_profile("cpu")
