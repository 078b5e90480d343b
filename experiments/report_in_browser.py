"""The morning report of a real study, generated and opened in headless chromium: how long it takes, what renders.

    python -m experiments.report_in_browser STUDY [--storage URL] [--out experiments/results/report-check]

Runs `autocompress report STUDY --no-mlflow` (timed, process start included), opens the page in Debian's
chromium through Playwright, checks that the Pareto plot and the trial table render with one row per trial,
and writes report.html, report.png and report-check.json to --out.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import optuna
from playwright.sync_api import sync_playwright

from autocompress.search.study import open_storage
from tests.services import chromium


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.report_in_browser", description=__doc__.splitlines()[0]
    )
    parser.add_argument("study")
    parser.add_argument("--storage", default=None, help="Optuna storage URL (default: the home's SQLite)")
    parser.add_argument("--out", type=Path, default=Path("experiments/results/report-check"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    page_path = args.out / "report.html"
    command = [sys.executable, "-m", "autocompress", "report", args.study, "--out", str(page_path), "--no-mlflow"]
    command += ["--storage", args.storage] if args.storage else []
    started = time.monotonic()
    written = subprocess.run(command, capture_output=True, text=True)
    seconds = time.monotonic() - started
    if written.returncode != 0:
        print(written.stderr.strip().splitlines()[-1], file=sys.stderr)
        return 1
    trials = len(optuna.load_study(study_name=args.study, storage=open_storage(args.storage)).trials)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(page_path.resolve().as_uri())
        plot = page.locator("figure.pareto svg")
        rows = page.locator("table.trials tr").count() - 1
        result = {
            "study": args.study, "trials": trials, "generate_s": round(seconds, 2), "command": " ".join(command),
            "plot_visible": plot.is_visible(), "plot_width": (plot.bounding_box() or {}).get("width"),
            "plot_paths": page.locator("figure.pareto svg path").count(), "table_rows": rows,
        }  # fmt: skip
        page.screenshot(path=str(args.out / "report.png"), full_page=True)
        browser.close()
    (args.out / "report-check.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result))
    return 0 if result["plot_visible"] and rows == trials else 1


if __name__ == "__main__":
    sys.exit(main())
