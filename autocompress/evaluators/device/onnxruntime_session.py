"""ONNX Runtime session from a profile's runtime options: providers in order, pinned threads, optimization."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort

OPTIMIZATION_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


class Session:
    """One InferenceSession; `run` maps a batch to the model's first output."""

    def __init__(self, artifact: str, options: dict[str, Any], threads: int) -> None:
        session_options = ort.SessionOptions()
        session_options.intra_op_num_threads = threads
        session_options.inter_op_num_threads = 1
        session_options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        session_options.graph_optimization_level = OPTIMIZATION_LEVELS[options.get("graph_optimization_level", "all")]
        providers = options.get("providers", ["CPUExecutionProvider"])
        missing = [p if isinstance(p, str) else p[0] for p in providers]
        missing = [name for name in missing if name not in ort.get_available_providers()]
        if missing:
            raise RuntimeError(f"{', '.join(missing)} not in onnxruntime's providers {ort.get_available_providers()}")
        self._session = ort.InferenceSession(artifact, session_options, providers=providers)
        self._input = self._session.get_inputs()[0].name

    def run(self, inputs: np.ndarray) -> np.ndarray:
        return self._session.run(None, {self._input: inputs.astype(np.float32, copy=False)})[0]


def versions() -> dict[str, str]:
    return {"onnxruntime": ort.__version__}
