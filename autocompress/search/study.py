"""Optuna study set-up: storage (SQLite by default, any Optuna URL), sampler, resume and its safety checks."""

from __future__ import annotations

import importlib.util
import logging
import warnings

import optuna
from optuna.storages import BaseStorage, RDBStorage

from autocompress.config import SearchSettings
from autocompress.errors import ConfigError
from autocompress.home import default_storage
from autocompress.search.recovery import retry_stale
from autocompress.search.results import OBJECTIVE, OBJECTIVE_ATTR
from autocompress.spaces.space import SearchSpace

log = logging.getLogger(__name__)
SPACE_ATTR = "space_signature"
BOUNDS_ATTR = "bounds"
RANGES_ATTR = "space_ranges"
STARTUP_TRIALS = 10  # at most: random trials before TPE models the results (warm starts count among them)


def open_storage(url: str | None) -> BaseStorage:
    """RDB storages get a heartbeat and a retry callback: a trial whose worker stopped beating is failed after the
    grace period and run again (recovery.py recovers this host's dead workers at once, without waiting)."""
    given = url or default_storage()
    url = _with_driver(given)
    try:
        if url.startswith(("sqlite", "postgresql", "mysql")):
            with warnings.catch_warnings():  # the heartbeat is "experimental" in Optuna 5: not the user's concern
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return RDBStorage(
                    url, heartbeat_interval=30, grace_period=120, heartbeat_stale_trial_callback=retry_stale
                )
        return optuna.storages.get_storage(url)
    except Exception as error:  # SQLAlchemy and the journal backends raise many types
        raise ConfigError(f"cannot open study storage '{given}': {str(error).splitlines()[0][:200]}") from None


def _with_driver(url: str) -> str:
    """`postgresql://` means psycopg2 to SQLAlchemy; the `postgres` extra installs the maintained psycopg 3."""
    if not url.startswith(("postgresql://", "postgres://")):
        return url
    if importlib.util.find_spec("psycopg") is not None:
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    if importlib.util.find_spec("psycopg2") is None:
        raise ConfigError("a PostgreSQL study storage needs a driver: pip install 'autocompress[postgres]'")
    return url


def directions(settings: SearchSettings) -> list[str]:
    """Maximize the metric, minimize the latency relative to the baseline; size is an optional third objective."""
    return ["maximize", "minimize"] + (["minimize"] if settings.size_objective else [])


def make_sampler(settings: SearchSettings, seed: int, startup: int | None = None) -> optuna.samplers.BaseSampler:
    """TPE (or plain random search, for comparisons). `startup`: trials before TPE models the results; by default
    at most half the budget; with seeded candidates, just those (they are better than random draws)."""
    if settings.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if startup is None:
        startup = min(STARTUP_TRIALS, max(4, (settings.trials or STARTUP_TRIALS) // 2))
    return optuna.samplers.TPESampler(
        seed=seed,
        multivariate=True,
        group=True,  # the space is conditional (distillation steps depend on whether anything is pruned)
        n_startup_trials=startup,
        constant_liar=True,
    )


def route_optuna_logs() -> None:
    """Optuna's warnings through the root logger, like every library's (into the log file, autocompress/run_log.py),
    instead of its own handler on stderr."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.logging.disable_default_handler()
    optuna.logging.enable_propagation()


def open_study(name: str, storage: BaseStorage, settings: SearchSettings, space: SearchSpace) -> optuna.Study:
    """Create or resume; a stored study built for another model, device or objectives is refused."""
    route_optuna_logs()
    existing = len(_trials_so_far(name, storage))
    sampler = make_sampler(settings, seed=settings.seed + existing)  # a resumed study must not replay its draws
    try:
        study = optuna.create_study(
            study_name=name, storage=storage, directions=directions(settings), sampler=sampler, load_if_exists=True
        )
    except ValueError as error:
        raise ConfigError(f"study '{name}': {error}; use another --study name".splitlines()[0]) from None
    if len(study.directions) != len(directions(settings)):
        raise ConfigError(
            f"study '{name}' was created with {len(study.directions)} objectives; "
            "keep --size-objective as it was or use another --study name"
        )
    objective = study.user_attrs.get(OBJECTIVE_ATTR)
    if objective is None and study.trials:
        raise ConfigError(
            f"study '{name}' was made by an older autocompress that divided latencies by a baseline timed once "
            "(not comparable with paired speedups); use another --study name"
        )
    if objective is None:
        study.set_user_attr(OBJECTIVE_ATTR, OBJECTIVE)
    _same_bounds(study, settings)
    signature = space.signature()
    stored = study.user_attrs.get(SPACE_ATTR)
    if stored is None:
        study.set_user_attr(SPACE_ATTR, signature)
    elif stored != signature:
        raise ConfigError(
            f"study '{name}' was created for a different model, device or granularity; use another --study name"
        )
    _same_ranges(study, space)
    return study


def _same_ranges(study: optuna.Study, space: SearchSpace) -> None:
    """A study resumed with another `space:` would ask Optuna for other choices under the same parameter names
    (which it refuses, trial after trial). Studies from before this check get their ranges recorded now."""
    stored = study.user_attrs.get(RANGES_ATTR)
    wanted = space.ranges()
    if stored is None:
        study.set_user_attr(RANGES_ATTR, wanted)
        return
    differ = [key for key in wanted if key in stored and stored[key] != wanted[key]]
    if differ:
        changes = ", ".join(f"{key} {stored[key]} (now {wanted[key]})" for key in differ)
        raise ConfigError(
            f"study '{study.study_name}' was searched with space {changes}: keep its space or use another --study name"
        )


def bounds(settings: SearchSettings) -> dict[str, object]:
    return {"max_drop": settings.max_drop, "drop_mode": settings.drop_mode, "max_size_mb": settings.max_size_mb}


def _same_bounds(study: optuna.Study, settings: SearchSettings) -> None:
    """Feasibility is judged once per trial: a study resumed with another bound would mix two definitions."""
    stored = study.user_attrs.get(BOUNDS_ATTR)
    wanted = bounds(settings)
    if stored is None:
        study.set_user_attr(BOUNDS_ATTR, wanted)
    elif stored != wanted:
        differ = ", ".join(
            f"{key} {stored[key]} (now {wanted[key]})" for key in wanted if stored.get(key) != wanted[key]
        )
        raise ConfigError(
            f"study '{study.study_name}' was searched with {differ}: keep its bounds or use another --study name"
        )


def _trials_so_far(name: str, storage: BaseStorage) -> list[optuna.trial.FrozenTrial]:
    try:
        return optuna.load_study(study_name=name, storage=storage).trials
    except KeyError:
        return []
