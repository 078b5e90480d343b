"""An independent paired check on OpenVINO's own API: fp32 and candidates alternated in one window (f32 inference
precision, as the openvino-cpu profile), on MiniLM's 1 x 64-token timing input.

    HF_HUB_OFFLINE=1 python -m experiments.ov_paired_check FP32.xml RECIPE.xml CANDIDATE.xml
"""

from __future__ import annotations

import sys
import time

import numpy as np
import openvino as ov

from autocompress.examples import minilm

CONFIG = {"INFERENCE_NUM_THREADS": 2, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}


def main(paths: list[str], rounds: int = 30, calls: int = 20) -> None:
    inputs = minilm.load_task().example_input.numpy()
    requests = [ov.Core().compile_model(path, "CPU", CONFIG).create_infer_request() for path in paths]
    for request in requests:
        for _ in range(calls):
            request.infer({0: inputs})
    seconds: list[list[float]] = [[] for _ in paths]
    for _ in range(rounds):
        for index, request in enumerate(requests):
            started = time.perf_counter()
            for _ in range(calls):
                request.infer({0: inputs})
            seconds[index].append((time.perf_counter() - started) / calls)
    for path, times in zip(paths[1:], seconds[1:], strict=True):
        ratios = np.array(seconds[0]) / np.array(times)
        p10, p50, p90 = np.percentile(ratios, [10, 50, 90])
        print(f"{path}: paired speedup vs fp32 {p50:.2f}x (p10 {p10:.2f}, p90 {p90:.2f})")
    if len(paths) == 3:
        ratios = np.array(seconds[1]) / np.array(seconds[2])
        print(f"last / second: {np.median(ratios):.3f}x (p10 {np.percentile(ratios, 10):.3f}, "
              f"p90 {np.percentile(ratios, 90):.3f})")  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:])
