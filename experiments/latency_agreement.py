"""Does the shared latency module tell the truth? Compare its median with an independent plain timing loop.

For each runtime usable here, the digits model is built at fp32 and uniform int8; each artifact is timed
(a) by `autocompress.evaluators.measure_artifact` (warm-up, CI-driven repetitions) and (b) by a plain loop
written directly against the runtime's own API (500 calls after 50 warm-up calls, about as long as the
module measures). This shared VM's speed drifts by 10-20% over seconds, so the two are interleaved in many
short rounds, alternating which goes first, and the medians over rounds are compared.

    python -m experiments.latency_agreement [--devices cpu openvino-cpu tflite-cpu]

Writes experiments/results/latency_agreement.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from autocompress.compress.pipeline import build
from autocompress.evaluators import measure_artifact
from autocompress.examples.digits import load_task
from autocompress.hardware import get_profile
from autocompress.hardware.availability import availability
from autocompress.spaces.graph import quant_layers
from autocompress.spaces.strategy import QuantizeSettings, Strategy

RESULTS = Path(__file__).parent / "results"


def plain_runner(runtime: str, artifact: Path, threads: int, sample: np.ndarray):
    """One inference through the runtime's own API, independent of autocompress's session classes."""
    if runtime == "onnxruntime":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        session = ort.InferenceSession(str(artifact), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda: session.run(None, {name: sample})
    if runtime == "openvino":
        import openvino as ov

        compiled = ov.Core().compile_model(
            str(artifact), "CPU", {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
                                   "INFERENCE_PRECISION_HINT": "f32", "NUM_STREAMS": 1}
        )  # fmt: skip
        request = compiled.create_infer_request()
        # the low-overhead call OpenVINO documents for latency loops: no copies of inputs or outputs
        return lambda: request.infer({0: sample}, share_inputs=True, share_outputs=True)
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(artifact), num_threads=threads)
    interpreter.allocate_tensors()
    index = interpreter.get_input_details()[0]["index"]

    def call() -> None:
        interpreter.set_tensor(index, sample)
        interpreter.invoke()

    return call


def plain_median_ms(call, warmup: int = 50, runs: int = 500) -> float:
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return float(np.median(samples) * 1e3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", nargs="+", default=["cpu", "openvino-cpu", "tflite-cpu"])
    parser.add_argument("--rounds", type=int, default=12)
    args = parser.parse_args()
    task = load_task()
    layers = [layer.name for layer in quant_layers(task.model)]
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for device in args.devices:
            profile = get_profile(device)
            if (problem := availability(profile)) is not None:
                print(f"skipping {device}: {problem}")
                continue
            for precision in ("fp32", "int8"):
                strategy = Strategy(quantize=QuantizeSettings(precisions=dict.fromkeys(layers, precision)))
                artifact = build(task, strategy, profile, Path(scratch) / device / precision)
                sample = task.example_input.numpy()
                module: list[float] = []
                plain: list[float] = []
                plain_call = plain_runner(profile.runtime, artifact.path, profile.threads, sample)
                for round_index in range(args.rounds):
                    first_module = round_index % 2 == 0
                    if first_module:
                        module.append(measure_artifact(artifact.path, task, profile).latency.median_ms)
                    plain.append(plain_median_ms(plain_call))
                    if not first_module:
                        module.append(measure_artifact(artifact.path, task, profile).latency.median_ms)
                row = {
                    "device": device,
                    "precision": precision,
                    "module_median_ms": statistics.median(module),
                    "plain_median_ms": statistics.median(plain),
                    "module_rounds_ms": module,
                    "plain_rounds_ms": plain,
                }
                row["ratio"] = row["module_median_ms"] / row["plain_median_ms"]
                row["agree_within_5pct"] = abs(row["ratio"] - 1) <= 0.05
                rows.append(row)
                print(json.dumps(row))
    write_results(rows, measured=set(args.devices))


def write_results(rows: list[dict], measured: set[str]) -> None:
    """Rows of devices not measured this time are kept from the previous results file."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "latency_agreement.json"
    if path.exists():
        previous = json.loads(path.read_text())["rows"]
        rows = [row for row in previous if row["device"] not in measured] + rows
    machine = {"cpu": platform.processor() or platform.machine(), "python": platform.python_version()}
    path.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2))
    lines = [
        "# Latency module vs plain timing loop (digits, batch 1)",
        "",
        "Command: `python -m experiments.latency_agreement`",
        "",
        "| device | precision | module median ms | plain loop median ms | ratio | within 5% |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['device']} | {r['precision']} | {r['module_median_ms']:.4f} | {r['plain_median_ms']:.4f} "
            f"| {r['ratio']:.3f} | {'yes' if r['agree_within_5pct'] else 'NO'} |"
        )
    (RESULTS / "latency_agreement.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
