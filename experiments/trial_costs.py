"""What a trial costs in each search of a benchmark run (issue 27: trials after an elastic model's training should
cost a fraction of today's, and distillation should be a small share of the search once the training is paid).

    python -m experiments.trial_costs experiments/results/benchmark-elastic-seeds/digits-cpu.json --home <its home>

Per search method and seed, from its study: trials run, the median trial's wall seconds (start to end, the build
and every measurement), the build stages' medians (prune or extract, distil, export and quantize), distillation's
share of the search's wall time after the elastic training, and the training's seconds. Writes
`<results>-trial-costs.json` and `.md` beside the results file.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path
from typing import Any

STAGES = ("time_prune_s", "time_distill_s", "time_export_s", "time_quantize_s")


def costs_of(study, search_wall_s: float | None, train_s: float | None) -> dict[str, Any]:
    """One study's trial costs; `search_wall_s` is the method's whole search (training included, when any)."""
    from optuna.trial import TrialState

    from autocompress.search.results import METRICS_ATTR

    trials = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.datetime_complete]
    seconds = [(t.datetime_complete - t.datetime_start).total_seconds() for t in trials]
    metrics = [t.user_attrs.get(METRICS_ATTR) or {} for t in trials]
    stages = {stage: statistics.median(m.get(stage, 0.0) for m in metrics) if metrics else None for stage in STAGES}
    distill_total = sum(m.get("time_distill_s", 0.0) for m in metrics)
    after_training = (search_wall_s or 0.0) - (train_s or 0.0)
    return {
        "trials": len(trials),
        "median_trial_s": statistics.median(seconds) if seconds else None,
        "stage_medians_s": stages,
        "distill_total_s": distill_total,
        "search_after_training_s": after_training,
        "distill_share_after_training": distill_total / after_training if after_training > 0 else None,
        "elastic_train_s": train_s,
    }


def markdown(rows: list[dict[str, Any]], source: str) -> str:
    header = ("| method | seed | trials | median trial s | median distil s | median export+quantize s "
              "| distillation / search after training | one-off training s |")  # fmt: skip
    lines = [f"# Trial costs of `{source}`", "", header, "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        if not row["trials"]:  # nothing finished in that study: no costs to show
            lines.append(f"| {row['method']} | {row['seed']} | 0 | — | — | — | — | {row['elastic_train_s'] or 0:.0f} |")
            continue
        stages = row["stage_medians_s"]
        share = row["distill_share_after_training"]
        lines.append(
            f"| {row['method']} | {row['seed']} | {row['trials']} | {row['median_trial_s']:.1f} "
            f"| {stages['time_distill_s']:.1f} | {stages['time_export_s'] + stages['time_quantize_s']:.1f} "
            f"| {'—' if share is None else f'{share:.0%}'} | {row['elastic_train_s'] or 0:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--home", type=Path, required=True, help="the benchmark run's AUTOCOMPRESS_HOME")
    args = parser.parse_args()
    os.environ["AUTOCOMPRESS_HOME"] = str(args.home)
    import optuna

    from autocompress.home import default_storage

    results = json.loads(args.results.read_text())
    rows = []
    for name, method in results["methods"].items():
        if not method.get("study"):
            continue
        study = optuna.load_study(study_name=method["study"], storage=default_storage())
        row = costs_of(study, method.get("search_wall_s"), method.get("elastic_train_s"))
        rows.append({"method": name.split("#", 1)[0], "seed": method.get("seed")} | row)
    stem = args.results.with_suffix("")
    Path(f"{stem}-trial-costs.json").write_text(json.dumps(rows, indent=1))
    Path(f"{stem}-trial-costs.md").write_text(markdown(rows, str(args.results)))
    print(markdown(rows, str(args.results)))


if __name__ == "__main__":
    main()
