"""Hardware profiles: what a device runs, how, and which precisions each layer kind may take there.

A profile is validated against its runtime's record when it is loaded: a precision the runtime cannot build for
a layer kind, quantizer options it does not take, or settings it calls inconsistent are one line naming the
file, never a silent fp32 later.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from autocompress import yamlio
from autocompress.errors import AutocompressError, DeviceError
from autocompress.home import home
from autocompress.runtimes import Runtime, get_runtime
from autocompress.spaces.vocabulary import LAYER_KINDS, Precision

BUILTIN_DIR = Path(__file__).parent / "profiles"
# ssh://user@host[:port]; an IPv6 host goes in brackets (ssh://pi@[fe80::1]:2222)
SSH_HOST = re.compile(r"ssh://([^@/\s]+)@(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::(\d+))?")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def ssh_host_parts(url: str) -> tuple[str, str, int]:
    """(user, host, port) of ssh://user@host[:port]; a ValueError names what is wrong: the form, or the port."""
    match = SSH_HOST.fullmatch(url)
    if not match:
        raise ValueError(f"host '{url}' must be 'local' or ssh://user@host[:port]")
    port = int(match[3] or 22)
    if not 0 < port < 65536:
        raise ValueError(f"host '{url}': port {port} out of range (1-65535)")
    return match[1], match[2].strip("[]"), port


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
    runtime: str = Field(description="a built-in runtime (autocompress devices lists them) or a module with RUNTIME")
    runtime_options: dict[str, Any] = Field(default_factory=dict)
    quantize: dict[str, Any] = Field(default_factory=dict, description="the runtime's quantizer options")
    threads: int = Field(default=2, ge=1)
    precisions: dict[str, list[Precision]] = Field(
        description="layer kind (Conv, Gemm, MatMul) -> precisions it may take on this device"
    )
    batch_size: int = Field(default=1, ge=1)
    channel_round_to: int = Field(default=1, ge=1, description="keep pruned channel counts multiples of this")
    host: str = Field(default="local", description="local, or ssh://user@host[:port]")
    remote: RemoteSettings = Field(default_factory=RemoteSettings)
    verified_on_hardware: bool = Field(
        default=False, description="this profile's runtime path has run on the hardware it describes"
    )
    source: Path | None = Field(default=None, exclude=True, description="the YAML file it was read from")

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        if not NAME.match(value):
            raise ValueError(f"'{value}' must be letters, digits, '.', '_' or '-' (it names folders and studies)")
        return value

    @field_validator("host")
    @classmethod
    def _host_form(cls, value: str) -> str:
        if value != "local":
            ssh_host_parts(value)
        return value

    @field_validator("precisions")
    @classmethod
    def _fp32_always_allowed(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for kind, choices in value.items():
            if kind not in LAYER_KINDS:
                raise ValueError(f"layer kind '{kind}' is not one of {', '.join(LAYER_KINDS)}")
            if "fp32" not in choices:
                raise ValueError(f"precisions for {kind} must include fp32 (the uncompressed choice)")
        return value

    @model_validator(mode="after")
    def _runtime_can_build_it(self, info: ValidationInfo) -> HardwareProfile:
        base_dir = (info.context or {}).get("base_dir")
        try:
            runtime = get_runtime(self.runtime, base_dir)
        except AutocompressError as error:
            raise ValueError(str(error)) from None
        try:
            runtime.quantize_options(**self.quantize)
        except ValidationError as error:
            first = error.errors()[0]
            raise ValueError(f"quantize.{'.'.join(map(str, first['loc']))}: {first['msg']}") from None
        for kind, choices in self.precisions.items():
            possible = runtime.precisions(self, kind)
            missing = [precision for precision in choices if precision not in possible]
            if missing:
                raise ValueError(
                    f"{runtime.name} cannot build {', '.join(missing)} for {kind} layers "
                    f"(it builds {', '.join(possible) or 'nothing'} there)"
                )
        problem = runtime.check(self)
        if problem:
            raise ValueError(problem)
        return self

    @property
    def record(self) -> Runtime:
        """The runtime's record (hardware-independent facts: artifact files, builder, session)."""
        return get_runtime(self.runtime, self.source.parent if self.source else None)

    @property
    def export_format(self) -> str:
        return self.record.export_format

    @property
    def is_remote(self) -> bool:
        return self.host != "local"

    @property
    def default_runtime_options(self) -> dict[str, Any]:
        """The runtime options a user who changes nothing gets: the profile's, less those that force fp32 math."""
        forced = self.record.forced_options
        return {key: value for key, value in self.runtime_options.items() if key not in forced}

    @property
    def default_differs(self) -> bool:
        """The runtime's default settings are not the forced-fp32 ones: the two baselines are timed apart."""
        return self.default_runtime_options != self.runtime_options

    def precision_choices(self, kind: str) -> list[str]:
        """The precisions a layer of this kind may take; fp32 only when the device lists none."""
        return list(self.precisions.get(kind, ["fp32"]))


def _profile_files() -> tuple[list[Path], list[Path]]:
    """(built-in files, the user's files in $AUTOCOMPRESS_HOME/profiles)."""
    user_dir = home() / "profiles"
    return sorted(BUILTIN_DIR.glob("*.yaml")), sorted(user_dir.glob("*.yaml")) if user_dir.is_dir() else []


def load_profile_file(path: Path) -> HardwareProfile:
    """Read and validate one profile YAML; errors name the file and the first problem."""
    try:
        raw = yamlio.load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise DeviceError(f"cannot read hardware profile {path}: {error}".splitlines()[0]) from None
    if not isinstance(raw, dict):
        raise DeviceError(f"hardware profile {path} must be a YAML mapping")
    raw.pop("export_format", None)  # older profiles said it; it is the runtime's, not the device's
    try:
        folder = path.resolve().parent
        return HardwareProfile.model_validate(raw | {"source": path.resolve()}, context={"base_dir": folder})
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        message = str(first["msg"]).removeprefix("Value error, ")
        raise DeviceError(f"hardware profile {path}: {where + ': ' if where else ''}{message}") from None


def all_profiles() -> dict[str, HardwareProfile]:
    """Built-in profiles, then the user's (`$AUTOCOMPRESS_HOME/profiles/*.yaml`), by name. A user's profile may
    not take a built-in name or alias: `cpu` must never silently mean someone's SSH host."""
    builtin_files, user_files = _profile_files()
    profiles: dict[str, HardwareProfile] = {}
    taken: dict[str, Path] = {}
    for path in [*builtin_files, *user_files]:
        profile = load_profile_file(path)
        for word in [profile.name, *profile.aliases]:
            if word in taken:
                raise DeviceError(
                    f"hardware profile {path} uses the name '{word}', already taken by {taken[word]}: rename one"
                )
            taken[word] = path
        profiles[profile.name] = profile
    return profiles


def _builtin_words() -> dict[str, Path]:
    """Every built-in profile's name and aliases -> its file (read as plain YAML: nothing is imported)."""
    words: dict[str, Path] = {}
    for path in _profile_files()[0]:
        raw = yamlio.load(path.read_text())
        words |= {word: path for word in [raw["name"], *raw.get("aliases", [])]}
    return words


def get_profile(name_or_path: str) -> HardwareProfile:
    """A profile by name, alias or path to a YAML file; unknown names list the known ones."""
    if name_or_path.endswith((".yaml", ".yml")):
        path = Path(name_or_path)
        if not path.is_file():
            raise DeviceError(f"hardware profile file '{name_or_path}' does not exist")
        profile = load_profile_file(path)
        if path.resolve().parent != BUILTIN_DIR.resolve():  # a copy of a built-in must be renamed, as in the home
            taken = _builtin_words()
            for word in [profile.name, *profile.aliases]:
                if word in taken:
                    raise DeviceError(
                        f"hardware profile {path} uses the name '{word}', already taken by the built-in "
                        f"{taken[word]}: rename it"
                    )
        return profile
    profiles = all_profiles()
    for profile in profiles.values():
        if name_or_path == profile.name or name_or_path in profile.aliases:
            return profile
    known = ", ".join(sorted(profiles))
    raise DeviceError(f"unknown device '{name_or_path}': known devices are {known} (or pass a profile .yaml)")
