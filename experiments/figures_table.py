"""The table of experiments/results/figures/README.md, from the committed report and reproduce files.

    python -m experiments.figures_table experiments/results/figures

Each `report-<name>.json` (the export's report) is paired with `reproduce-<name>.json` (experiments/reproduce.py
run at least ten minutes later on the same export).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def _pct(value: float) -> str:
    return f"{100 * value:+.1f}%"


def row(report: dict, check: dict) -> str:
    test, validation = report["test"], report["validation"]
    low, high = report["confirmed_speedup_ci"]
    windows = ", ".join(f"{speedup:.2f}" for speedup in report["window_speedups"])
    noisy = " (noisy)" if report["noisy"] else ""
    ilow, ihigh = check["independent_ci"]
    inside = "inside" if check["within_report_ci"] else "outside"
    return (
        f"| {report['device']} | {report['study']} | {report['trial_number']} "
        f"| {test['metric']:.4f} ({test['baseline']:.4f}) | {validation['metric']:.4f} ({validation['baseline']:.4f}) "
        f"| {report['speedup']:.2f}x [{low:.2f}, {high:.2f}]{noisy} | {windows} ({report['windows_left_out']}) "
        f"| {check['independent_speedup']:.2f}x [{ilow:.2f}, {ihigh:.2f}] ({100 * check['independent_share']:.0f}% "
        f"of {check['all_rounds']} rounds) | {check['all_rounds_speedup']:.2f}x "
        f"| {_pct(check['difference'])} ({inside} the interval) |"
    )


def table(folder: Path) -> str:
    lines = [
        "| device | study | trial | test (baseline) | validation (baseline) | report: speedup over the runtime's "
        "default [95% CI over windows] | windows used (left out) | independent loop, undisturbed rounds | "
        "independent, all rounds | report vs independent |",
        "|" + "---|" * 10,
    ]
    headlines: dict[str, list[float]] = {}
    for path in sorted(folder.glob("report-*.json")):
        report = json.loads(path.read_text())
        check = json.loads((folder / path.name.replace("report-", "reproduce-")).read_text())
        lines.append(row(report, check))
        headlines.setdefault(report["device"], []).append(report["speedup"])
    for device, figures in headlines.items():
        if len(figures) > 1:
            lines.append(f"\n{device}, {len(figures)} seeds: headline median {statistics.median(figures):.2f}x, "
                         f"range {min(figures):.2f}x to {max(figures):.2f}x")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    print(table(parser.parse_args().folder))


if __name__ == "__main__":
    main()
