"""Benchmark: the search against what a user would try first, in one run, on one machine, for one device.

    python -m experiments.benchmark --example digits --device cpu --trials 30 [--out experiments/results/benchmark]
                                    [--seed 0] [--max-drop 0.01] [--home autocompress-runs/benchmark]

Measured, all with `measure_artifact` on the device's profile, every speedup a paired ratio against fp32:
  fp32          (baseline)     the uncompressed model, built and measured like a candidate; it sets the bound
  one-click     (one-click)    each runtime's quantizer with its defaults and uniform pruning (benchmark_methods),
                               each timed in alternating rounds with fp32
  random        (random)       the search space sampled at random, N trials (each trial paired with fp32)
  autocompress  (autocompress) the product's search (TPE from its warm starts), same N and seed; reported again
                               as autocompress-search-only, without the trials it enqueued by hand
Finally the best feasible point of every method and fp32 are timed together in the same interleaved rounds, in
windows spread in time: the headline compares those `final` speedups (each from the rounds in which the machine
and the two artifacts it compares ran undisturbed; `final_round`).

Writes <out>/<example>-<device>.{json,md,png}; scoring and formats are in benchmark_report, the search methods in
benchmark_search, the machine record in machine. Studies go to a
separate home (--home), each under a unique name, so they never mix with the user's or resume each other.

    python -m experiments.benchmark --retime <out>/<example>-<device>.json --home <the run's home>

times the final round again (a window disturbed throughout: `final noisy` in the table) from the run's artifacts
and studies, and rewrites the three files; `--add ort-static-u8s8,...` first builds and measures one-click methods
the run did not have, so that they are timed in the same final round.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
import time
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any

from experiments.benchmark_methods import LABELS, one_click_methods
from experiments.benchmark_report import headline, markdown, plot, score_method, write_json
from experiments.benchmark_search import run_search_method, search_points
from experiments.machine import git_commit, machine_info

# method name -> (sampler, settings): the product's search and its ablations, each its own study
SEARCH_METHODS: dict[str, tuple[str, dict[str, Any]]] = {
    "random": ("random", {}),
    "autocompress": ("tpe", {}),
    "autocompress-no-warm-starts": ("tpe", {"warm_starts": False}),
    "autocompress-no-sensitivity": ("tpe", {"sensitivity": False}),
    "autocompress-elastic": ("tpe", {"elastic": {}}),  # its training's length: --elastic-share of the budget
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m experiments.benchmark", description=__doc__.splitlines()[0])
    parser.add_argument("--example", default="digits", help="built-in example")
    parser.add_argument("--config", type=Path, default=None, help="an experiment YAML instead (a user's model, data "
                        "and metric; its space options apply, its name replaces the example's in file names)")
    parser.add_argument("--device", default="cpu", help="hardware profile name, alias or .yaml path")
    parser.add_argument("--trials", type=int, default=30, help="trials per search method (without --budget)")
    parser.add_argument("--budget", default=None, help="wall-clock per search method instead (e.g. 10m): every "
                        "build counts, the sensitivity stage and warm starts included")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds: each search method once per seed")
    parser.add_argument("--out", type=Path, default=Path("experiments/results/benchmark"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-drop", type=float, default=0.01, help="allowed absolute metric drop from fp32")
    parser.add_argument("--home", type=Path, default=Path("autocompress-runs/benchmark"), help="AUTOCOMPRESS_HOME")
    parser.add_argument("--methods", default=None, help="comma-separated subset of the methods (default: all)")
    parser.add_argument("--polish-steps", type=int, default=0, help="autocompress's polish stage (search/polish.py)")
    parser.add_argument("--elastic-share", type=float, default=0.25, help="autocompress-elastic: the share of "
                        "--budget its elastic model trains (inside the budget); with --trials, --elastic-steps")
    parser.add_argument("--elastic-steps", type=int, default=300, help="autocompress-elastic without --budget")
    parser.add_argument("--retime", type=Path, default=None, help="a results JSON: time its final round again")
    parser.add_argument("--add", default=None, help="with --retime: comma-separated one-click methods to build and "
                        "measure first, then time with the others (e.g. a recipe the run did not have)")
    args = parser.parse_args(argv)
    if args.trials < 1:
        parser.error("--trials must be at least 1")
    from autocompress.config import parse_duration

    args.budget_s = parse_duration(args.budget) if args.budget else None
    args.seed_list = [int(seed) for seed in args.seeds.split(",")] if args.seeds else [args.seed]
    if args.add and args.retime is None:
        parser.error("--add needs --retime (a finished run's results JSON)")
    args.add = args.add.split(",") if args.add else []
    return args


# what decides whether int8 is a win here: results from machines that differ in these are not comparable
def _quiet() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("torch.onnx", "torch._dynamo", "onnxscript", "mlflow", "alembic", "nncf", "root", "absl"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")


def one_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"[:300]


def measured_point(path: Path, task, profile, label: str, fp32: Path | None = None) -> dict[str, Any]:
    """One artifact's metric and size, and (with `fp32`) its paired speedup over it, timed in alternating rounds."""
    from autocompress.evaluators.measure import measure_artifact

    m = measure_artifact(path, task, profile, baseline=fp32)
    point = {
        "label": label,
        "accuracy": m.metric,
        "latency_ms": m.latency.median_ms,
        "latency_ci_ms": [m.latency.ci_low_ms, m.latency.ci_high_ms],
        "latency_noisy": m.latency.noisy,
        "size_bytes": m.size_bytes,
        "artifact": str(path),
    }
    if m.speedup is not None and m.baseline_latency is not None:
        point |= {
            "speedup_vs_fp32": m.speedup.speedup,
            "speedup_ci": [m.speedup.ci_low, m.speedup.ci_high],
            "fp32_latency_ms": m.baseline_latency.median_ms,
        }
    return point


