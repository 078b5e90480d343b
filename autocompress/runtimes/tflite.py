"""LiteRT (TFLite): litert-torch conversion, per-layer ai-edge-quantizer recipes, the interpreter with XNNPACK.

Graphs have static shapes: a task whose inputs vary beyond the batch (a sentence's length) cannot be served.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from autocompress.runtimes.base import DEVICE_DIR, DeviceProfile, Recipe, Runtime, Scheme

INT8 = Scheme("int8", "int8 per-channel weights", "int8 activations, calibrated")
INT16 = Scheme("int16", "int8 weights", "int16 activations (no XNNPACK kernels)")
INT4 = Scheme("int4", "int4 per-channel weights", "activations quantized at run time")
FP16 = Scheme("fp16", "fp16 weights", "fp32 compute")


DYNAMIC = Scheme("int8-dynamic", "int8 per-channel weights", "activations quantized at run time")


def capabilities(profile: DeviceProfile) -> dict[str, tuple[Scheme, ...]]:
    linear = (INT8, DYNAMIC, INT16, INT4, FP16, Scheme("fp32"))
    return {"Conv": (INT8, INT16, FP16, Scheme("fp32")), "Gemm": linear, "MatMul": linear}


def recipes(profile: DeviceProfile) -> tuple[Recipe, ...]:
    """ai-edge-quantizer's stock recipes: static_wi8_ai8, and dynamic_wi8_afp32 (on Linear layers)."""
    return (
        Recipe("ai-edge-quantizer static int8", dict.fromkeys(("Conv", "Gemm", "MatMul"), "int8")),
        Recipe(
            "ai-edge-quantizer dynamic int8 (Linear)",
            {"Gemm": "int8-dynamic", "MatMul": "int8-dynamic"},
            kinds=("Gemm", "MatMul"),
        ),  # fmt: skip
    )


def build(*args: Any, **kwargs: Any) -> Path:
    from autocompress.compress.quantize_tflite import build_artifact  # litert-torch and the quantizer, on use

    return build_artifact(*args, **kwargs)


RUNTIME = Runtime(
    name="tflite",
    export_format="tflite",
    artifact="model.tflite",
    companions=(),
    build_packages=("litert_torch", "ai_edge_quantizer", "ai_edge_litert"),
    device_module="ai_edge_litert",
    session_file=DEVICE_DIR / "tflite_session.py",
    builder=build,
    capabilities=capabilities,
    dynamic_shapes=False,
    recipes=recipes,
    description="LiteRT / TFLite (XNNPACK; ai-edge-quantizer)",
)
