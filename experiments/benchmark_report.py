"""Scoring and writing a benchmark run: feasibility, hypervolume, the results JSON, the Markdown table, the plot.

Every speedup here is a paired ratio against fp32: each point was timed in alternating rounds with the fp32
artifact in one window (`speedup_vs_fp32`), and the best point of every method was timed once more, all methods
and fp32 together in the same interleaved rounds, in windows spread in time (`final`: the geometric mean of the
window medians with a t-interval over the windows, the figure the headline compares). A latency divided by an fp32
latency measured at another moment is never used: this machine drifts by 10-30%. Every method chooses on the
validation split; the final artifacts are also scored once on the held-out test split, which the tables show
beside it.

Feasible = metric >= fp32 metric - max_drop (absolute). The uncompressed model (the baseline, or a search's
"no compression" warm start) is never a result.

Hypervolume (2-D, both axes maximised), over the points that are feasible and faster than fp32:
x = 1 - 1 / speedup_vs_fp32 (the fraction of fp32's latency saved), y = min(metric, fp32 metric) - bound,
reference point (0, 0); HV = area of the union of the rectangles [0, x] x [0, y]. A dominated point adds nothing.
The metric counts up to fp32's, as in the search's own objective (autocompress/search/results.py): a compressed
model scoring above fp32 does so by a few validation samples of luck (one digits image is 0.0019, a fifth of the
allowed drop), and uncapped, that luck outweighed every difference in speed between the methods.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

HV_FORMULA = (
    "HV = area dominated by the feasible points faster than fp32, in the plane x = 1 - 1/speedup (paired, vs fp32), "
    "y = min(metric, fp32 metric) - bound, above the reference point (0, 0) = (fp32 speed, bound)"
)
TARGET = 1.25
SEARCH_KINDS = ("autocompress", "search", "search-only", "random")


def hypervolume(points: list[tuple[float, float]], bound: float, ceiling: float = float("inf")) -> float:
    """Area dominated by (metric, speedup) points in the feasible, faster-than-fp32 region, the metric counted up
    to `ceiling` (fp32's: see module doc)."""
    scaled = [(1 - 1 / speedup, min(metric, ceiling) - bound) for metric, speedup in points if speedup > 0]
    scaled = sorted(((x, y) for x, y in scaled if x > 0 and y > 0), reverse=True)
    area, best_y = 0.0, 0.0
    for x, y in scaled:  # widest first: each point adds the strip above the best metric seen so far
        if y > best_y:
            area += x * (y - best_y)
            best_y = y
    return area


def is_uncompressed(point: dict[str, Any]) -> bool:
    """The fp32 model itself (the baseline, or a search's "no compression" warm start)."""
    return point.get("uncompressed", False) or point.get("label") == "uncompressed"


def score_method(method: dict[str, Any], bound: float, ceiling: float = float("inf")) -> dict[str, Any]:
    """Adds `feasible` to each point, then best_feasible and hypervolume to the method. A search's best is what
    its export gives a user: the winner its confirmation chose (`winner`: the fastest re-timed within the bound on
    the test split; None if none was, as the export then writes nothing); from results written before `winner`, the
    fastest re-timed (`confirmed`: trial -> confirmed speedup); without a confirmation, the best paired speedup."""
    for point in method["points"]:
        point["feasible"] = point["accuracy"] >= bound
    compressed = [p for p in method["points"] if not is_uncompressed(p)]
    feasible = [p for p in compressed if p["feasible"]]
    confirmed = method.get("confirmed") or {}
    re_timed = [p for p in feasible if str(p.get("trial")) in confirmed]
    if "winner" in method and confirmed:  # None: no candidate held on test, and the export wrote nothing
        best = next((p for p in feasible if str(p.get("trial")) == method["winner"]), None)
    elif re_timed:
        best = max(re_timed, key=lambda p: confirmed[str(p["trial"])])
    else:
        best = max(feasible, key=lambda p: p["speedup_vs_fp32"], default=None)
    method["best_feasible"] = best
    method["best_feasible_speedup"] = best["speedup_vs_fp32"] if best else None
    method["hypervolume"] = hypervolume([(p["accuracy"], p["speedup_vs_fp32"]) for p in compressed], bound, ceiling)
    return method


def final_of(method: dict[str, Any]) -> float | None:
    """The method's best point as re-timed with every other method and fp32 together (None: nothing to time)."""
    final = method.get("final")
    return final["speedup"] if final else None


def best_of(results: dict[str, Any], kind: str) -> tuple[str | None, float | None]:
    """The method of a kind with the highest final (interleaved) speedup."""
    candidates = [
        (final_of(m), name) for name, m in results["methods"].items() if m["kind"] == kind and final_of(m) is not None
    ]
    if not candidates:
        return None, None
    speedup, name = max(candidates)
    return name, speedup


def base_name(name: str) -> str:
    """`autocompress#s1` (the same method, another seed) -> `autocompress`."""
    return name.split("#", 1)[0]


def across_seeds(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per method, its final speedups over the seeds it ran with: median, spread, and how many were noisy."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for name, method in results["methods"].items():
        grouped.setdefault(base_name(name), []).append(method)
    summary = {}
    for name, runs in grouped.items():
        finals = [final_of(run) for run in runs]
        known = sorted(value for value in finals if value is not None)
        summary[name] = {
            "seeds": len(runs),
            "finals": finals,
            "median": statistics.median(known) if known else None,
            "min": known[0] if known else None,
            "max": known[-1] if known else None,
            "noisy": sum(bool((run.get("final") or {}).get("noisy")) for run in runs),
            "test": [(run.get("final") or {}).get("test_accuracy") for run in runs],
            "hypervolumes": [run.get("hypervolume") for run in runs],
            "trials_run": [run.get("trials_run") for run in runs],
            "elastic_train_s": [run.get("elastic_train_s") for run in runs],
        }
    return summary


def headline(results: dict[str, Any]) -> dict[str, Any]:
    """Search vs best one-click, on the final interleaved speedups (medians over seeds where there are several);
    hypervolumes of the search, its ablations and random search."""
    methods = results["methods"]
    one_click_name, one_click = best_of(results, "one-click")
    reference_name, reference = (one_click_name, one_click) if one_click is not None else ("fp32", 1.0)
    seeds = across_seeds(results)
    search = (seeds.get("autocompress") or {}).get("median")
    search_only = final_of(methods.get("autocompress-search-only", {}))
    return {
        "search_vs_best_one_click": search / reference if search is not None else None,
        "search_only_vs_best_one_click": search_only / reference if search_only is not None else None,
        "best_one_click": reference_name,
        "target": TARGET,
        "search_hypervolume": methods.get("autocompress", {}).get("hypervolume"),
        "search_only_hypervolume": methods.get("autocompress-search-only", {}).get("hypervolume"),
        "random_hypervolume": methods.get("random", {}).get("hypervolume"),
        "seeds": seeds,
    }


def write_json(results: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, default=str))


def _fmt(value: float | None, pattern: str, missing: str = "—") -> str:
    return missing if value is None else format(value, pattern)


def _times(value: float | None) -> str:
    """A speedup as `2.17x`, or `—` when there is none (not `—x`)."""
    return _fmt(value, ".2f") + ("x" if value is not None else "")


def _final_text(method: dict[str, Any]) -> str:
    final = method.get("final")
    if not final:
        return "—"
    windows = f" ({final['windows']} windows)" if final.get("windows", 1) > 1 else ""
    return f"{final['speedup']:.2f}x [{final['ci_low']:.2f}, {final['ci_high']:.2f}]{windows}"


def _test_text(method: dict[str, Any]) -> str:
    """The final artifact's metric on the held-out test split, and its drop from fp32's there."""
    final = method.get("final") or {}
    if final.get("test_accuracy") is None:
        return "—"
    return f"{final['test_accuracy']:.4f} ({final['test_drop']:+.4f})"


def markdown(results: dict[str, Any]) -> str:
    metric = results.get("metric_name", "accuracy")
    fp32, machine = results["fp32"], results["machine"]
    rounds = results.get("final_rounds")
    lines = [
        f"# Benchmark: {results['example']} on {results['device']}",
        "",
        f"- command: `{results['command']}`",
        f"- commit: {results.get('commit', 'unknown')}",
        f"- date: {results['date']}; "
        + (
            f"wall-clock budget per search: {results['budget_s']:.0f} s (every build counted)"
            if results.get("budget_s")
            else f"trials per search: {results['trials']}"
        )
        + f"; seeds {results.get('seeds', [results['seed']])}"
        + (f"; final round timed again {results['retimed']} (`--retime`)" if results.get("retimed") else "")
        + (f", commit {results['retime_commit'][:7]}: `{results['retime_command']}`"
           if results.get("retime_command") else ""),
        f"- machine: {machine.get('cpu')} ({' '.join(machine.get('isa', ['ISA not recorded']))}), "
        f"{machine.get('cores')} cores, {machine.get('os')}, Python {machine.get('python')}",
        "- runtimes: " + ", ".join(f"{k} {v}" for k, v in machine.get("versions", {}).items()),
        f"- fp32: {metric} {fp32['accuracy']:.4f}, latency {fp32['latency_ms']:.3f} ms (alone, for scale), "
        f"size {fp32['size_bytes'] / 1e6:.2f} MB; {metric} bound = fp32 - {results['max_drop']} = "
        f"{results['accuracy_bound']:.4f} (validation)"
        + (f"; fp32's test {metric} {fp32['test_accuracy']:.4f}" if fp32.get("test_accuracy") is not None else ""),
        "- speedups are paired ratios against fp32: `best` as the point was measured (alternating with fp32 in "
        f"its own window), `final` = every method's best re-timed together with fp32 in {rounds or '?'} "
        "interleaved rounds (the headline uses `final`; where it says so, over windows spread in time)",
        "",
        f"| method | kind | points | best feasible speedup | final speedup [95% CI] | its {metric} (validation) "
        f"| its test {metric} (drop) | its size MB | hypervolume | wall s | note |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, m in results["methods"].items():
        best = m.get("best_feasible") or {}
        size = _fmt(best["size_bytes"] / 1e6 if best.get("size_bytes") else None, ".2f")
        notes = [m.get("error") or ""]
        if best.get("latency_noisy"):
            notes.append("noisy latency")
        if (m.get("final") or {}).get("noisy"):
            notes.append(f"final noisy ({m['final']['settled_share']:.0%} of rounds settled)")
        if m.get("failed_trials"):
            notes.append(f"{m['failed_trials']} failed trials")
        if best.get("label") and m["kind"] in SEARCH_KINDS:
            notes.append(f"best: {best['label']}")
        note = "; ".join(n for n in notes if n)
        speedup = _fmt(m.get("best_feasible_speedup"), ".2f") + ("x" if best else "")
        lines.append(
            f"| {name} | {m['kind']} | {len(m['points'])} | {speedup} | {_final_text(m)} "
            f"| {_fmt(best.get('accuracy'), '.4f')} | {_test_text(m)} | {size} | {m['hypervolume']:.4f} "
            f"| {m.get('wall_s', 0.0):.1f} | {note.replace('|', '/')[:160]} |"
        )
    head = results["headline"]
    versus = head["best_one_click"] if head["best_one_click"] != "fp32" else "fp32 (no feasible one-click point)"
    seeds = head.get("seeds") or {}
    if any(item["seeds"] > 1 for item in seeds.values()):
        lines += ["", "| method | seeds | final speedup median [min, max] | noisy finals | hypervolumes | trials run |",
                  "|---|---|---|---|---|---|"]  # fmt: skip
        for name, item in seeds.items():
            if item["seeds"] > 1:
                hv = " / ".join(_fmt(value, ".4f") for value in item["hypervolumes"])
                lines.append(f"| {name} | {item['seeds']} | {_times(item['median'])} [{_times(item['min'])}, "
                             f"{_times(item['max'])}] | {item['noisy']} | {hv} | {item['trials_run']} |")  # fmt: skip
    lines += [
        "",
        f"search vs best one-click (final speedups): {_times(head['search_vs_best_one_click'])} with warm "
        f"starts, {_times(head['search_only_vs_best_one_click'])} without (target >= {head['target']:.2f}x; "
        f"best one-click: {versus})",
        f"hypervolume: search {_fmt(head['search_hypervolume'], '.4f')}, search without its warm starts "
        f"{_fmt(head['search_only_hypervolume'], '.4f')}, random {_fmt(head['random_hypervolume'], '.4f')}",
        "",
        f"Feasible: {metric} >= {results['accuracy_bound']:.4f} (this run's fp32 minus {results['max_drop']}, "
        f"absolute). {HV_FORMULA}. `autocompress-search-only` is the same study as `autocompress` without the "
        "trials it enqueued by hand (no compression, uniform int8, uniform pruning with and without int8).",
        "",
    ]
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> None:
    """Pareto plot: paired speedup over fp32 against the metric, one marker per method, the bound marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric, fp32, bound = results.get("metric_name", "accuracy"), results["fp32"], results["accuracy_bound"]
    markers = "os^Dv<>PXh*p"
    shown = {
        n: m for n, m in results["methods"].items() if m["points"] and m["kind"] not in ("baseline", "search-only")
    }
    points = [p for m in shown.values() for p in m["points"]]
    top = max([p["accuracy"] for p in points] + [fp32["accuracy"]])
    floor = min(bound - max(0.05, 3 * results["max_drop"]), fp32["accuracy"] - 0.02)
    below = sum(p["accuracy"] < floor for p in points)
    fig, ax = plt.subplots(figsize=(8, 5.5))
    for index, (name, m) in enumerate(shown.items()):
        speed = [p["speedup_vs_fp32"] for p in m["points"]]
        acc = [max(p["accuracy"], floor) for p in m["points"]]
        colour = f"C{index % 10}"
        filled = [colour if p["feasible"] else "none" for p in m["points"]]
        ax.scatter(speed, acc, marker=markers[index % len(markers)], facecolors=filled, edgecolors=colour, s=45,
                   label=f"{name} ({m['kind']})")  # fmt: skip
    ax.scatter([1.0], [fp32["accuracy"]], marker="*", s=260, facecolors="none", edgecolors="black", linewidths=1.2,
               label="fp32", zorder=5)  # fmt: skip
    ax.axhline(bound, color="grey", linestyle="--", linewidth=1, label=f"{metric} bound {bound:.4f}")
    ax.axvline(1.0, color="grey", linestyle=":", linewidth=1)
    ax.set_ylim(floor - 0.005, top + 0.005)
    ax.set_xscale("log")
    ax.set_xlabel("speedup over fp32 (paired ratio, log scale; right is faster)")
    ax.set_ylabel(metric)
    note = f"; {below} point(s) below {floor:.2f} drawn at the bottom edge" if below else ""
    budget = f"{results['budget_s']:.0f} s" if results.get("budget_s") else f"{results['trials']} trials"
    ax.set_title(
        f"{results['example']} on {results['device']}, {budget} per search\nfilled = feasible{note}",
        fontsize=10,
    )
    ax.legend(fontsize=8, loc="lower left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def rescore(path: Path) -> dict[str, Any]:
    """Score a results JSON again with this module (same as at the end of a run) and rewrite its MD and PNG."""
    results = json.loads(path.read_text())
    for method in results["methods"].values():
        score_method(method, results["accuracy_bound"], results["fp32"]["accuracy"])
    results["headline"] = headline(results)
    write_json(results, path)
    path.with_suffix(".md").write_text(markdown(results))
    plot(results, path.with_suffix(".png"))
    return results


USAGE = (
    "usage: python -m experiments.benchmark_report [--rescore] RESULTS.json ... (a summary across runs) | "
    "--readme README.md (regenerate its tables from the committed results)"
)

if __name__ == "__main__":
    import sys

    missing = [name for name in sys.argv[1:] if not name.startswith("--") and not Path(name).is_file()]
    if not sys.argv[1:] or {"-h", "--help"} & set(sys.argv[1:]) or missing:
        print(f"no such file: {missing[0]}" if missing else USAGE, file=sys.stderr)
        sys.exit(0 if {"-h", "--help"} & set(sys.argv[1:]) else 2)
    from experiments.benchmark_readme import readme_table, summary

    if sys.argv[1:2] == ["--readme"]:  # python -m experiments.benchmark_report --readme README.md
        readme_path = Path(sys.argv[2])
        readme_path.write_text(readme_table(readme_path.read_text(), readme_path.resolve().parent))
        sys.exit(0)
    names = [name for name in sys.argv[1:] if name != "--rescore"]
    if "--rescore" in sys.argv[1:]:
        loaded = [rescore(Path(name)) for name in names]
    else:
        loaded = [json.loads(Path(name).read_text()) for name in names]
    print(summary(loaded), end="")