def runtime_default(fp32: Path, task, profile) -> dict[str, Any]:
    """The uncompressed model under the runtime's default settings (what a user who changes nothing runs, e.g.
    OpenVINO's bf16 on CPUs that have it), paired with the fp32-forced one in the same rounds."""
    from autocompress.evaluators.measure import CONFIRM_POLICY, score_artifacts, time_together

    options = [None, profile.default_runtime_options]
    timing = time_together(fp32, [fp32], task, profile, CONFIRM_POLICY, options=options)
    paired = timing.speedups[1]
    assert paired is not None
    (metric,) = score_artifacts([fp32], task, profile, "validation", [profile.default_runtime_options])
    return {"points": [{"label": "runtime default" + ("" if profile.default_differs else " (= fp32 here)"),
                        "uncompressed": not profile.default_differs, "accuracy": metric,
                        "speedup_vs_fp32": paired.speedup, "speedup_ci": [paired.ci_low, paired.ci_high],
                        "latency_ms": timing.latencies[1].median_ms, "size_bytes": fp32.stat().st_size,
                        "artifact": str(fp32), "runtime_options": profile.default_runtime_options}]}  # fmt: skip


def run_method(name: str, kind: str, work, methods: dict[str, Any]) -> dict[str, Any]:
    """Run one method, timing it; a failure a method may have (a recipe the device cannot build or run, no
    memory for it) is recorded with its reason and the benchmark goes on; a bug stops it (failures.py)."""
    from autocompress.errors import AutocompressError
    from autocompress.search.failures import TRIAL_FAILURES

    failures = (AutocompressError, *TRIAL_FAILURES)
    print(f"[{name}] running ({kind}) ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    try:
        result = {"kind": kind, "error": None, **work()}
    except KeyboardInterrupt:
        raise
    except failures as error:  # a method that cannot be built or measured here is a result
        result = {"kind": kind, "error": one_line(error), "points": []}
    result["wall_s"] = time.perf_counter() - start
    methods[name] = result
    status = f"failed: {result['error']}" if result["error"] else f"{len(result['points'])} point(s)"
    print(f"[{name}] {status} in {result['wall_s']:.1f} s", file=sys.stderr, flush=True)
    return result


def best_artifact(method: dict[str, Any], task, profile) -> Path | None:
    """The artifact of a method's best feasible point (a search trial's is rebuilt if the search removed it)."""
    best = method.get("best_feasible")
    if best is None:
        return None
    if "artifact" in best:
        return Path(best["artifact"])
    from autocompress.search.artifacts import trial_artifact

    study = method["_study"]
    return trial_artifact(study, study.trials[best["trial"]], task, profile)


FINAL_WINDOWS = 3  # the final figures: windows spread in time, the interval over them (search/headline.py)
FINAL_GAP_S = 10.0


def final_round(methods: dict[str, Any], fp32: Path, task, profile) -> int:
    """Every method's best feasible artifact and fp32, timed together in the same interleaved rounds, in
    `FINAL_WINDOWS` windows `FINAL_GAP_S` apart (each figure: geometric mean of the window medians, a t-interval
    over the windows), and scored once on the held-out test split, which no method's choice saw. Each figure
    comes from the rounds in which the machine was in its undisturbed state (the median artifact calm) and the
    two artifacts it compares were calm: with a dozen artifacts in the loop, rounds with every one of them calm
    at once were too rare to give a figure (`settled_across`)."""
    from autocompress.evaluators.measure import CONFIRM_POLICY, score_artifacts, time_together
    from autocompress.search.headline import Figure, calm_windows, windows_in_calm

    names: dict[str, tuple[Path, str]] = {}
    options: dict[str, dict | None] = {}
    for name, method in methods.items():
        path = best_artifact(method, task, profile) if method["kind"] != "baseline" else None
        if path is not None:
            settings = (method.get("best_feasible") or {}).get("runtime_options")  # e.g. the runtime's default
            names[name] = (path, json.dumps(settings, sort_keys=True))
            options[names[name][1]] = settings
    keys = list(dict.fromkeys(names.values()))  # a search's best is often its search-only best too: timed once
    if not keys:
        return 0
    paths = [path for path, _ in keys]
    runtime_options = [None, *(options[setting] for _, setting in keys)]
    pairs = [[0, index] for index in range(1, len(keys) + 1)]
    tolerance = CONFIRM_POLICY.settle_tolerance

    def window():
        return time_together(fp32, paths, task, profile, CONFIRM_POLICY, options=runtime_options, fresh=True)

    timed = windows_in_calm(window, FINAL_WINDOWS, FINAL_GAP_S, tolerance, pairs)
    test = score_artifacts([fp32, *paths], task, profile, "test", runtime_options)
    for method in methods.values():
        if method["kind"] == "baseline":
            method["test_accuracy"] = test[0]
    for name, key in names.items():
        index = keys.index(key) + 1
        pair = calm_windows(timed.measured, tolerance, [0, index])
        figure = Figure.across([timing.paired(0, index) for timing in pair.used])
        methods[name]["final"] = {"speedup": figure.speedup, "ci_low": figure.ci_low, "ci_high": figure.ci_high,
                                  "per_window": figure.per_window, "windows": len(pair.used),
                                  "windows_timed": len(pair.measured), "noisy": pair.noisy_windows > 0,
                                  "latency_ms": pair.used[-1].latencies[index].median_ms,
                                  "settled_share": pair.settled_share, "all_settled_share": timed.settled_share,
                                  "test_accuracy": test[index], "test_drop": test[0] - test[index]}  # fmt: skip
    return sum(timing.rounds for timing in timed.measured)


def add_one_click(results: dict[str, Any], names: list[str], fp32: Path, task, profile) -> None:
    """One-click methods a finished run did not have (e.g. a recipe found missing later), built and measured
    now into the run's work folder, so that the final round times them with everything else."""
    from experiments.benchmark_methods import one_click_methods

    builders = one_click_methods(profile, task)
    unknown = sorted(set(names) - set(builders))
    if unknown:
        print(f"error: no one-click method {', '.join(unknown)} for this model and device: choose from "
              f"{', '.join(builders)}", file=sys.stderr)  # fmt: skip
        raise SystemExit(2)
    bound = results["accuracy_bound"]
    for name in names:

        def work(name=name) -> dict[str, Any]:
            folder = fp32.parent.parent / name
            folder.mkdir(parents=True, exist_ok=True)
            path = builders[name](task, profile, folder, results["seed"])
            return {"points": [measured_point(path, task, profile, LABELS[name], fp32=fp32)], "added": True}

        method = run_method(name, "one-click", work, results["methods"])
        score_method(method, bound, results["fp32"]["accuracy"])


def retime(results: dict[str, Any], task, profile, add: list[str] | None = None) -> dict[str, Any]:
    """The final round of a finished run again, from its artifacts (one-click) and studies (searches); `add`:
    one-click methods built now and timed with them."""
    import optuna

    from autocompress.home import default_storage

    methods = results["methods"]
    searched = methods.get("autocompress", {}).get("study")
    for method in methods.values():
        study = method.get("study") or (searched if method["kind"] == "search-only" else None)
        if study is not None:
            method["_study"] = optuna.load_study(study_name=study, storage=default_storage())
    bests = [method["best_feasible"] or {} for method in methods.values()]
    artifacts = [Path(best["artifact"]) for best in bests if "artifact" in best]
    fp32 = artifacts[0].parent.parent / "fp32" / artifacts[0].name  # the run's workroot/<method>/model.<format>
    if add:
        add_one_click(results, add, fp32, task, profile)
    results["final_rounds"] = final_round(methods, fp32, task, profile)
    for method in methods.values():
        method.pop("_study", None)
    results["retimed"] = datetime.now().isoformat(timespec="seconds")
    results["retime_command"] = shlex.join(["python", "-m", "experiments.benchmark", *sys.argv[1:]])
    results["retime_commit"] = git_commit()
    results["headline"] = headline(results)
    return results


def benchmark(args: argparse.Namespace, task, profile) -> dict[str, Any]:
    from autocompress.compress.pipeline import build
    from autocompress.spaces.strategy import Strategy

    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    workroot = Path(os.environ["AUTOCOMPRESS_HOME"]) / "benchmark-artifacts" / f"{args.example}-{profile.name}-{stamp}"
    wanted = set(args.methods.split(",")) if args.methods else None
    methods: dict[str, Any] = {}
    fp32_path = build(task, Strategy(seed=args.seed), profile, workroot / "fp32").path

    def fp32() -> dict[str, Any]:
        return {"points": [measured_point(fp32_path, task, profile, "uncompressed")]}

    baseline = run_method("fp32", "baseline", fp32, methods)
    if baseline["error"]:
        raise RuntimeError(f"the fp32 baseline could not be measured: {baseline['error']}")
    reference = baseline["points"][0]
    bound = reference["accuracy"] - args.max_drop
    for name, builder in one_click_methods(profile, task).items():
        if wanted is None or name in wanted:

            def work(name=name, builder=builder) -> dict[str, Any]:
                folder = workroot / name
                folder.mkdir(parents=True, exist_ok=True)
                path = builder(task, profile, folder, args.seed)
                return {"points": [measured_point(path, task, profile, LABELS[name], fp32=fp32_path)]}

            run_method(name, "one-click", work, methods)
    if wanted is None or "runtime-default" in wanted:
        run_method("runtime-default", "one-click", lambda: runtime_default(fp32_path, task, profile), methods)
    for seed in args.seed_list:  # seeds outermost: a drift of the machine spreads over every method alike
        for name, (sampler, extra) in SEARCH_METHODS.items():
            if wanted is None or name in wanted:
                key = name if seed == args.seed_list[0] else f"{name}#s{seed}"
                kind = "random" if sampler == "random" else "search"
                search = lambda n=name, s=sampler, e=extra, d=seed: run_search_method(  # noqa: E731
                    n, s, e, task, profile, args, stamp, d)
                run_method(key, kind, search, methods)
    if "autocompress" in methods and "_study" in methods["autocompress"]:
        study = methods["autocompress"]["_study"]
        sampled = search_points(study, only_sampled=True)
        methods["autocompress-search-only"] = {"kind": "search-only", "error": None, "points": sampled, "_study": study,
                                               "confirmed": methods["autocompress"].get("confirmed", {}),
                                               "winner": methods["autocompress"].get("winner")}  # fmt: skip
    for method in methods.values():
        score_method(method, bound, reference["accuracy"])
    rounds = final_round(methods, fp32_path, task, profile)
    for method in methods.values():
        method.pop("_study", None)
    results = {
        "example": args.example,
        "device": profile.name,
        "runtime": profile.record.name,
        "metric_name": task.metric_name,
        "trials": None if args.budget_s else args.trials,
        "budget_s": args.budget_s,
        "seed": args.seed,
        "seeds": args.seed_list,
        "max_drop": args.max_drop,
        "accuracy_bound": bound,
        "command": shlex.join(["python", "-m", "experiments.benchmark", *sys.argv[1:]]),
        "commit": git_commit(),
        "date": datetime.now().isoformat(timespec="seconds"),
        "machine": machine_info() | {"threads": profile.threads, "batch_size": profile.batch_size},
        "fp32": {k: reference[k] for k in ("accuracy", "latency_ms", "latency_ci_ms", "size_bytes")}
        | {"test_accuracy": methods["fp32"].get("test_accuracy")},
        "final_rounds": rounds,
        "methods": methods,
    }
    results["headline"] = headline(results)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ["AUTOCOMPRESS_HOME"] = str(args.home.resolve())
    _quiet()
    from autocompress.config import ExperimentConfig, load_config
    from autocompress.errors import AutocompressError
    from autocompress.hardware.availability import usable_profile
    from autocompress.tasks import load_task

    try:
        profile = usable_profile(args.device)
        if args.config is not None:
            config = load_config(args.config).model_copy(update={"device": args.device})
            args.example = config.name or args.config.stem
        else:
            config = ExperimentConfig(example=args.example, device=args.device)
        task = load_task(config)
    except AutocompressError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.retime is not None:
        results = retime(json.loads(args.retime.read_text()), task, profile, args.add)
        stem = args.retime.with_suffix("")
    else:
        results = benchmark(args, task, profile)
        stem = args.out / f"{args.example}-{profile.name}"
    write_json(results, Path(f"{stem}.json"))
    text = markdown(results)
    Path(f"{stem}.md").write_text(text)
    plot(results, Path(f"{stem}.png"))
    print(text)
    print(f"wrote {stem}.json, {stem}.md, {stem}.png", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
