"""README's benchmark tables, generated from the committed results files so that no figure there is typed by hand.

    python -m experiments.benchmark_report --readme README.md

A `<!-- benchmark table from: PATH[=LABEL] ... -->` marker gets one row per results file (the search against the
best one-click recipe, random search and the runtime's default, medians over the seeds); an
`<!-- ablation table from: ... -->` marker one row per file against the search's ablations; a
`<!-- seeds table from: PATH -->` marker gets one row per method of that multi-seed run.
"""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path
from typing import Any

from experiments.benchmark_report import SEARCH_KINDS, _times, across_seeds, base_name, best_of, final_of


def _spread(item: dict[str, Any] | None) -> str:
    """A method's median final speedup over its seeds, with the range where there are several, and how many seeds
    had one at all (a seed whose search found nothing within the bound has no final)."""
    if not item or item["median"] is None:
        return "—"
    known = sum(value is not None for value in item.get("finals", [])) if "finals" in item else item["seeds"]
    spread = f" [{_times(item['min'])}, {_times(item['max'])}]" if known > 1 else ""
    short = f" ({known} of {item['seeds']} seeds within the bound)" if known < item["seeds"] else ""
    return _times(item["median"]) + spread + short + _noisy(item.get("noisy", 0), known)


def _noisy(count: int, of: int) -> str:
    """Figures timed in too few settled rounds are marked wherever they are quoted (issue 26): never a headline
    without it."""
    return "" if not count else " (noisy)" if of == 1 else f" ({count} of {of} noisy)"


def _noisy_final(results: dict[str, Any], name: str | None) -> str:
    """' (noisy)' where one method's final figure was timed in too few settled rounds."""
    final = (results["methods"].get(name) or {}).get("final") or {} if name else {}
    return _noisy(bool(final.get("noisy")), 1)


def _ratio(numerator: float | None, denominator: float | None) -> str:
    return _times(numerator / denominator) if numerator is not None and denominator else "—"


def _where(results: dict[str, Any], label: str) -> tuple[str, str]:
    """A row's device (with its label, e.g. the CPU) and its budget per search."""
    device = results["device"] + (f", {label}" if label else "")
    return device, f"{results['budget_s'] / 60:.0f} min" if results.get("budget_s") else f"{results['trials']} trials"


