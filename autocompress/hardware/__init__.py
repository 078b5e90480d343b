"""Hardware profiles (data) and their availability on this machine."""

from autocompress.hardware.profile import HardwareProfile, all_profiles, get_profile

__all__ = ["HardwareProfile", "all_profiles", "get_profile"]
