"""OpenVINO compiled model from a profile's runtime options: device, pinned threads, one stream.

INFERENCE_PRECISION_HINT is set only where the options name it: the built-in profiles force f32 (the CPU plugin
otherwise runs fp32 layers in bf16 on CPUs that have it, which would change the accuracy the search measures),
and the runtime-default baseline leaves it out, as a user's plain `compile_model` does; an artifact built for
another precision (a strategy's `runtime_precision: bf16`) carries its hint in the IR, and that one wins.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import openvino as ov

VIRTUAL_DEVICES = ("AUTO", "MULTI", "HETERO", "BATCH")
# Where an artifact carries the inference precision it was built for and measured with (a strategy's
# `runtime_precision`, in the IR's rt_info); it overrides the profile's forced f32. Absent: the options decide.
PRECISION_RT_INFO = ["autocompress", "inference_precision_hint"]
HINTS = {"fp32": "f32", "bf16": "bf16"}  # a strategy's runtime precision -> OpenVINO's hint


def own_precision(model: ov.Model) -> str | None:
    """The inference precision hint an artifact carries (None: it carries none)."""
    return model.get_rt_info(PRECISION_RT_INFO).astype(str) if model.has_rt_info(PRECISION_RT_INFO) else None


def _check_device(core: ov.Core, device: str) -> None:
    """A physical device the runtime does not see is one clear line, not a plugin traceback."""
    base = device.split(":")[0].split(".")[0]
    available = core.available_devices
    if base not in VIRTUAL_DEVICES and not any(name.split(".")[0] == base for name in available):
        raise RuntimeError(f"OpenVINO device {device} not available (found {', '.join(available) or 'none'})")


def reason(error: Exception) -> str:
    """The line of an OpenVINO error that says what went wrong (it is preceded by a stack of source locations)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    meaningful = [line for line in lines if not line.startswith("Exception from ")]
    return (meaningful or lines or [type(error).__name__])[-1]


class Session:
    """One compiled model and one reused InferRequest; `run` maps a batch to the model's first output."""

    def __init__(self, artifact: str, options: dict[str, Any], threads: int) -> None:
        core = ov.Core()
        device = options.get("device", "CPU")
        _check_device(core, device)
        config = {
            "INFERENCE_NUM_THREADS": threads,
            "PERFORMANCE_HINT": options.get("performance_hint", "LATENCY"),
            "NUM_STREAMS": 1,
            **options.get("config", {}),
        }
        if options.get("inference_precision_hint"):
            config["INFERENCE_PRECISION_HINT"] = options["inference_precision_hint"]
        try:
            model = core.read_model(artifact)
            if own := own_precision(model):
                config["INFERENCE_PRECISION_HINT"] = own
            self._compiled = core.compile_model(model, device, config)
        except RuntimeError as error:
            raise RuntimeError(f"OpenVINO cannot compile {artifact} for {device}: {reason(error)}") from error
        self._request = self._compiled.create_infer_request()
        self._dtype = self._compiled.input(0).get_element_type().to_dtype()  # token ids stay integers

    def run(self, inputs: np.ndarray) -> np.ndarray:
        self._request.infer({0: np.ascontiguousarray(inputs, dtype=self._dtype)}, share_inputs=True, share_outputs=True)
        return self._request.get_output_tensor(0).data.copy()  # the request's buffer is reused by the next call

    def timed_call(self, sample: np.ndarray) -> Callable[[], object]:
        """One timed inference: the request on the sample, its output left in the request's buffer (reading it
        back is the caller's copy, not the model's latency; a per-call copy added ~2% to a 0.3 ms model)."""
        inputs = {0: np.ascontiguousarray(sample, dtype=self._dtype)}
        return lambda: self._request.infer(inputs, share_inputs=True, share_outputs=True)


def configure_process(threads: int) -> None:
    """Nothing to set per process: sessions of this runtime do not disturb each other's timing."""


def versions() -> dict[str, str]:
    return {"openvino": ov.__version__}
