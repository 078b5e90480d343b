"""MLflow logging, direct through MlflowClient: one experiment per study, one parent run per search
invocation, one nested run per trial. (optuna-integration's MLflowCallback is deprecated.)"""

from __future__ import annotations

import logging
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from autocompress.errors import ConfigError
from autocompress.home import home
from autocompress.search.recovery import is_dead, this_worker

log = logging.getLogger(__name__)
WORKER_TAG = "autocompress.worker"
for _quiet in ("alembic", "mlflow"):  # table creation and migrations are not news to the user
    logging.getLogger(_quiet).setLevel(logging.WARNING)


# an experiment of this kind opens on its runs, not on the GenAI overview (in MLflow UIs without 3.17's global
# GenAI / model-training switch; with it, the switch decides: see ui_link)
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
DESCRIPTION_TAG = "mlflow.note.content"  # the experiment's description in the UI
RUN_NAME_TAG = "mlflow.runName"


def is_server(tracking_uri: str) -> bool:
    return tracking_uri.startswith(("http://", "https://"))


# the stores MLflow opens (its tracking store registry; databases with an optional +driver)
STORE_SCHEMES = ("http", "https", "file", "sqlite", "postgresql", "mysql", "mssql", "databricks", "databricks-uc")
SERVER_TIMEOUT_S = 2.0
URI_FORMS = "http(s)://host:port, sqlite:///path/mlflow.db, postgresql://user@host/db or file:///folder"


def check_tracking_uri(tracking_uri: str | None) -> None:
    """Refuse, in one line and before anything is created, a tracking URI MLflow cannot open: one that is not a
    URL of a store MLflow knows, or a tracking server that does not answer one request within 2 s (MLflow itself
    would retry for minutes, after the baseline was trained). None (the home's SQLite store) is always fine."""
    if tracking_uri is None:
        return
    parsed = urllib.parse.urlsplit(tracking_uri)
    scheme = parsed.scheme.split("+")[0]
    if not parsed.scheme or any(char.isspace() for char in tracking_uri):
        raise ConfigError(f"tracking URI '{tracking_uri}' is not a URL: use {URI_FORMS}")
    if scheme not in STORE_SCHEMES:
        raise ConfigError(f"tracking URI '{tracking_uri}': MLflow has no '{parsed.scheme}' store; use {URI_FORMS}")
    if is_server(tracking_uri):
        _check_server(tracking_uri, parsed)


def _check_server(tracking_uri: str, parsed: urllib.parse.SplitResult) -> None:
    try:
        if not parsed.hostname:
            raise ValueError("no host")
        parsed.port  # noqa: B018 - raises ValueError when out of range
    except ValueError as error:
        raise ConfigError(f"tracking URI '{tracking_uri}' is not a URL: {error}") from None
    try:
        urllib.request.urlopen(f"{tracking_uri.rstrip('/')}/health", timeout=SERVER_TIMEOUT_S).close()  # noqa: S310
    except urllib.error.HTTPError:
        return  # it answered (behind a proxy or authentication, /health may be refused): the server is there
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        if isinstance(reason, ssl.SSLError):
            return  # it answered; whether to trust its certificate is MLflow's setting (MLFLOW_TRACKING_INSECURE_TLS)
        why = f"no answer within {SERVER_TIMEOUT_S:g} s" if isinstance(reason, TimeoutError) else str(reason)
        raise ConfigError(
            f"MLflow tracking server {tracking_uri} is not reachable ({why}): start it, or leave out the tracking "
            "URI to log under the home"
        ) from None


