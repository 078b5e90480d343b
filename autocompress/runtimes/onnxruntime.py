"""ONNX Runtime: ONNX artifacts quantized per layer with onnxruntime.quantization, run by an InferenceSession.

CPU: static QDQ int8 (signed per-channel weights; unsigned asymmetric activations by default). GPU providers:
also fp16 per layer. TensorRT accepts only signed, symmetric int8 activations, so a TensorRT profile must say
so in its `quantize:` options (jetson-orin.yaml does), and it must not let TensorRT run fp32 layers in fp16.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from autocompress.runtimes.base import DEVICE_DIR, DeviceProfile, Recipe, Runtime, Scheme
from autocompress.runtimes.onnxruntime_options import (
    GPU_PROVIDERS,
    TENSORRT,
    OrtQuantizeOptions,
    primary_provider,
    providers,
)


def _activations(profile: DeviceProfile) -> str:
    options = OrtQuantizeOptions(**profile.quantize)
    symmetric = "symmetric" if options.activation_symmetric else "asymmetric"
    return f"{options.activation_type} {symmetric} activations, calibrated"


DYNAMIC = Scheme("int8-dynamic", "int8 per-channel weights", "uint8 activations quantized per call (MatMulInteger)")


def capabilities(profile: DeviceProfile) -> dict[str, tuple[Scheme, ...]]:
    int8 = Scheme("int8", "int8 per-channel weights", _activations(profile))
    schemes = [int8, Scheme("fp32")]
    if primary_provider(profile) in GPU_PROVIDERS:
        schemes.insert(1, Scheme("fp16", "fp16 weights", "fp16 activations (casts at the layer's edges)"))
    static = tuple(schemes)
    # quantize_dynamic has integer kernels for MatMul (not Gemm); TensorRT takes only explicit static QDQ
    matmul = static if primary_provider(profile) == TENSORRT else (DYNAMIC, *static)
    return {"Conv": static, "Gemm": static, "MatMul": matmul}


def recipes(profile: DeviceProfile) -> tuple[Recipe, ...]:
    """ONNX Runtime's documented recipes: quantize_dynamic (per-channel, reduce_range on CPUs without VNNI) for
    MatMul layers (transformers) with quantize_static for the rest; and quantize_static (QDQ) everywhere."""
    return (
        Recipe(
            "onnxruntime dynamic int8 (MatMul) + static int8",
            {"Conv": "int8", "Gemm": "int8", "MatMul": "int8-dynamic"},
            kinds=("MatMul",),
        ),
        Recipe("onnxruntime static int8 (QDQ)", dict.fromkeys(("Conv", "Gemm", "MatMul"), "int8")),
    )


def probe(profile: DeviceProfile) -> str | None:
    import onnxruntime

    primary = primary_provider(profile)
    if primary not in onnxruntime.get_available_providers():
        return (
            f"{primary} not in onnxruntime's providers ({', '.join(onnxruntime.get_available_providers())}): "
            "install onnxruntime-gpu on the device, or set host: ssh://user@device in the profile"
        )
    return None


def check(profile: DeviceProfile) -> str | None:
    """TensorRT: signed symmetric int8 only, full-range weights, and fp16 only where the strategy puts it."""
    if primary_provider(profile) != TENSORRT:
        return None
    options = OrtQuantizeOptions(**profile.quantize)
    if options.activation_type != "int8" or not options.activation_symmetric:
        return (
            "TensorRT takes only signed symmetric int8: "
            "set quantize: {activation_type: int8, activation_symmetric: true}"
        )
    if options.reduce_range is True:
        return "reduce_range quantizes weights to 7 bits for CPUs; TensorRT takes full-range int8: remove it"
    settings = providers(profile)[0]
    if not isinstance(settings, str) and settings[1].get("trt_fp16_enable"):
        return "trt_fp16_enable lets TensorRT run fp32 layers (and the baseline) in fp16: set it to false"
    return None


def artifact_options(options: Mapping[str, Any], artifact: Path, shapes: Sequence[Sequence[int]],
                     timed: Sequence[int]) -> dict[str, Any]:  # fmt: skip
    """TensorRT's settings made for each artifact (hardware/tensorrt.py); other providers' options as they are."""
    from autocompress.hardware.tensorrt import artifact_options as tensorrt_options  # onnx, on use

    return tensorrt_options(options, artifact, shapes, timed)


def build(*args: Any, **kwargs: Any) -> Path:
    from autocompress.compress.quantize_onnxruntime import build_artifact  # onnx and the quantizer, on use

    return build_artifact(*args, **kwargs)


RUNTIME = Runtime(
    name="onnxruntime",
    export_format="onnx",
    artifact="model.onnx",
    companions=(),
    build_packages=("onnxruntime",),
    device_module="onnxruntime",
    session_file=DEVICE_DIR / "onnxruntime_session.py",
    builder=build,
    capabilities=capabilities,
    probe=probe,
    check=check,
    quantize_options=OrtQuantizeOptions,
    recipes=recipes,
    description="ONNX Runtime (CPU, CUDA, TensorRT execution providers)",
    resolved_quantize=lambda profile: {"reduce_range": OrtQuantizeOptions(**profile.quantize).reduce(profile)},
    artifact_options=artifact_options,
)
