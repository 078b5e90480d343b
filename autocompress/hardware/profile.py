"""Hardware profiles: what a device runs, how, and which precisions each layer type may take there."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from autocompress.errors import DeviceError
from autocompress.home import home

BUILTIN_DIR = Path(__file__).parent / "profiles"
SSH_HOST = re.compile(r"^ssh://[A-Za-z0-9._-]+@[A-Za-z0-9.:\[\]_-]+?(:\d{1,5})?$")
Precision = Literal["fp32", "fp16", "int8", "int16", "int4"]


class RemoteSettings(BaseModel):
    """How to reach and use a device over SSH (key-based auth only)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    python: str = Field(default="python3", description="Python on the device with numpy and the runtime package")
    workdir: str = Field(default=".autocompress-device", description="working folder on the device")
    identity_file: str | None = Field(default=None, description="private key; default: the SSH agent / ~/.ssh keys")
    known_hosts: str | None = Field(default=None, description="known_hosts file; unknown host keys are refused")
    connect_timeout_s: float = Field(default=10.0, gt=0)
    command_timeout_s: float = Field(default=900.0, gt=0)
    retries: int = Field(default=2, ge=0)


class HardwareProfile(BaseModel):
    """A device as data; validated so a typo in a user's profile is one clear line, not a crash mid-search."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    description: str = ""
    aliases: list[str] = Field(default_factory=list)
    runtime: Literal["onnxruntime", "openvino", "tflite"]
    runtime_options: dict[str, Any] = Field(default_factory=dict)
    threads: int = Field(default=2, ge=1)
    precisions: dict[str, list[Precision]] = Field(
        description="layer type (Conv, Gemm, MatMul) -> precisions it may take on this device"
    )
    export_format: Literal["onnx", "openvino", "tflite"] = "onnx"
    batch_size: int = Field(default=1, ge=1)
    channel_round_to: int = Field(default=1, ge=1, description="keep pruned channel counts multiples of this")
    host: str = Field(default="local", description="local, or ssh://user@host[:port]")
    remote: RemoteSettings = Field(default_factory=RemoteSettings)

    @field_validator("host")
    @classmethod
    def _host_form(cls, value: str) -> str:
        if value != "local" and not SSH_HOST.match(value):
            raise ValueError(f"host '{value}' must be 'local' or ssh://user@host[:port]")
        return value

    @property
    def is_remote(self) -> bool:
        return self.host != "local"

    @field_validator("precisions")
    @classmethod
    def _fp32_always_allowed(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for layer_type, choices in value.items():
            if "fp32" not in choices:
                raise ValueError(f"precisions for {layer_type} must include fp32 (the uncompressed choice)")
        return value

    def precision_choices(self, layer_type: str) -> list[str]:
        """The precisions a layer of this ONNX op type may take; fp32 only when the device lists none."""
        return list(self.precisions.get(layer_type, ["fp32"]))


def _profile_files() -> list[Path]:
    user_dir = home() / "profiles"
    files = sorted(BUILTIN_DIR.glob("*.yaml"))
    if user_dir.is_dir():
        files += sorted(user_dir.glob("*.yaml"))
    return files


def load_profile_file(path: Path) -> HardwareProfile:
    """Read and validate one profile YAML; errors name the file and the first problem."""
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise DeviceError(f"cannot read hardware profile {path}: {error}".splitlines()[0]) from None
    if not isinstance(raw, dict):
        raise DeviceError(f"hardware profile {path} must be a YAML mapping")
    try:
        return HardwareProfile(**raw)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise DeviceError(f"hardware profile {path}: {where}: {first['msg']}") from None


def all_profiles() -> dict[str, HardwareProfile]:
    """Built-in profiles, then the user's (`$AUTOCOMPRESS_HOME/profiles/*.yaml`), by name."""
    profiles = {}
    for path in _profile_files():
        profile = load_profile_file(path)
        profiles[profile.name] = profile
    return profiles


def get_profile(name_or_path: str) -> HardwareProfile:
    """A profile by name, alias or path to a YAML file; unknown names list the known ones."""
    if name_or_path.endswith((".yaml", ".yml")):
        path = Path(name_or_path)
        if not path.is_file():
            raise DeviceError(f"hardware profile file '{name_or_path}' does not exist")
        return load_profile_file(path)
    profiles = all_profiles()
    for profile in profiles.values():
        if name_or_path == profile.name or name_or_path in profile.aliases:
            return profile
    known = ", ".join(sorted(profiles))
    raise DeviceError(f"unknown device '{name_or_path}': known devices are {known} (or pass a profile .yaml)")
