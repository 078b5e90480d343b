"""Train once, search many (issue 27): one elastic model serves three devices. Runs README's search with
`--elastic-budget` on cpu, openvino-cpu and tflite-cpu in turn, in one home, and reads back what each exported and
how many elastic trainings MLflow holds (one is the claim: the second and third devices find the model trained).

    python -m experiments.elastic_three_devices --elastic-budget 2m --timeout 5m \
        --out experiments/results/elastic-three-devices

Writes `<out>/results.json` and `<out>/README.md`; each device's export lies under `<out>/<device>/`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

DEVICES = ("cpu", "openvino-cpu", "tflite-cpu")


def count_elastic_runs(tracking_uri: str) -> list[dict[str, Any]]:
    """Every MLflow run named `elastic-training` in the home, whichever experiment (device) logged it."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    runs = []
    for experiment in client.search_experiments():
        for run in client.search_runs([experiment.experiment_id], "tags.`mlflow.runName` = 'elastic-training'"):
            metrics = run.data.metrics
            runs.append({"experiment": experiment.name, "run_id": run.info.run_id, "status": run.info.status,
                         "train_s": metrics.get("train_s"), "steps": metrics.get("steps")})  # fmt: skip
    return runs


def search(device: str, args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    """One device's search (the CLI in its own process, as a user runs it); its wall time and its report."""
    out = args.out / device
    shutil.rmtree(out, ignore_errors=True)  # an earlier invocation's export of this device is replaced
    command = [sys.executable, "-m", "autocompress", "search", "--example", args.example, "--device", device,
               "--elastic-budget", args.elastic_budget, "--timeout", args.timeout, "--seed", str(args.seed),
               "--out", str(out)]  # fmt: skip
    started = time.monotonic()
    log = args.out / f"{device}.log"
    before = len(log.read_text().splitlines()) if log.exists() else 0  # an earlier invocation's lines
    with log.open("a") as stream:
        code = subprocess.run(command, env=env, stdout=stream, stderr=subprocess.STDOUT, check=False).returncode
    wall = time.monotonic() - started
    lines = log.read_text().splitlines()[before:]
    elastic_lines = [line.strip() for line in lines if "elastic model" in line and ("trained" in line)]
    report_path = out / device / "report.json"
    if not report_path.exists():
        report_path = out / "report.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else None
    keep = ("trial_number", "speedup", "speedup_baseline", "confirmed_speedup_ci", "speedup_over_fp32",
            "speedup_over_fp32_ci", "noisy", "threads", "validation", "test", "size_bytes", "baseline_size_bytes")
    return {"device": device, "command": " ".join(command[1:]), "exit_code": code, "wall_s": wall,
            "elastic_log": elastic_lines, "report": {k: report.get(k) for k in keep} if report else None}  # fmt: skip


def markdown(results: dict[str, Any]) -> str:
    machine = results["machine"]
    lines = [
        "# One elastic training, three devices (issue 27)",
        "",
        f"`{results['command']}` (commit {results['commit']}, {results['date']}; {machine['cpu']}, "
        f"{' '.join(machine['isa'])}, {machine['cores']} cores). One home; the devices run in turn, each the CLI in "
        "its own process.",
        "",
        "| device | exit | wall s | elastic model | winner | speedup over the runtime default [CI] | over fp32 "
        "| noisy | validation acc (drop) | test acc (drop) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for item in results["searches"]:
        report = item["report"] or {}
        validation, test = report.get("validation") or {}, report.get("test") or {}
        ci = report.get("confirmed_speedup_ci") or [None, None]
        speed = f"{report['speedup']:.2f}x [{ci[0]:.2f}, {ci[1]:.2f}]" if report.get("speedup") else "— (no export)"
        fp32 = f"{report['speedup_over_fp32']:.2f}x" if report.get("speedup_over_fp32") else "—"
        elastic = "; ".join(line.split("elastic model", 1)[1].strip() for line in item["elastic_log"]) or "—"
        acc = lambda part: f"{part['metric']:.4f} ({part['drop']:+.4f})" if part else "—"  # noqa: E731
        invocation = item.get("invocation", results["command"])
        if invocation != results["command"]:
            item = item | {"device": f"{item['device']} (again: `{invocation.split(' ', 3)[-1]}`)"}
        lines.append(f"| {item['device']} | {item['exit_code']} | {item['wall_s']:.0f} | {elastic[:90]} "
                     f"| {report.get('trial_number', '—')} | {speed} | {fp32} | {report.get('noisy', '—')} "
                     f"| {acc(validation)} | {acc(test)} |")  # fmt: skip
    runs = results["elastic_runs"]
    lines += ["", f"MLflow runs named `elastic-training` in the home: **{len(runs)}**"]
    lines += [f"- {run['experiment']}: {run['status']}, {run['steps']:.0f} steps, {run['train_s']:.0f} s"
              for run in runs if run.get("steps") is not None]  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    from experiments.machine import git_commit, machine_info

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--example", default="digits")
    parser.add_argument("--elastic-budget", default="2m")
    parser.add_argument("--timeout", default="5m", help="each device's search")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--devices", default=",".join(DEVICES), help="comma-separated; a device run again (its "
                        "study resumed) is added to <out>/results.json as one more invocation")
    parser.add_argument("--home", type=Path, default=None, help="AUTOCOMPRESS_HOME (default: <out>/home)")
    parser.add_argument("--out", type=Path, default=Path("experiments/results/elastic-three-devices"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    home = (args.home or args.out / "home").resolve()
    env = os.environ | {"AUTOCOMPRESS_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    earlier_path = args.out / "results.json"
    earlier = json.loads(earlier_path.read_text()) if earlier_path.exists() else {}
    command = "python -m experiments.elastic_three_devices " + " ".join(sys.argv[1:])
    searches = earlier.get("searches", []) + [search(device, args, env) | {"invocation": command}
                                              for device in args.devices.split(",")]  # fmt: skip
    results = {"command": earlier.get("command", command), "commit": git_commit(),
               "date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine_info(), "searches": searches,
               "elastic_runs": count_elastic_runs(f"sqlite:///{home / 'mlflow.db'}")}  # fmt: skip
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    (args.out / "README.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
