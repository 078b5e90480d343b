"""Do two workers on one study finish more trials per hour than one, against a device reached over SSH?

    python -m experiments.workers_throughput [--phase 240] [--pairs 2] [--example digits]
                                             [--home autocompress-runs/workers] [--out experiments/results]

One run, phases side by side: a real sshd on 127.0.0.1 (tests/sshd.py) makes this machine a remote device
`cpu-ssh` (the cpu profile, every timing over SSH under the device's lock), a throwaway PostgreSQL cluster
holds the studies (tests/services.py), and phases alternate: one worker, two workers, one, two... Each phase
is its own study, run by the same `autocompress search --device cpu-ssh.yaml --storage postgresql://...
--timeout PHASE` command started once per worker. Phases use random sampling without warm starts or
sensitivity, so every phase draws the same kind of trial. Trials per hour = COMPLETE trials / (last completion
- first start) of the phase; the lock wait share = the trials' summed `timing_lock_wait_s` over their summed
durations. Writes <out>/workers-throughput.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

import optuna
import yaml

from autocompress.hardware.profile import BUILTIN_DIR
from autocompress.search.results import METRICS_ATTR
from experiments.machine import git_commit, machine_info
from tests.services import postgres_cluster
from tests.sshd import running_sshd


def device_profile(server, folder: Path) -> Path:  # noqa: ANN001 (tests.sshd.SshServer)
    """The built-in cpu profile, reached over SSH on 127.0.0.1."""
    raw = yaml.safe_load((BUILTIN_DIR / "cpu.yaml").read_text())
    workdir = folder / "device-workdir"
    workdir.mkdir(parents=True, exist_ok=True)
    raw |= {"name": "cpu-ssh", "aliases": [], "host": server.url, "remote": {
        "python": sys.executable, "workdir": str(workdir), "identity_file": str(server.client_key),
        "known_hosts": str(server.known_hosts), "connect_timeout_s": 10.0, "retries": 2}}  # fmt: skip
    path = folder / "cpu-ssh.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def cpu_jiffies() -> tuple[int, int]:
    """(busy, total) CPU time of the whole machine so far (/proc/stat): workers, device runner and sshd alike."""
    fields = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def run_phase(workers: int, study: str, args: argparse.Namespace, profile: Path, storage: str) -> dict:
    command = ["autocompress", "search", "--example", args.example, "--device", str(profile), "--study", study,
               "--storage", storage, "--timeout", str(args.phase), "--sampler", "random", "--no-warm-starts",
               "--no-sensitivity", "--confirm", "0", "--seed", str(args.seed)]  # fmt: skip
    env = {**os.environ, "AUTOCOMPRESS_HOME": str(args.home)}
    before = cpu_jiffies()
    processes = [subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for _ in range(workers)]  # fmt: skip
    errors = [process.communicate()[1] for process in processes]
    codes = [process.returncode for process in processes]
    after = cpu_jiffies()
    cores_busy = (after[0] - before[0]) / max(1, after[1] - before[1]) * (os.cpu_count() or 1)
    trials = optuna.load_study(study_name=study, storage=storage).get_trials(deepcopy=False)
    done = [t for t in trials if t.state.name == "COMPLETE"]
    if not done:
        return {"workers": workers, "study": study, "exit": codes, "error": [e.strip()[-300:] for e in errors]}
    span = (max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)).total_seconds()
    busy = sum((t.datetime_complete - t.datetime_start).total_seconds() for t in done)
    waited = sum(t.user_attrs[METRICS_ATTR].get("timing_lock_wait_s", 0.0) for t in done)
    states: dict[str, int] = {}
    for trial in trials:
        states[trial.state.name] = states.get(trial.state.name, 0) + 1
    return {
        "workers": workers, "study": study, "exit": codes, "states": states, "complete": len(done),
        "span_s": span, "trials_per_hour": len(done) / span * 3600, "lock_wait_share": waited / busy,
        "mean_trial_s": busy / len(done),
        "cores_busy": round(cores_busy, 2), "command": " ".join(command),
    }  # fmt: skip


def markdown(results: dict) -> str:
    lines = [
        "# Two workers vs one on a device over SSH (127.0.0.1)",
        "",
        f"- command: `{results['command']}`; commit {results['commit'][:7]}; {results['date']}; "
        f"{results['machine']['cpu']}, {results['machine']['cores']} cores",
        "- each phase: its own study on PostgreSQL, random sampling, no warm starts or sensitivity, "
        f"`--timeout {results['phase_s']}` per worker; trials/h = COMPLETE / (last end - first start)",
        "",
        "- cores busy: the whole machine's CPU use during the phase (/proc/stat), in cores; one worker's figure bounds "
        "what a second can add on this machine: ceiling = cores / (one worker's cores busy)",
        "",
        "| phase | workers | COMPLETE | span s | trials/h | mean trial s | cores busy | lock wait share | states |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for index, row in enumerate(results["phases"]):
        if "error" in row:
            lines.append(f"| {index} | {row['workers']} | error: {row['error']} | | | | | | |")
            continue
        lines.append(f"| {index} | {row['workers']} | {row['complete']} | {row['span_s']:.0f} "
                     f"| {row['trials_per_hour']:.0f} | {row['mean_trial_s']:.1f} | {row.get('cores_busy', '')} "
                     f"| {row['lock_wait_share']:.1%} "
                     f"| {row['states']} |")  # fmt: skip
    lines += ["", f"two workers / one worker, per adjacent pair: {results['ratios']}; "
              f"overall {results['overall_ratio']}; ceiling on this machine: {results.get('ceiling')}"]  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.workers_throughput", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--phase", type=int, default=240, help="seconds per phase (each worker's --timeout)")
    parser.add_argument("--pairs", type=int, default=2, help="(one worker, two workers) phase pairs")
    parser.add_argument("--example", default="digits")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--home", type=Path, default=Path("autocompress-runs/workers"))
    parser.add_argument("--out", type=Path, default=Path("experiments/results"))
    args = parser.parse_args(argv)
    args.home = args.home.resolve()
    stamp = datetime.now().strftime("%H%M%S")
    results: dict = {
        "command": " ".join(["python", "-m", "experiments.workers_throughput", *(argv or sys.argv[1:])]),
        "commit": git_commit(), "date": datetime.now().isoformat(timespec="seconds"), "machine": machine_info(),
        "phase_s": args.phase, "phases": [],
    }  # fmt: skip
    with tempfile.TemporaryDirectory() as scratch, running_sshd(Path(scratch)) as server, postgres_cluster() as url:
        profile = device_profile(server, Path(scratch))
        for pair in range(args.pairs):
            for workers in (1, 2):
                row = run_phase(workers, f"throughput-{stamp}-p{pair}-w{workers}", args, profile, url)
                print(json.dumps(row), flush=True)
                results["phases"].append(row)
    rates = [row.get("trials_per_hour", 0.0) for row in results["phases"]]
    results["ratios"] = [round(rates[i + 1] / rates[i], 3) if rates[i] else None for i in range(0, len(rates), 2)]
    ones, twos = sum(rates[0::2]), sum(rates[1::2])
    results["overall_ratio"] = round(twos / ones, 3) if ones else None
    single = [row["cores_busy"] for row in results["phases"][0::2] if "cores_busy" in row]
    results["ceiling"] = round((os.cpu_count() or 1) / (sum(single) / len(single)), 2) if single else None
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "workers-throughput.json").write_text(json.dumps(results, indent=2))
    (args.out / "workers-throughput.md").write_text(markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
