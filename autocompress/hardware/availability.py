"""Is a hardware profile usable from here? One line saying why not, before any training happens."""

from __future__ import annotations

import importlib.util

from autocompress.errors import DeviceError
from autocompress.hardware.profile import HardwareProfile, get_profile


def _missing_packages(packages: tuple[str, ...]) -> list[str]:
    return [name for name in packages if importlib.util.find_spec(name) is None]


def availability(profile: HardwareProfile) -> str | None:
    """None when a search on this profile can run from here; otherwise the one-line reason."""
    runtime = profile.record
    missing = _missing_packages(runtime.build_packages)
    if missing:
        return f"{', '.join(missing)} not installed here (needed to build {runtime.name} artifacts): pip install them"
    if profile.is_remote:
        from autocompress.hardware.remote import probe  # imported on use: paramiko only for SSH devices

        return probe(profile)
    return runtime.probe(profile)


def usable_profile(device: str) -> HardwareProfile:
    """The profile, or a DeviceError with the one-line reason it cannot run from here (before any training)."""
    profile = get_profile(device)
    problem = availability(profile)
    if problem is not None:
        raise DeviceError(f"device '{profile.name}' is not usable here: {problem}")
    return profile
