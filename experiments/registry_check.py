"""Is the registered best model the exported one? Load a digits study's registered version from MLflow and score it.

    python -m experiments.registry_check TRACKING_URI STUDY      # e.g. sqlite:///autocompress-runs/mlflow.db digits-cpu

Lists the study's registered model and its versions, prints the version's tags, downloads the version's artifact
through MLflow and runs its model.onnx in ONNX Runtime on the digits validation split, beside report.json's accuracy.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import mlflow
import numpy as np
import onnxruntime as ort
from mlflow.tracking import MlflowClient

from autocompress.examples.digits import data_splits

SHOWN_TAGS = ("device", "trial", "metric_value", "confirmed_speedup", "confirmed_speedup_ci")


def accuracy(model: Path) -> float:
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    correct = total = 0
    for images, labels in data_splits().validation:
        for image, label in zip(images.numpy(), labels.numpy(), strict=True):
            correct += int(session.run(None, {name: image[None].astype(np.float32)})[0].argmax() == label)
            total += 1
    return correct / total


def main(uri: str, study: str) -> int:
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    models = [model for model in mlflow.search_registered_models() if model.name.startswith(study)]
    versions = {model.name: client.search_model_versions(f"name = '{model.name}'") for model in models}
    print("registered:", {name: [version.version for version in found] for name, found in versions.items()})
    ((name, (version,)),) = versions.items()  # one model, one version
    print("tags:", {key: version.tags.get(key) for key in SHOWN_TAGS})
    folder = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/{version.version}", dst_path=tempfile.mkdtemp()))
    report = json.loads((folder / "report.json").read_text())
    print(f"accuracy of the registered model.onnx in ONNX Runtime: {accuracy(folder / 'model.onnx'):.6f}; "
          f"report.json: {report['accuracy']:.6f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
