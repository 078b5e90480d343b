"""The benchmark's search methods: one study per method and seed, run through the product's driver, and the
points each study's trials give (paired speedups over the study's own fp32 baseline)."""

from __future__ import annotations

from typing import Any


def search_points(study, only_sampled: bool = False) -> list[dict[str, Any]]:
    """Every COMPLETE trial of a study with its paired speedup over the study's fp32 baseline (the same model,
    exported the same way); `only_sampled` leaves out the trials the search enqueued by hand."""
    from optuna.trial import TrialState

    from autocompress.search.artifacts import trial_dir
    from autocompress.search.results import METRICS_ATTR, is_compressed

    points = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        m = trial.user_attrs.get(METRICS_ATTR)
        enqueued = trial.user_attrs.get("enqueued")
        if m is None or (only_sampled and enqueued):
            continue
        points.append(
            {
                "label": f"trial {trial.number}" + (f" ({enqueued})" if enqueued else ""),
                "trial": trial.number,
                "enqueued": bool(enqueued),
                "uncompressed": not is_compressed(trial),
                "accuracy": m["metric"],
                "speedup_vs_fp32": m["speedup"],
                "speedup_ci": [m["speedup_ci_low"], m["speedup_ci_high"]],
                "latency_ms": m["latency_ms"],
                "fp32_latency_ms": m["baseline_latency_ms"],
                "size_bytes": int(m["size_bytes"]),
                "latency_noisy": bool(m["latency_noisy"]),
                "artifact_dir": str(trial_dir(study.study_name, trial.number)),
            }
        )
    return points


def run_search_method(
    name: str, sampler: str, extra: dict[str, Any], task, profile, args, stamp: str, seed: int
) -> dict[str, Any]:
    from optuna.trial import TrialState
    from rich.console import Console

    from autocompress.config import SearchSettings
    from autocompress.search.driver import run_search
    from autocompress.search.elastic_stage import ELASTIC_ATTR

    study_name = f"bench-{args.example}-{profile.name}-{name}-s{seed}-{stamp}"
    if "elastic" in extra:  # trained per seed (its key has the seed): every run pays its own training
        length = {"budget_s": args.elastic_share * args.budget_s} if args.budget_s else {"steps": args.elastic_steps}
        extra = extra | {"elastic": extra["elastic"] | length | {"seed": seed}}
    budget = {"trials": None, "timeout": args.budget_s} if args.budget_s else {"trials": args.trials}
    settings = SearchSettings(
        **budget,
        sampler=sampler,
        seed=seed,
        max_drop=args.max_drop,
        study=study_name,
        polish_steps=args.polish_steps if sampler == "tpe" else 0,
        **extra,
    )
    outcome = run_search(task, profile, settings, study_name, console=Console(stderr=True))
    study = outcome.study
    return {
        "points": search_points(study),
        "confirmed": {str(item.trial): item.speedup for item in outcome.confirmed},
        "winner": next((str(item.trial) for item in outcome.confirmed if item.final is not None), None),
        "study": study_name,
        "sampler": sampler,
        "seed": seed,
        "settings": extra,
        "trials_run": len(outcome.trials),
        "search_wall_s": outcome.wall_s,
        "elastic_train_s": (study.user_attrs.get(ELASTIC_ATTR) or {}).get("train_s"),  # the one-off training
        "failed_trials": len(study.get_trials(deepcopy=False, states=(TrialState.FAIL,))),
        "_study": study,
    }
