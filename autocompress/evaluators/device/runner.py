"""Measure one artifact on this machine: outputs over the validation inputs, and latency of one sample.

Run in-process for local devices, or on a remote device as `python -m <pkg>.runner request.json`, where
the request names the artifact, runtime, options, threads, an .npz of input batches and a timing policy;
it writes outputs.npz and prints one JSON line (latency statistics, versions, machine).
"""

from __future__ import annotations

import importlib
import json
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .latency import LatencyStats, TimingPolicy, measure

SESSION_MODULES = {"onnxruntime": "onnxruntime_session", "openvino": "openvino_session", "tflite": "tflite_session"}


@dataclass(frozen=True)
class DeviceResult:
    outputs: list[np.ndarray]
    latency: LatencyStats
    environment: dict[str, str]


def _session_module(runtime: str) -> Any:
    if runtime not in SESSION_MODULES:
        raise RuntimeError(f"runtime '{runtime}' is not supported by this runner")
    return importlib.import_module(f"{__package__}.{SESSION_MODULES[runtime]}")


def open_session(artifact: str, runtime: str, options: dict[str, Any], threads: int) -> Any:
    return _session_module(runtime).Session(artifact, options, threads)


def environment(runtime: str, threads: int) -> dict[str, str]:
    """Runtime versions, CPU model and thread count, recorded with every measurement."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = _session_module(runtime).versions()
    return {"cpu": cpu, "threads": str(threads), "python": platform.python_version(), **versions}


def run_measurement(
    artifact: str,
    runtime: str,
    options: dict[str, Any],
    threads: int,
    batches: list[np.ndarray],
    sample: np.ndarray,
    policy: TimingPolicy,
) -> DeviceResult:
    session = open_session(artifact, runtime, options, threads)
    outputs = [session.run(batch) for batch in batches]
    # a session may define what one timed call is (e.g. GPU IO binding); by default, a plain run
    timed_call = session.timed_call(sample) if hasattr(session, "timed_call") else (lambda: session.run(sample))
    latency = measure(timed_call, policy)
    return DeviceResult(outputs, latency, environment(runtime, threads))


def main(request_path: str) -> None:
    request = json.loads(Path(request_path).read_text())
    inputs = np.load(request["inputs"])
    batches = [inputs[key] for key in sorted(inputs.files) if key.startswith("batch_")]
    result = run_measurement(
        request["artifact"],
        request["runtime"],
        request["options"],
        request["threads"],
        batches,
        inputs["sample"],
        TimingPolicy(**request["policy"]),
    )
    np.savez(request["outputs"], **{f"batch_{i:05d}": out for i, out in enumerate(result.outputs)})
    print(json.dumps({"latency": result.latency.as_dict(), "environment": result.environment}))


if __name__ == "__main__":
    main(sys.argv[1])
