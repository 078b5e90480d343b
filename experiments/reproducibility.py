"""Do exported speedups reproduce? Searches as a user runs them, each report checked by an independent loop.

    python -m experiments.reproducibility [--devices cpu openvino-cpu tflite-cpu] [--runs 3] [--trials 20]
                                          [--home autocompress-runs/reproducibility] [--out experiments/results]
                                          [--parallel 2] [--jobs cpu:2 tflite-cpu:1] [--append]
                                          [--recheck [--reconfirm] --no-search]

For each device and run: `autocompress search --example E (digits) --device D --trials N --seed RUN --out ...` in a
fresh process (its own study). When every search has ended, `experiments.reproduce` checks each exported folder
in turn on the then quiet machine (under its timing lock): the runtime's own API, baseline and exported artifact
alternated for 30 rounds of 100 calls. A check run beside another search's unlocked work (start-up, MLflow
logging, export) read 16-33% off on 2 cores; the same folders re-checked quietly agreed within 1.5-5.4%.
Also records the search's wall time and the share of it spent confirming. Writes <out>/<name>.{json,md};
`--append` keeps the rows already there (each row names its commit) and replaces those run again.
`--reconfirm` (with `--recheck`) first runs `autocompress export` on each kept row's study, as a user would
after upgrading: the stored trials re-confirmed and exported with this commit's confirmation, then checked.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

from autocompress.hardware.locks import timing_lock
from experiments.machine import git_commit, machine_info

CONFIRMATION = re.compile(r"confirmation took (\d+) s of this search's (\d+) s")


def search_one(device: str, run: int, args: argparse.Namespace) -> dict:
    out = args.home / "exports" / f"{device}-run{run}"
    study = f"repro-{args.example}-{device}-n{args.trials}-run{run}-{datetime.now():%H%M%S}"
    command = ["autocompress", "search", "--example", args.example, "--device", device, "--trials", str(args.trials),
               "--seed", str(run), "--study", study, "--out", str(out), *args.search_flags.split()]  # fmt: skip
    env = {**os.environ, "AUTOCOMPRESS_HOME": str(args.home)}
    searched = subprocess.run(command, capture_output=True, text=True, env=env)
    row: dict = {"device": device, "run": run, "study": study, "command": " ".join(command), "commit": git_commit()}
    stderr = " ".join(searched.stderr.split())
    if searched.returncode != 0 or not (out / device / "report.json").exists():
        return row | {"error": (searched.stderr.strip().splitlines() or ["?"])[-1], "exit": searched.returncode}
    timing = CONFIRMATION.search(stderr)
    if timing:
        row |= {"confirm_s": int(timing[1]), "search_wall_s": int(timing[2])}
    return row | {"folder": str(out / device)}


def reconfirm_one(row: dict, args: argparse.Namespace) -> dict:
    """`autocompress export` on the row's study: this commit's confirmation over the stored trials."""
    if "error" in row:
        return row
    out = Path(row["folder"]).parent
    command = ["autocompress", "export", "--example", args.example, "--device", row["device"], "--study", row["study"],
               "--out", str(out), "--no-register"]  # fmt: skip
    started = time.monotonic()
    env = {**os.environ, "AUTOCOMPRESS_HOME": str(args.home)}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        return row | {"error": f"export failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}"}
    return row | {"confirm_command": " ".join(command), "commit": git_commit(),
                  "reconfirm_s": round(time.monotonic() - started)}  # fmt: skip


def check_one(row: dict) -> dict:
    """The independent loop on one exported folder, alone on the machine."""
    if "error" in row:
        return row
    with timing_lock():  # no autocompress process on this machine builds or times meanwhile
        checked = subprocess.run([sys.executable, "-m", "experiments.reproduce", row["folder"]],
                                 capture_output=True, text=True)  # fmt: skip
    if checked.returncode != 0:
        return row | {"error": f"reproduce failed: {(checked.stderr.strip().splitlines() or ['?'])[-1]}"}
    return row | json.loads(checked.stdout.strip().splitlines()[-1])


def markdown(results: dict) -> str:
    lines = [
        f"# Exported speedups against an independent paired loop ({results.get('example', 'digits')})",
        "",
        f"- command: `{results['command']}`",
        f"- commit of the last invocation: {results['commit']} (each row's own in the JSON); date: {results['date']}; "
        f"machine: {results['machine']['cpu']}, "
        f"{results['machine']['cores']} cores",
        "- report = report.json `confirmed_speedup` [95% CI] (autocompress: the top 5 candidates and the baseline "
        "re-timed together in interleaved rounds, the rounds in the machine's undisturbed state; `settled` = their "
        "share, `other state` = the ratio in the rest); independent = `experiments/reproduce.py` (the runtime's own "
        "API, baseline and exported model alternated, 30 rounds of 100 calls per window, windows 20 s apart; the "
        "same undisturbed-state statistic computed from its own rounds, its 95% interval; `all rounds` = the "
        "median over every round)",
        "- confirmation s: the export's confirmation (`reconfirm_s`, `autocompress export` on the stored study) or "
        "the search's own; search s: the 20-trial search's wall time",
        "",
        "| device | run | commit | trial | report [95% CI] | half-width | settled | other state | independent [95% CI] "
        "| all rounds | its windows | report / independent - 1 | confirmation s / search s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in results["rows"]:
        if "error" in row:
            lines.append(f"| {row['device']} | {row['run']} | | — | error: {row['error'][:120]} |" + " |" * 8)
            continue
        low, high = row["report_ci"]
        half = (high - low) / 2 / row["report_speedup"]
        confirm_s = row.get("reconfirm_s", row.get("confirm_s"))
        share = f"{confirm_s} / {row['search_wall_s']}" if "search_wall_s" in row else "—"
        windows = ", ".join(f"{value:.2f}" for value in row.get("independent_windows", []))
        settled = row.get("report_settled_share")
        other = row.get("report_unsettled_speedup")
        everything = row.get("all_rounds_speedup")
        lines.append(
            f"| {row['device']} | {row['run']} | {str(row.get('commit') or '')[:7]} | {row['trial']} "
            f"| {row['report_confirmed_speedup']:.3f}x [{low:.3f}, {high:.3f}] | {half:.1%} "
            f"| {'—' if settled is None else f'{settled:.0%}'} | {'—' if other is None else f'{other:.2f}x'} "
            f"| {row['independent_speedup']:.3f}x [{row['independent_ci'][0]:.2f}, {row['independent_ci'][1]:.2f}] "
            f"| {'—' if everything is None else f'{everything:.3f}x'} | {windows} | {row['difference']:+.1%} "
            f"| {share} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.reproducibility", description=__doc__.splitlines()[0])
    parser.add_argument("--example", default="digits", help="built-in example to search (digits, minilm)")
    parser.add_argument("--devices", nargs="+", default=["cpu", "openvino-cpu", "tflite-cpu"])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--home", type=Path, default=Path("autocompress-runs/reproducibility"))
    parser.add_argument("--out", type=Path, default=Path("experiments/results"))
    parser.add_argument("--name", default="reproducibility", help="results file stem")
    parser.add_argument("--parallel", type=int, default=1, help="searches at once (timings stay exclusive)")
    parser.add_argument("--search-flags", default="", help="more `autocompress search` flags, e.g. --no-sensitivity")
    parser.add_argument("--jobs", nargs="+", default=[], help="device:run pairs instead of --devices x --runs")
    parser.add_argument("--append", action="store_true", help="keep the rows of an earlier results file")
    parser.add_argument("--recheck", action="store_true", help="with --append: re-run the kept rows' checks")
    parser.add_argument("--no-search", action="store_true", help="with --append --recheck: only the checks")
    parser.add_argument("--reconfirm", action="store_true", help="with --recheck: `autocompress export` first")
    args = parser.parse_args(argv)
    args.home = args.home.resolve()
    jobs = [(device, run) for run in range(args.runs) for device in args.devices]  # every device early on
    if args.jobs:
        jobs = [(job.rsplit(":", 1)[0], int(job.rsplit(":", 1)[1])) for job in args.jobs]
    if args.no_search:
        jobs = []
    earlier = args.out / f"{args.name}.json"
    old = json.loads(earlier.read_text()) if args.append and earlier.exists() else {"rows": []}
    kept = [{"commit": old.get("commit")} | row for row in old["rows"] if (row["device"], row["run"]) not in set(jobs)]
    if args.recheck:
        redo = (lambda row: check_one(reconfirm_one(row, args))) if args.reconfirm else check_one
        kept = [redo(row) if Path(row.get("folder", "-")).exists() else row for row in kept]
    results = {
        "example": args.example,
        "command": " ".join(["python", "-m", "experiments.reproducibility", *(argv or sys.argv[1:])]),
        "commit": git_commit(),
        "date": datetime.now().isoformat(timespec="seconds"),
        "machine": machine_info(),
        "trials": args.trials,
        "parallel": args.parallel,
        "rows": kept,
    }
    args.out.mkdir(parents=True, exist_ok=True)

    def save() -> None:  # after every row: a partial run counts
        results["rows"].sort(key=lambda item: (item["run"], item["device"]))
        (args.out / f"{args.name}.json").write_text(json.dumps(results, indent=2))
        (args.out / f"{args.name}.md").write_text(markdown(results))

    save()
    # a batch of searches may overlap (the machine's timing lock keeps every timing alone); its checks wait for
    # the batch to end, so each runs on a quiet machine
    for start in range(0, len(jobs), args.parallel):
        with ThreadPoolExecutor(max_workers=args.parallel) as pool:
            searched = list(pool.map(lambda job: search_one(*job, args), jobs[start : start + args.parallel]))
        for row in searched:
            row = check_one(row)
            print(json.dumps(row), flush=True)
            results["rows"].append(row)
            save()
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
