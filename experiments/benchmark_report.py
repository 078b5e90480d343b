"""Scoring and writing a benchmark run: feasibility, hypervolume, the results JSON, the Markdown table, the plot.

Every point is judged against this run's fp32 measurement: feasible = metric >= fp32 metric - max_drop
(absolute), and `speedup_vs_fp32` = fp32 latency / latency. Search points also keep `speedup` against their
own study's fp32 baseline (measured separately, on the same machine) and whether their study counted them
feasible.

Hypervolume (2-D, both axes maximised), over the points that are feasible and faster than fp32:
x = 1 - latency / fp32_latency, y = metric - bound, reference point (0, 0) = (fp32 latency, the bound);
HV = area of the union of the rectangles [0, x] x [0, y]. A dominated point adds nothing, and a point at or
below the bound or no faster than fp32 adds nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HV_FORMULA = (
    "HV = area dominated by the points with metric >= bound and latency < fp32 latency, in the plane "
    "x = 1 - latency / fp32_latency, y = metric - bound, above the reference point (0, 0) = (fp32 latency, bound)"
)
TARGET = 1.25


def hypervolume(points: list[tuple[float, float]], bound: float, fp32_latency_ms: float) -> float:
    """Area dominated by (metric, latency_ms) points in the feasible, faster-than-fp32 region (see module doc)."""
    scaled = [(1 - latency / fp32_latency_ms, metric - bound) for metric, latency in points]
    scaled = sorted(((x, y) for x, y in scaled if x > 0 and y > 0), reverse=True)
    area, best_y = 0.0, 0.0
    for x, y in scaled:  # widest first: each point adds the strip above the best metric seen so far
        if y > best_y:
            area += x * (y - best_y)
            best_y = y
    return area


def is_uncompressed(point: dict[str, Any]) -> bool:
    """The fp32 model itself (the baseline, or a search's "no compression" warm start): whatever its measured
    latency, it is not a compression result, so it never counts as a speedup or towards a hypervolume."""
    label = point.get("label", "")
    return label == "uncompressed" or label.endswith("(no compression)")


def score_method(method: dict[str, Any], fp32: dict[str, Any], bound: float) -> dict[str, Any]:
    """Adds feasible / speedup_vs_fp32 to each point, then best_feasible_* and hypervolume to the method."""
    for point in method["points"]:
        point["speedup_vs_fp32"] = fp32["latency_ms"] / point["latency_ms"]
        point["feasible"] = point["accuracy"] >= bound
    compressed = [p for p in method["points"] if not is_uncompressed(p)]
    feasible = [p for p in compressed if p["feasible"]]
    best = max(feasible, key=lambda p: p["speedup_vs_fp32"], default=None)
    method["best_feasible_speedup"] = best["speedup_vs_fp32"] if best else None
    method["best_feasible_speedup_own_baseline"] = best.get("speedup") if best else None
    method["best_feasible"] = best
    front = [(p["accuracy"], p["latency_ms"]) for p in compressed]
    method["hypervolume"] = hypervolume(front, bound, fp32["latency_ms"])
    return method


def best_of(results: dict[str, Any], kind: str) -> tuple[str | None, float | None]:
    """The method of a kind with the highest best feasible speedup (vs this run's fp32)."""
    candidates = [
        (m["best_feasible_speedup"], name)
        for name, m in results["methods"].items()
        if m["kind"] == kind and m["best_feasible_speedup"] is not None
    ]
    if not candidates:
        return None, None
    speedup, name = max(candidates)
    return name, speedup


def headline(results: dict[str, Any]) -> dict[str, Any]:
    """Search vs best one-click (ratio of best feasible speedups vs this run's fp32 = ratio of their latencies)."""
    _, search = best_of(results, "autocompress")
    one_click_name, one_click = best_of(results, "one-click")
    reference_name, reference = (one_click_name, one_click) if one_click is not None else ("fp32", 1.0)
    methods = results["methods"]
    return {
        "search_vs_best_one_click": search / reference if search is not None else None,
        "best_one_click": reference_name,
        "target": TARGET,
        "search_hypervolume": methods.get("autocompress", {}).get("hypervolume"),
        "random_hypervolume": methods.get("random", {}).get("hypervolume"),
    }


def drift_note(fp32: dict[str, Any]) -> str:
    """How far the machine's speed moved during the run: speedups closer than this are not distinguishable."""
    end = fp32.get("latency_ms_end")
    if not end:
        return "drift not measured"
    drift = end / fp32["latency_ms"] - 1
    warning = "; speedups within this of each other are noise" if abs(drift) > 0.05 else ""
    return f"drift {drift:+.0%} over the run{warning}"


def write_json(results: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, default=str))


def _fmt(value: float | None, pattern: str, missing: str = "—") -> str:
    return missing if value is None else format(value, pattern)


def markdown(results: dict[str, Any]) -> str:
    metric = results.get("metric_name", "accuracy")
    fp32, machine = results["fp32"], results["machine"]
    lines = [
        f"# Benchmark: {results['example']} on {results['device']}",
        "",
        f"- command: `{results['command']}`",
        f"- date: {results['date']}; trials per search: {results['trials']}; seed {results['seed']}",
        f"- machine: {machine.get('cpu')}, {machine.get('cores')} cores, {machine.get('os')}, "
        f"Python {machine.get('python')}",
        "- runtimes: " + ", ".join(f"{k} {v}" for k, v in machine.get("versions", {}).items()),
        f"- fp32: {metric} {fp32['accuracy']:.4f}, latency {fp32['latency_ms']:.3f} ms, "
        f"size {fp32['size_bytes'] / 1e6:.2f} MB; {metric} bound = fp32 - {results['max_drop']} = "
        f"{results['accuracy_bound']:.4f}",
        f"- fp32 latency re-measured after all methods: {_fmt(fp32.get('latency_ms_end'), '.3f')} ms "
        f"({drift_note(fp32)})",
        "- speedups below are against this run's fp32 latency (the headline too); search methods also store "
        "speedups against their own study's fp32 baseline in the JSON",
        "",
        f"| method | kind | points | best feasible speedup | its {metric} | its latency ms [95% CI] | its size MB "
        "| hypervolume | wall s | note |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, m in results["methods"].items():
        best = m.get("best_feasible") or {}
        ci = best.get("latency_ci_ms")
        latency = _fmt(best.get("latency_ms"), ".3f") + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
        size = _fmt(best["size_bytes"] / 1e6 if best.get("size_bytes") else None, ".2f")
        note = m.get("error") or ""
        if best.get("latency_noisy"):
            note = (note + "; " if note else "") + "noisy latency"
        if m.get("failed_trials"):
            note = (note + "; " if note else "") + f"{m['failed_trials']} failed trials"
        speedup = _fmt(m["best_feasible_speedup"], ".2f") + ("x" if best else "")
        lines.append(
            f"| {name} | {m['kind']} | {len(m['points'])} | {speedup} "
            f"| {_fmt(best.get('accuracy'), '.4f')} | {latency} | {size} | {m['hypervolume']:.4f} "
            f"| {m['wall_s']:.1f} | {note.replace('|', '/')[:160]} |"
        )
    head = results["headline"]
    value = head["search_vs_best_one_click"]
    ratio = f"{value:.2f}x" if value is not None else "n/a (no feasible search point)"
    versus = head["best_one_click"] if head["best_one_click"] != "fp32" else "fp32 (no feasible one-click point)"
    lines += [
        "",
        f"search vs best one-click: {ratio} (target >= {head['target']:.2f}x; best one-click: {versus})",
        f"search HV vs random HV: {_fmt(head['search_hypervolume'], '.4f')} "
        f"vs {_fmt(head['random_hypervolume'], '.4f')}",
        "",
        f"Feasible: {metric} >= {results['accuracy_bound']:.4f} (this run's fp32 minus {results['max_drop']}, "
        f"absolute). {HV_FORMULA}; 2-D sweep over the points sorted by x.",
        "",
    ]
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> None:
    """Pareto plot: latency (ms) against the metric, one marker per method, fp32 and the bound marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric, fp32, bound = results.get("metric_name", "accuracy"), results["fp32"], results["accuracy_bound"]
    markers = "os^Dv<>PXh*p"
    points = [p for m in results["methods"].values() for p in m["points"]]
    top = max([p["accuracy"] for p in points] + [fp32["accuracy"]])
    floor = min(bound - max(0.05, 3 * results["max_drop"]), fp32["accuracy"] - 0.02)
    below = sum(p["accuracy"] < floor for p in points)
    fig, ax = plt.subplots(figsize=(8, 5.5))
    for index, (name, m) in enumerate(results["methods"].items()):
        if not m["points"] or m["kind"] == "baseline":
            continue
        lat = [p["latency_ms"] for p in m["points"]]
        acc = [max(p["accuracy"], floor) for p in m["points"]]
        colour = f"C{index % 10}"
        filled = [colour if p["feasible"] else "none" for p in m["points"]]
        ax.scatter(lat, acc, marker=markers[index % len(markers)], facecolors=filled, edgecolors=colour, s=45,
                   label=f"{name} ({m['kind']})")  # fmt: skip
    ax.scatter([fp32["latency_ms"]], [fp32["accuracy"]], marker="*", s=260, facecolors="none", edgecolors="black",
               linewidths=1.2, label="fp32", zorder=5)  # fmt: skip
    ax.axhline(bound, color="grey", linestyle="--", linewidth=1, label=f"{metric} bound {bound:.4f}")
    ax.axvline(fp32["latency_ms"], color="grey", linestyle=":", linewidth=1)
    ax.set_ylim(floor - 0.005, top + 0.005)
    ax.set_xscale("log")
    ax.set_xlabel("latency, ms (median at the profile batch size; log scale)")
    ax.set_ylabel(metric)
    note = f"; {below} point(s) below {floor:.2f} drawn at the bottom edge" if below else ""
    ax.set_title(
        f"{results['example']} on {results['device']}, {results['trials']} trials per search\nfilled = feasible{note}",
        fontsize=10,
    )
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def summary(all_results: list[dict[str, Any]]) -> str:
    """One row per (example, device): fp32, best one-click, random and search, and the two target checks."""
    lines = [
        "| example | device | trials | fp32 ms | best one-click (speedup) | random best | search best "
        "| search / one-click (target >= 1.25) | HV search vs random |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for results in all_results:
        head, methods = results["headline"], results["methods"]
        one_click, one_click_speedup = best_of(results, "one-click")
        ratio = head["search_vs_best_one_click"]
        lines.append(
            f"| {results['example']} | {results['device']} | {results['trials']} | {results['fp32']['latency_ms']:.3f} "
            f"| {one_click or '—'} ({_fmt(one_click_speedup, '.2f')}x) "
            f"| {_fmt(methods.get('random', {}).get('best_feasible_speedup'), '.2f')}x "
            f"| {_fmt(methods.get('autocompress', {}).get('best_feasible_speedup'), '.2f')}x "
            f"| {_fmt(ratio, '.2f')}x | {_fmt(head['search_hypervolume'], '.4f')} vs "
            f"{_fmt(head['random_hypervolume'], '.4f')} |"
        )
    return "\n".join(lines) + "\n"


def rescore(path: Path) -> dict[str, Any]:
    """Score a results JSON again with this module (same as at the end of a run) and rewrite its MD and PNG."""
    results = json.loads(path.read_text())
    for method in results["methods"].values():
        score_method(method, results["fp32"], results["accuracy_bound"])
    results["headline"] = headline(results)
    write_json(results, path)
    path.with_suffix(".md").write_text(markdown(results))
    plot(results, path.with_suffix(".png"))
    return results


if __name__ == "__main__":  # python -m experiments.benchmark_report [--rescore] results/*.json: cross-pair summary
    import sys

    names = [name for name in sys.argv[1:] if name != "--rescore"]
    if "--rescore" in sys.argv[1:]:
        loaded = [rescore(Path(name)) for name in names]
    else:
        loaded = [json.loads(Path(name).read_text()) for name in names]
    print(summary(loaded), end="")
