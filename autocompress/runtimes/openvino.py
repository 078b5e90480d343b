"""OpenVINO: ONNX converted to OpenVINO IR (model.xml + model.bin), int8 per layer with NNCF, run by the plugin."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from autocompress.runtimes.base import DEVICE_DIR, DeviceProfile, Knob, Recipe, Runtime, Scheme

INT8 = Scheme("int8", "int8 symmetric per-channel weights", "int8/uint8 activations (NNCF), calibrated")


KNOBS = (
    # SmoothQuant migrates activation outliers into the weights of MatMul layers (None: NNCF's default for the
    # model type, on for transformers); OverflowFix halves the weights' range where u8s8 products can saturate
    Knob("smooth_quant", (None, 0.15, 0.5, 0.95), None),
    Knob("overflow_fix", ("first_layer_only", "enable", "disable"), "first_layer_only"),
)


def capabilities(profile: DeviceProfile) -> dict[str, tuple[Scheme, ...]]:
    return dict.fromkeys(("Conv", "Gemm", "MatMul"), (INT8, Scheme("fp32")))


def recipes(profile: DeviceProfile) -> tuple[Recipe, ...]:
    """nncf.quantize on the ov.Model (TRANSFORMER model type for transformers, so SmoothQuant applies), and for
    transformers the same with SmoothQuant alpha 0.5 on MatMul (NNCF's advanced parameters)."""
    every = dict.fromkeys(("Conv", "Gemm", "MatMul"), "int8")
    return (
        Recipe("NNCF int8 (model type preset)", every),
        Recipe("NNCF int8, SmoothQuant 0.5", every, {"smooth_quant": 0.5}, kinds=("MatMul",)),
    )


def probe(profile: DeviceProfile) -> str | None:
    import openvino

    device = profile.runtime_options.get("device", "CPU")
    available = openvino.Core().available_devices
    if not any(name.split(".")[0] == device.split(".")[0] for name in available):
        return f"OpenVINO device {device} not available here (found {', '.join(available)})"
    return None


def runtime_precisions(profile: DeviceProfile) -> tuple[str, ...]:
    """fp32, and bf16 where the plugin runs it on this machine's CPU (its default there: what a user who sets
    nothing gets). A remote device's capabilities are not this machine's: fp32 only."""
    device = profile.runtime_options.get("device", "CPU")
    if profile.is_remote or device.split(".")[0] != "CPU":
        return ("fp32",)
    import openvino

    capabilities = openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    return ("fp32", "bf16") if "BF16" in capabilities else ("fp32",)


def build(*args: Any, **kwargs: Any) -> Path:
    from autocompress.compress.quantize_openvino import build_artifact  # openvino and nncf, on use

    return build_artifact(*args, **kwargs)


RUNTIME = Runtime(
    name="openvino",
    export_format="openvino",
    artifact="model.xml",
    companions=("model.bin",),
    build_packages=("openvino", "nncf"),
    device_module="openvino",
    session_file=DEVICE_DIR / "openvino_session.py",
    builder=build,
    capabilities=capabilities,
    probe=probe,
    knobs=KNOBS,
    recipes=recipes,
    description="OpenVINO (CPU plugin; NNCF int8)",
    forced_options=("inference_precision_hint",),
    runtime_precisions=runtime_precisions,
)