class MlflowTracker:
    """Owns the parent run of one search invocation and opens a nested run per trial."""

    def __init__(self, tracking_uri: str, study_name: str, description: str | None = None) -> None:
        self.client = MlflowClient(tracking_uri=tracking_uri)
        wanted = {**EXPERIMENT_KIND, **({} if description is None else {DESCRIPTION_TAG: description})}
        experiment = self.client.get_experiment_by_name(study_name)
        if experiment is None:
            # a local store keeps artifacts under the home; a server keeps them where it was told to (proxied)
            artifacts = None if is_server(tracking_uri) else (home() / "mlartifacts" / study_name).as_uri()
            try:
                self.experiment_id = self.client.create_experiment(study_name, artifact_location=artifacts, tags=wanted)
                experiment = self.client.get_experiment(self.experiment_id)
            except MlflowException as error:  # another worker of the study created it a moment ago
                experiment = self.client.get_experiment_by_name(study_name)
                if error.error_code != "RESOURCE_ALREADY_EXISTS" or experiment is None:
                    raise
                self.experiment_id = experiment.experiment_id
        else:
            self.experiment_id = experiment.experiment_id
        for key, value in wanted.items():  # experiments made by older versions open on the runs too
            if experiment.tags.get(key) != value:
                self._set_experiment_tag(key, value)
        self.parent_id: str | None = None

    def _set_experiment_tag(self, key: str, value: str, attempts: int = 3) -> None:
        """Workers of one study start together, and MLflow's SQL store writes a new experiment tag as
        check-then-insert: the loser of two concurrent first writes gets a unique-constraint error. The tag
        exists by then, so the write is retried (an update now) unless the winner already wrote our value."""
        for attempt in range(1, attempts + 1):
            try:
                self.client.set_experiment_tag(self.experiment_id, key, value)
                return
            except MlflowException:
                if self.client.get_experiment(self.experiment_id).tags.get(key) == value:
                    return
                if attempt == attempts:
                    raise
                time.sleep(0.2 * attempt)

    def close_orphans(self) -> list[str]:
        """Runs left RUNNING by a worker of this host that died (kill -9) are closed as KILLED."""
        closed = []
        for run in self.client.search_runs([self.experiment_id], "attributes.status = 'RUNNING'", max_results=1000):
            worker = run.data.tags.get(WORKER_TAG)
            if worker is not None and is_dead(worker):
                self.client.set_terminated(run.info.run_id, status="KILLED")
                closed.append(run.info.run_id)
        if closed:
            log.warning("closed %d MLflow run(s) of a worker that died as KILLED", len(closed))
        return closed

    def start_parent(self, run_name: str, params: dict[str, str | int | float], tags: dict[str, str]) -> str:
        run = self.client.create_run(self.experiment_id, run_name=run_name, tags={**tags, WORKER_TAG: this_worker()})
        self.parent_id = run.info.run_id
        self.log(self.parent_id, params=params)
        return self.parent_id

    def end_parent(self, status: str) -> None:
        if self.parent_id is not None:
            self.client.set_terminated(self.parent_id, status=status)

    def start_trial(self, trial_number: int, tags: dict[str, str]) -> str:
        all_tags = {"optuna.trial_number": str(trial_number), WORKER_TAG: this_worker(), **tags}
        if self.parent_id is not None:
            all_tags["mlflow.parentRunId"] = self.parent_id
        run = self.client.create_run(self.experiment_id, run_name=f"trial-{trial_number}", tags=all_tags)
        return run.info.run_id

    def start_child(self, run_name: str, tags: dict[str, str]) -> str:
        """A run of this search's own beside its trials (the elastic model's training)."""
        all_tags = {WORKER_TAG: this_worker(), **tags}
        if self.parent_id is not None:
            all_tags["mlflow.parentRunId"] = self.parent_id
        return self.client.create_run(self.experiment_id, run_name=run_name, tags=all_tags).info.run_id

    def log_step(self, run_id: str, step: int, metrics: dict[str, float]) -> None:
        """Points of a curve (x = `step`)."""
        now = int(time.time() * 1000)
        self.client.log_batch(run_id, metrics=[Metric(key, float(value), now, step) for key, value in metrics.items()])

    def log(
        self,
        run_id: str,
        params: dict[str, str | int | float] | None = None,
        metrics: dict[str, float] | None = None,
        tags: dict[str, str] | None = None,
    ) -> None:
        now = int(time.time() * 1000)
        self.client.log_batch(
            run_id,
            metrics=[Metric(key, float(value), now, 0) for key, value in (metrics or {}).items()],
            params=[Param(key, str(value)) for key, value in (params or {}).items()],
            tags=[RunTag(key, str(value)[:5000]) for key, value in (tags or {}).items()],
        )

    def log_text(self, run_id: str, text: str, name: str) -> None:
        self.client.log_text(run_id, text, name)

    def log_table(self, run_id: str, data: dict[str, list], name: str) -> None:
        self.client.log_table(run_id, data=data, artifact_file=name)

    def log_artifact(self, run_id: str, path: Path) -> None:
        self.client.log_artifact(run_id, str(path))

    def end_trial(self, run_id: str, status: str) -> None:
        self.client.set_terminated(run_id, status=status)


def ui_link(tracking_uri: str, study_name: str) -> str | None:
    """Where to look at a study in the MLflow UI. MLflow 3's UI chooses GenAI or model-training pages from a
    global switch (the `workflowType` URL parameter, remembered by the browser), so the link names it."""
    experiment = MlflowClient(tracking_uri=tracking_uri).get_experiment_by_name(study_name)
    if experiment is None:
        return None
    page = f"/#/experiments/{experiment.experiment_id}?workflowType=machine_learning"
    if is_server(tracking_uri):
        return f"MLflow: {tracking_uri.rstrip('/')}{page}"
    return f"MLflow: `mlflow ui --backend-store-uri {tracking_uri}`, then http://127.0.0.1:5000{page}"
