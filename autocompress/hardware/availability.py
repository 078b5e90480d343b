"""Is a hardware profile usable from here? One line saying why not, before any training happens."""

from __future__ import annotations

import importlib.util

from autocompress.hardware.profile import HardwareProfile

# What the controller needs to build artifacts for each runtime (the device needs only the runtime itself).
BUILD_PACKAGES = {
    "onnxruntime": ["onnxruntime"],
    "openvino": ["openvino", "nncf"],
    "tflite": ["litert_torch", "ai_edge_quantizer", "ai_edge_litert"],
}


def _missing_packages(packages: list[str]) -> list[str]:
    return [name for name in packages if importlib.util.find_spec(name) is None]


def _local_runtime_problem(profile: HardwareProfile) -> str | None:
    options = profile.runtime_options
    if profile.runtime == "onnxruntime":
        import onnxruntime

        providers = options.get("providers", ["CPUExecutionProvider"])
        primary = providers[0] if isinstance(providers[0], str) else providers[0][0]
        if primary not in onnxruntime.get_available_providers():
            return (
                f"{primary} not in onnxruntime's providers ({', '.join(onnxruntime.get_available_providers())}): "
                "install onnxruntime-gpu on the device, or set host: ssh://user@device in the profile"
            )
    if profile.runtime == "openvino":
        import openvino

        device = options.get("device", "CPU")
        available = openvino.Core().available_devices
        if not any(name.split(".")[0] == device.split(".")[0] for name in available):
            return f"OpenVINO device {device} not available here (found {', '.join(available)})"
    return None


def availability(profile: HardwareProfile) -> str | None:
    """None when a search on this profile can run from here; otherwise the one-line reason."""
    missing = _missing_packages(BUILD_PACKAGES[profile.runtime])
    if missing:
        return (
            f"{', '.join(missing)} not installed here (needed to build {profile.runtime} artifacts): pip install them"
        )
    if profile.is_remote:
        from autocompress.hardware.remote import probe

        return probe(profile)
    return _local_runtime_problem(profile)
