"""One home folder for every default path, so a search needs no server and no set-up."""

from __future__ import annotations

import os
from pathlib import Path

from autocompress.errors import ConfigError


def home() -> Path:
    """`$AUTOCOMPRESS_HOME`, default `./autocompress-runs`, created on first use."""
    path = Path(os.environ.get("AUTOCOMPRESS_HOME", "autocompress-runs")).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_storage() -> str:
    """The Optuna storage URL: one SQLite file under the home."""
    return f"sqlite:///{home() / 'studies.db'}"


def default_tracking_uri() -> str:
    """The MLflow tracking store: one SQLite file under the home (no server to start)."""
    return f"sqlite:///{home() / 'mlflow.db'}"


def study_dir(study_name: str) -> Path:
    """Where a study keeps its trials' artifacts and its baseline (always inside the home: config and CLI names
    are restricted to a safe alphabet, and this checks it once more before anything is written or removed)."""
    root = home() / "studies"
    path = (root / study_name).resolve()
    if path.parent != root:
        raise ConfigError(f"study name '{study_name}' would leave {root}: use letters, digits, '.', '_' or '-'")
    path.mkdir(parents=True, exist_ok=True)
    return path
