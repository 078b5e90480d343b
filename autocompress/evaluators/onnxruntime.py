"""ONNX Runtime evaluator: sessions configured from the hardware profile (providers, threads, optimization)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from autocompress.errors import TrialError
from autocompress.hardware.profile import HardwareProfile

OPTIMIZATION_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


class OnnxRuntimeSession:
    """One InferenceSession with the profile's thread count pinned (intra-op), one inter-op thread."""

    def __init__(self, artifact: Path, profile: HardwareProfile) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = profile.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        level = profile.runtime_options.get("graph_optimization_level", "all")
        options.graph_optimization_level = OPTIMIZATION_LEVELS[level]
        providers = profile.runtime_options.get("providers", ["CPUExecutionProvider"])
        try:
            self._session = ort.InferenceSession(str(artifact), options, providers=providers)
        except Exception as error:  # ORT raises its own exception types for bad graphs
            raise TrialError(f"onnxruntime cannot load {artifact.name}: {str(error).splitlines()[0][:200]}") from error
        self._input = self._session.get_inputs()[0].name

    def run(self, inputs: np.ndarray) -> np.ndarray:
        return self._session.run(None, {self._input: inputs.astype(np.float32, copy=False)})[0]


class OnnxRuntimeEvaluator:
    def load(self, artifact: Path, profile: HardwareProfile) -> OnnxRuntimeSession:
        return OnnxRuntimeSession(artifact, profile)

    @staticmethod
    def versions() -> dict[str, str]:
        return {"onnxruntime": ort.__version__}
