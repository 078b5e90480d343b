"""The exported best model per device in MLflow's Model Registry, so a deployment pipeline that reads models from
MLflow picks it up: the export folder (artifact, baseline, strategy.yaml, report.json) is logged to an "export"
run of the study's experiment and registered as a new version of `<study>` (or `<study>-<device>` when the
study's name does not already end with the device), tagged with what the report says. The same export again
(same strategy and artifact bytes) finds its version instead of adding a duplicate."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from autocompress.search.tracking import MlflowTracker

DIGEST_TAG = "autocompress.digest"


def model_name(study_name: str, device: str) -> str:
    return study_name if study_name.endswith(device) else f"{study_name}-{device}"


def export_digest(folder: Path) -> str:
    """What makes two exports the same: the strategy and every byte of the exported artifact."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.iterdir() if p.is_file() and p.name != "report.json"):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:32]


def _existing(client: MlflowClient, name: str, digest: str) -> ModelVersion | None:
    for version in client.search_model_versions(f"name = '{name}'"):
        if version.tags.get(DIGEST_TAG) == digest:
            return version
    return None


def register_export(tracking_uri: str, study_name: str, folder: Path) -> tuple[ModelVersion, bool]:
    """Register `folder` (an export's <device>/ folder); returns the version and whether it is new."""
    report = json.loads((folder / "report.json").read_text())
    device = report["device"]
    name = model_name(study_name, device)
    digest = export_digest(folder)
    client = MlflowClient(tracking_uri=tracking_uri)
    try:
        client.get_registered_model(name)
    except MlflowException:
        try:
            client.create_registered_model(name, description=f"autocompress: the best strategy of study "
                                           f"'{study_name}' for device '{device}' (artifact, strategy.yaml, "
                                           "report.json)")  # fmt: skip
        except MlflowException as error:  # another worker of the study, finishing at the same moment, made it
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
    found = _existing(client, name, digest)
    if found is not None:
        return found, False
    tracker = MlflowTracker(tracking_uri, study_name)
    run = client.create_run(tracker.experiment_id, run_name=f"export {device}", tags={"device": device,
                            "kind": "export", "source_trial": str(report["trial_number"])})  # fmt: skip
    client.log_artifacts(run.info.run_id, str(folder), artifact_path="model")
    client.set_terminated(run.info.run_id)
    tags = {
        "device": device,
        "metric": report.get("metric", "accuracy"),
        "metric_value": f"{report['accuracy']:.6g}",
        "confirmed_speedup": f"{report['confirmed_speedup']:.4g}",
        "confirmed_speedup_ci": "[{:.4g}, {:.4g}]".format(*report["confirmed_speedup_ci"]),
        "size_bytes": str(report["size_bytes"]),
        "trial": str(report["trial_number"]),
        DIGEST_TAG: digest,
    }
    if "test" in report:  # the held-out split, named as such; metric_value above is validation
        tags |= {"validation_metric": f"{report['accuracy']:.6g}", "test_metric": f"{report['test']['metric']:.6g}"}
    if "speedup_over_fp32" in report:
        tags |= {"speedup_baseline": report["speedup_baseline"], "threads": str(report["threads"]),
                 "speedup_over_fp32": f"{report['speedup_over_fp32']:.4g}", "noisy": str(report["noisy"]).lower()}
    version = client.create_model_version(name, source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id,
                                          tags=tags)  # fmt: skip
    return version, True


def register_and_say(tracking_uri: str | None, study_name: str, folder: Path) -> str:
    """Register an export and say what happened in one line; a failure is that line too: the export on disk
    stands whatever happens here, the registry is a convenience on top of it."""
    from autocompress.hardware.locks import compute_slot
    from autocompress.home import default_tracking_uri

    try:
        with compute_slot():  # uploading is work: not during another process's timing
            version, new = register_export(tracking_uri or default_tracking_uri(), study_name, folder)
    except Exception as error:
        return f"not registered in MLflow ({type(error).__name__}: {str(error).splitlines()[0][:200]})"
    said = "registered as" if new else "already registered (same strategy, artifact):"
    return f"{said} MLflow model '{version.name}' version {version.version}"
