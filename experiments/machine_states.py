"""Why a speedup did not reproduce on this VM: the machine's states, seen one second at a time.

    python -m experiments.machine_states EXPORT_DIR... [--seconds 60] > states.jsonl

For each exported folder (best/<device>, with baseline/), every second: three back-to-back pairs of 60-call
medians (baseline, then candidate) through the runtime's own API (experiments/reproduce.py's calls), printed as
JSON lines [baseline ms, candidate ms, ratio]. On this 2-vCPU VM the output shows two states that alternate
every few seconds to minutes: e.g. ONNX Runtime 1.14 / 0.268 ms (4.25x) and 1.31 / 0.348 ms (3.75x); with one
thread instead of two the ratio stays within 2%. experiments/results/machine-states-probe.jsonl is one such run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from experiments.reproduce import PROFILES, SUFFIXES, main_file, plain_call, sample_for


def median_ms(call: Callable[[], object], runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1e3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.machine_states", description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args(argv)
    pairs = {}
    for folder in args.folders:
        report = json.loads((folder / "report.json").read_text())
        threads = yaml.safe_load((PROFILES / f"{report['device']}.yaml").read_text())["threads"]
        candidate, baseline = main_file(folder), main_file(folder / "baseline")
        runtime = SUFFIXES[candidate.suffix]
        if runtime == "onnxruntime":
            import onnxruntime.capi._pybind_state as ort_state

            ort_state.set_global_thread_pool_sizes(threads, 1)
        sample = sample_for(runtime, baseline)
        pairs[report["device"]] = [plain_call(runtime, path, threads, sample) for path in (baseline, candidate)]
    end = time.time() + args.seconds
    while time.time() < end:
        row: dict[str, object] = {"t": time.strftime("%H:%M:%S")}
        for name, (baseline_call, candidate_call) in pairs.items():
            triples = []
            for _ in range(3):
                b, c = median_ms(baseline_call, 60), median_ms(candidate_call, 60)
                triples.append((round(b, 4), round(c, 4), round(b / c, 2)))
            row[name] = triples
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
