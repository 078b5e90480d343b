"""A runtime added from outside autocompress: ONNX's own reference evaluator (pure numpy), fp32 only.

This one module and the profile beside it (onnx-reference.yaml) are everything: the profile names this module as
its runtime, the record below says what it builds and where its session is (this very file), and nothing in
autocompress is edited. The top of the file is device-side (stdlib and numpy; onnx imported when a session
opens), so the same file can be shipped to a remote device; the record needs autocompress, so it is defined only
where autocompress is installed.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np


class Session:
    """One reference evaluator; `run` maps a batch to the model's first output."""

    def __init__(self, artifact: str, options: dict[str, Any], threads: int) -> None:
        from onnx.reference import ReferenceEvaluator

        self._evaluator = ReferenceEvaluator(artifact)
        self._input = self._evaluator.input_names[0]

    def run(self, inputs: np.ndarray) -> np.ndarray:
        return self._evaluator.run(None, {self._input: np.asarray(inputs, dtype=np.float32)})[0]

    def timed_call(self, sample: np.ndarray) -> Callable[[], object]:
        return lambda: self.run(sample)


def configure_process(threads: int) -> None:
    """Nothing to set: the evaluator is plain numpy."""


def versions() -> dict[str, str]:
    return {"onnx": metadata.version("onnx")}


def build(model: Any, example_input: Any, settings: Any, calibration: Any, workdir: Path, profile: Any,
          dynamic_axes: Any) -> Path:  # fmt: skip
    """fp32 only (the record promises nothing else): the ONNX export itself is the artifact."""
    from autocompress.compress.export import export_onnx

    target = workdir / "model.onnx"
    export_onnx(model, example_input, target, dynamic_axes)
    return target


try:  # the record, on the controller (a device has no autocompress, and needs only the part above)
    from autocompress.runtimes.base import Runtime, Scheme
except ImportError:
    pass
else:
    RUNTIME = Runtime(
        name="onnx-reference",
        export_format="onnx",
        artifact="model.onnx",
        companions=(),
        build_packages=("onnx",),
        device_module="onnx",
        session_file=Path(__file__).resolve(),
        builder=build,
        capabilities=lambda profile: dict.fromkeys(("Conv", "Gemm", "MatMul"), (Scheme("fp32"),)),
        description="ONNX reference evaluator (numpy), fp32",
    )
