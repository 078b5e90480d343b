"""LiteRT (TFLite) interpreter session from a profile's runtime options: XNNPACK delegate, pinned threads.

Device-side: stdlib, numpy and ai-edge-litert only. Artifacts from litert-torch have a static batch (1), and
resizing them fails (reshapes carry constant shapes), so a batch of another size runs sample by sample; a
model whose batch dimension is dynamic is resized instead.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import metadata
from typing import Any

import numpy as np

try:
    from ai_edge_litert import interpreter as litert
except ImportError:  # reported when a session is opened, as one line
    litert = None

# "xnnpack": the built-in op resolver, which applies XNNPACK as the default delegate; "none": plain CPU kernels.
DELEGATES = {"xnnpack": "BUILTIN", "none": "BUILTIN_WITHOUT_DEFAULT_DELEGATES"}


def _require_runtime() -> Any:
    if litert is None:
        raise RuntimeError("ai-edge-litert is not installed on this device (pip install ai-edge-litert)")
    return litert


class Session:
    """One Interpreter; `run` maps a batch of any size to the model's first output."""

    def __init__(self, artifact: str, options: dict[str, Any], threads: int) -> None:
        runtime = _require_runtime()
        delegate = options.get("delegate", "xnnpack")
        if delegate not in DELEGATES:
            raise RuntimeError(f"tflite delegate '{delegate}' is not one of {sorted(DELEGATES)}")
        resolver = runtime.OpResolverType[DELEGATES[delegate]]
        self._interpreter = runtime.Interpreter(
            model_path=artifact, num_threads=threads, experimental_op_resolver_type=resolver
        )
        self._interpreter.allocate_tensors()
        details = self._interpreter.get_input_details()[0]
        self._input = details["index"]
        self._dtype = details["dtype"]
        self._shape = tuple(int(d) for d in details["shape"])
        self._dynamic_batch = int(details["shape_signature"][0]) == -1
        self._output = self._interpreter.get_output_details()[0]["index"]

    def _invoke(self, inputs: np.ndarray) -> np.ndarray:
        self._interpreter.set_tensor(self._input, inputs)
        self._interpreter.invoke()
        return self._interpreter.get_tensor(self._output).copy()

    def run(self, inputs: np.ndarray) -> np.ndarray:
        inputs = np.ascontiguousarray(inputs, dtype=self._dtype)
        if inputs.shape == self._shape:
            return self._invoke(inputs)
        if self._dynamic_batch:
            self._interpreter.resize_tensor_input(self._input, inputs.shape)
            self._interpreter.allocate_tensors()
            self._shape = inputs.shape
            return self._invoke(inputs)
        step = self._shape[0]
        if inputs.shape[1:] != self._shape[1:] or len(inputs) % step:
            raise RuntimeError(f"input of shape {inputs.shape} does not fit the model's static input {self._shape}")
        return np.concatenate([self._invoke(inputs[i : i + step]) for i in range(0, len(inputs), step)])

    def timed_call(self, sample: np.ndarray) -> Callable[[], object]:
        """One timed inference: set the sample, invoke; the output stays in the interpreter's buffer (reading it
        back is the caller's copy, not the model's latency)."""
        sample = np.ascontiguousarray(sample, dtype=self._dtype)
        if sample.shape != self._shape:
            self.run(sample)  # resizes a dynamic batch once, or says why the sample does not fit
        if sample.shape != self._shape:
            return lambda: self.run(sample)  # a static batch the sample is split into

        def call() -> None:
            self._interpreter.set_tensor(self._input, sample)
            self._interpreter.invoke()

        return call


def configure_process(threads: int) -> None:
    """Nothing to set per process: sessions of this runtime do not disturb each other's timing."""


def versions() -> dict[str, str]:
    _require_runtime()
    return {"ai-edge-litert": metadata.version("ai-edge-litert")}
