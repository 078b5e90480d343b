"""Trial and MLflow run states of the kill9-demo study (experiments/kill9_demo.sh)."""

import sys
from collections import Counter

import mlflow
import optuna

from autocompress.home import default_tracking_uri
from autocompress.search.study import open_storage

print("--", sys.argv[1])
study = optuna.load_study(study_name="kill9-demo", storage=open_storage(None))
for t in study.trials:
    extra = {k: v for k, v in t.user_attrs.items() if k in ("fail_reason", "retry_of", "enqueued")}
    print(f"trial {t.number}: {t.state.name} {extra}")
mlflow.set_tracking_uri(default_tracking_uri())
runs = mlflow.search_runs(experiment_names=["kill9-demo"], output_format="list")
parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
print("MLflow search runs:", dict(Counter(r.info.status for r in parents)),
      "trial runs:", dict(Counter(r.info.status for r in children)))  # fmt: skip