def summary(all_results: list[dict[str, Any]], labels: list[str] | None = None) -> str:
    """One row per results file: the search's median final speedup over its seeds against the best one-click
    recipe (the target), random search and the uncompressed model under the runtime's default settings (what a
    user who does nothing runs); the search's median drop on the held-out test split. `labels` name each file's
    row beside its device (e.g. the CPU it ran on)."""
    lines = [
        "| example | device | budget per search | seeds | best one-click (final) | runtime default (final) "
        "| random, median [min, max] | autocompress, median [min, max] | autocompress / best one-click "
        "(target >= 1.25) | autocompress / random | autocompress / runtime default | autocompress test drop "
        "(median) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for index, results in enumerate(all_results):
        seeds = across_seeds(results)
        search, random = seeds.get("autocompress"), seeds.get("random")
        search_median = search["median"] if search else None
        one_click, one_click_speedup = best_of(results, "one-click")
        default = final_of(results["methods"].get("runtime-default", {}))
        device, budget = _where(results, labels[index] if labels else "")
        fp32_test = (results.get("fp32") or {}).get("test_accuracy")
        tests = [value for value in (search or {}).get("test", []) if value is not None]
        drop = f"{fp32_test - statistics.median(tests):+.4f}" if tests and fp32_test is not None else "—"
        lines.append(
            f"| {results['example']} | {device} | {budget} | {search['seeds'] if search else 0} "
            f"| {one_click or '—'} ({_times(one_click_speedup)}){_noisy_final(results, one_click)} "
            f"| {_times(default) + _noisy_final(results, 'runtime-default') if default is not None else '= fp32 here'} "
            f"| {_spread(random)} | {_spread(search)} "
            f"| {_ratio(search_median, one_click_speedup)} | {_ratio(search_median, random and random['median'])} "
            f"| {_ratio(search_median, default or 1.0)} | {drop} |"
        )
    return "\n".join(lines) + "\n"


ABLATIONS = (("autocompress-no-warm-starts", "without warm starts"), ("autocompress-no-sensitivity",
              "without the sensitivity stage"))  # fmt: skip


def ablations(all_results: list[dict[str, Any]], labels: list[str] | None = None) -> str:
    """One row per results file: the search against its ablations, each its own study at the same budget and
    seeds (medians over the seeds; the ratio is the search's median over the ablation's: above 1, the part
    removed paid)."""
    header = "| example | device | budget per search | seeds | autocompress, median [min, max] "
    rule = "|---|---|---|---|---|"
    for _, label in ABLATIONS:
        header += f"| {label}, median [min, max] | autocompress / {label} "
        rule += "---|---|"
    lines = [header + "|", rule]
    for index, results in enumerate(all_results):
        seeds = across_seeds(results)
        search = seeds.get("autocompress")
        device, budget = _where(results, labels[index] if labels else "")
        row = f"| {results['example']} | {device} | {budget} | {search['seeds'] if search else 0} | {_spread(search)} "
        for name, _ in ABLATIONS:
            ablated = seeds.get(name)
            row += f"| {_spread(ablated)} | {_ratio(search and search['median'], ablated and ablated['median'])} "
        lines.append(row + "|")
    return "\n".join(lines) + "\n"


def _why_none(name: str, method: dict[str, Any]) -> str:
    """Why a method has no final speedup: the runtime's default is fp32 itself here, it failed, or nothing it
    built held the bound."""
    if name == "runtime-default":
        return "— (fp32 here)"
    return "— (failed)" if method.get("error") else "— (past the bound)"


def seeds_table(results: dict[str, Any]) -> str:
    """One row per method of a multi-seed run: its final speedup's median and range over the seeds, and its final
    artifacts' metric on the held-out test split (what README quotes; fp32 and search-only left out)."""
    metric = results.get("metric_name", "accuracy")
    lines = [f"| method | kind | seeds | final speedup, median [min, max] | test {metric}, median [min, max] "
             "| noisy finals | trials run |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    kinds = {base_name(name): method["kind"] for name, method in results["methods"].items()}
    for name, item in results["headline"]["seeds"].items():
        if kinds[name] in ("baseline", "search-only"):
            continue
        tests = sorted(value for value in item.get("test", []) if value is not None)
        test = "—" if not tests else f"{statistics.median(tests):.4f}" + (
            f" [{tests[0]:.4f}, {tests[-1]:.4f}]" if len(tests) > 1 else "")  # fmt: skip
        trainings = item.get("elastic_train_s") or [None] * item["seeds"]  # the one-off training, where any
        trials = (
            "—"
            if kinds[name] not in SEARCH_KINDS
            else " / ".join(
                str(n) + (f" (+ {train:.0f} s training)" if train else "")
                for n, train in zip(item["trials_run"], trainings, strict=True)
            )
        )
        speedup = _spread(item) if item["median"] is not None else _why_none(name, results["methods"][name])
        lines.append(f"| {name} | {kinds[name]} | {item['seeds']} | {speedup} | {test} | {item['noisy']} "
                     f"| {trials} |")  # fmt: skip
    return "\n".join(lines) + "\n"


SEEDS_TABLE = re.compile(
    r"<!-- seeds table from: (?P<file>\S+) -->\n(?P<table>.*?)<!-- end of seeds table -->", re.DOTALL
)
README_TABLE = re.compile(
    r"<!-- benchmark table from: (?P<files>[^>]*?) -->\n(?P<table>.*?)<!-- end of benchmark table -->", re.DOTALL
)
ABLATION_TABLE = re.compile(
    r"<!-- ablation table from: (?P<files>[^>]*?) -->\n(?P<table>.*?)<!-- end of ablation table -->", re.DOTALL
)


def _files(found: re.Match[str], root: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The results files a marker names (`path` or `path=label`, relative to `root`) and their labels."""
    entries = [entry.partition("=") for entry in found["files"].split()]
    loaded = [json.loads((root / path).read_text()) for path, _, _ in entries]
    return loaded, [label.replace("_", " ") for _, _, label in entries]


def readme_table(readme: str, root: Path) -> str:
    """README with its benchmark tables generated again from the results files their markers name (`path` or
    `path=label`, paths relative to `root`)."""
    match = README_TABLE.search(readme)
    if match is None:
        raise ValueError("README has no '<!-- benchmark table from: ... -->' marker")
    readme = readme[: match.start("table")] + summary(*_files(match, root)) + readme[match.end("table") :]
    if found := ABLATION_TABLE.search(readme):
        readme = readme[: found.start("table")] + ablations(*_files(found, root)) + readme[found.end("table") :]
    for found in reversed(list(SEEDS_TABLE.finditer(readme))):  # multi-seed runs: a table per results file
        table = seeds_table(json.loads((root / found["file"]).read_text()))
        readme = readme[: found.start("table")] + table + readme[found.end("table") :]
    return readme
