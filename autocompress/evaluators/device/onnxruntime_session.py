"""ONNX Runtime session from a profile's runtime options: providers in order, pinned threads, optimization."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import onnxruntime as ort
import onnxruntime.capi._pybind_state as C

OPTIMIZATION_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")
_global_threads: int | None = None  # set once per measuring process by configure_process


def configure_process(threads: int) -> None:
    """Give every session of this process one shared intra-op thread pool of `threads` threads.

    With a pool per session, the pool of the artifact timed a moment ago keeps spinning (ORT's default
    allow_spinning) and competes for the cores with the one being timed: two identical models then measure up
    to 2x apart in alternating rounds. One shared pool is what a deployment with one model has. ORT allows this
    only before its environment exists, i.e. in a process that has not run ORT yet (the device worker)."""
    global _global_threads
    if _global_threads is None:
        C.set_global_thread_pool_sizes(threads, 1)
        _global_threads = threads


INPUT_TYPES = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(int32)": np.int32}


class Session:
    """One InferenceSession; `run` maps a batch to the model's first output."""

    def __init__(self, artifact: str, options: dict[str, Any], threads: int) -> None:
        session_options = ort.SessionOptions()
        if _global_threads == threads:
            session_options.use_per_session_threads = False
        else:
            session_options.intra_op_num_threads = threads
            session_options.inter_op_num_threads = 1
        session_options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        session_options.graph_optimization_level = OPTIMIZATION_LEVELS[options.get("graph_optimization_level", "all")]
        # YAML gives [name, {options}] lists; ORT wants names or (name, options) tuples
        providers = [
            p if isinstance(p, str) else (p[0], p[1]) for p in options.get("providers", ["CPUExecutionProvider"])
        ]
        primary = providers[0] if isinstance(providers[0], str) else providers[0][0]
        if primary not in ort.get_available_providers():
            raise RuntimeError(f"{primary} not in onnxruntime's providers {ort.get_available_providers()}")
        self._session = ort.InferenceSession(artifact, session_options, providers=providers)
        self._input = self._session.get_inputs()[0].name
        self._dtype = INPUT_TYPES.get(self._session.get_inputs()[0].type, np.float32)  # token ids stay integers
        self._device = "cuda" if primary in GPU_PROVIDERS else "cpu"
        self._io_binding = bool(options.get("io_binding", False)) and self._device == "cuda"

    def run(self, inputs: np.ndarray) -> np.ndarray:
        return self._session.run(None, {self._input: inputs.astype(self._dtype, copy=False)})[0]

    def timed_call(self, sample: np.ndarray) -> Callable[[], object]:
        """What one timed inference is: on a GPU, inputs and outputs stay on the device (IO binding), so the
        timing is the model's, not the PCIe copies'; on a CPU, a plain run."""
        if not self._io_binding:
            return lambda: self.run(sample)
        binding = self._session.io_binding()
        device_input = ort.OrtValue.ortvalue_from_numpy(sample.astype(self._dtype), self._device, 0)
        binding.bind_ortvalue_input(self._input, device_input)
        for output in self._session.get_outputs():
            binding.bind_output(output.name, self._device, 0)

        def call() -> ort.IOBinding:
            self._session.run_with_iobinding(binding)
            binding.synchronize_outputs()
            return binding  # outputs stay on the device; binding.copy_outputs_to_cpu() reads them back

        return call


def versions() -> dict[str, str]:
    return {"onnxruntime": ort.__version__}
