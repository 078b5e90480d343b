"""ONNX Runtime's settings in a profile: its execution providers and its quantizer's options (`quantize:`). A
module of their own, so both the runtime's record (runtimes/onnxruntime.py) and its builder
(compress/quantize_onnxruntime.py) read them without importing each other."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from autocompress.runtimes.base import DeviceProfile

TENSORRT = "TensorrtExecutionProvider"
GPU_PROVIDERS = ("CUDAExecutionProvider", TENSORRT)


class OrtQuantizeOptions(BaseModel):
    """onnxruntime.quantization settings a profile may set (`quantize:`). reduce_range "auto" uses 7-bit weights
    on CPUs without VNNI, where u8s8 products can saturate (ORT's own advice), and on remote devices (unknown)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    activation_type: Literal["uint8", "int8"] = "uint8"
    activation_symmetric: bool = False
    per_channel: bool = True
    reduce_range: bool | Literal["auto"] = "auto"

    def reduce(self, profile: DeviceProfile) -> bool:
        """Never for TensorRT: it takes full-range signed int8 weights (7 bits would only lose precision)."""
        if primary_provider(profile) == TENSORRT:
            return False
        if self.reduce_range != "auto":
            return bool(self.reduce_range)
        return profile.is_remote or not has_vnni()


def has_vnni() -> bool:
    """x86 VNNI (AVX512-VNNI or AVX-VNNI): int8 dot products without the u8s8 saturation risk."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_vnni" in flags or "avx_vnni" in flags


def providers(profile: DeviceProfile) -> list[Any]:
    return list(profile.runtime_options.get("providers", ["CPUExecutionProvider"]))


def primary_provider(profile: DeviceProfile) -> str:
    first = providers(profile)[0]
    return first if isinstance(first, str) else first[0]
