"""What a runtime is to autocompress: one record, from which every registry is derived.

A runtime module (autocompress/runtimes/<name>.py, or any module a profile names) defines `RUNTIME = Runtime(...)`:
its name, the artifact it builds (format and files), what it needs (packages here, the module on the device, an
availability probe), what it can build per layer kind (precision and scheme), its builder, and its device-side
session file. Nothing else in autocompress names a runtime: profiles, the pipeline, the runners, `devices` and
the sizes of artifacts all read these records.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    import torch
    from torch import nn

    from autocompress.spaces.sections import QuantizeSettings
    from autocompress.task import Batches, DynamicAxes

DEVICE_DIR = Path(__file__).resolve().parent.parent / "evaluators" / "device"


@dataclass(frozen=True)
class Scheme:
    """How a runtime builds one precision for one layer kind: what the weights and the activations become."""

    precision: str
    weights: str = ""
    activations: str = ""

    def describe(self) -> str:
        parts = [part for part in (self.weights, self.activations) if part]
        return f"{self.precision} ({'; '.join(parts)})" if parts else self.precision


class DeviceProfile(Protocol):
    """What a runtime reads of a device's profile (hardware/profile.py's HardwareProfile is one). Declared here,
    not imported: profiles look their runtime's record up, so the records must not import the profiles."""

    @property
    def name(self) -> str: ...

    @property
    def runtime_options(self) -> dict[str, Any]: ...

    @property
    def quantize(self) -> dict[str, Any]: ...

    @property
    def is_remote(self) -> bool: ...


class Builder(Protocol):
    """(pruned, distilled model) -> the artifact's main file in `workdir`, with exactly the strategy's layers at
    their precisions, built with the profile's quantizer options."""

    def __call__(
        self,
        model: nn.Module,
        example_input: torch.Tensor,
        settings: QuantizeSettings,
        calibration: Batches,
        workdir: Path,
        profile: DeviceProfile,
        dynamic_axes: DynamicAxes | None,
    ) -> Path: ...


@dataclass(frozen=True)
class Knob:
    """A setting of the runtime's quantizer that the search may vary (`quantize/<name>`), with the value its
    one-click recipe uses."""

    name: str
    choices: tuple[Any, ...]
    default: Any


@dataclass(frozen=True)
class Recipe:
    """What the runtime's documentation gives in one call, as a strategy: a precision per layer kind and knob
    values. Searches start from these (warm starts), so they never end below them."""

    label: str
    precisions: Mapping[str, str]  # layer kind -> precision
    options: Mapping[str, Any] = field(default_factory=dict)
    kinds: tuple[str, ...] = ()  # only for models with layers of these kinds (empty: any model)


class NoOptions(BaseModel):
    """A runtime whose quantizer takes no options from the profile."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def no_problem(profile: DeviceProfile) -> str | None:
    return None


# (the options, the artifact, the input shapes it is scored at, the shape it is timed at) -> its loading options
ArtifactOptions = Callable[[Mapping[str, Any], Path, Sequence[Sequence[int]], Sequence[int]], dict[str, Any]]


@dataclass(frozen=True)
class Runtime:
    """One runtime, as data. `capabilities(profile)` lists per layer kind the schemes the builder can produce
    there (fp32 always among them); a profile offering anything else is refused when it is loaded."""

    name: str
    export_format: str
    artifact: str  # the main file a build writes, e.g. model.onnx
    companions: tuple[str, ...]  # other files of the same artifact, e.g. model.bin beside model.xml
    build_packages: tuple[str, ...]  # import names needed here to build its artifacts
    device_module: str  # import name the device needs to run them
    session_file: Path  # device-side module (stdlib, numpy, the runtime): Session, configure_process, versions
    builder: Builder
    capabilities: Callable[[DeviceProfile], Mapping[str, tuple[Scheme, ...]]]
    probe: Callable[[DeviceProfile], str | None] = no_problem  # this machine can run it (packages aside)
    check: Callable[[DeviceProfile], str | None] = no_problem  # the profile's settings are consistent
    quantize_options: type[BaseModel] = NoOptions  # the profile's `quantize:` mapping, validated
    dynamic_shapes: bool = True  # can serve inputs whose non-batch axes vary (e.g. a sentence's length)
    knobs: tuple[Knob, ...] = ()  # its quantizer's searchable settings
    recipes: Callable[[DeviceProfile], tuple[Recipe, ...]] = lambda profile: ()
    description: str = ""
    # runtime options a profile may set away from the runtime's own default to force fp32 math; the baseline a
    # user gets by doing nothing runs without them (e.g. OpenVINO's bf16 default on CPUs that have it)
    forced_options: tuple[str, ...] = ()
    # the quantizer's "auto" settings as this machine resolves them, recorded in an exported strategy
    resolved_quantize: Callable[[DeviceProfile], Mapping[str, Any]] = lambda profile: {}
    # the runtime options one artifact is loaded with, from the profile's (or a baseline's) options, the artifact,
    # the input shapes it will be scored at and the shape it is timed at (e.g. TensorRT's per-artifact settings);
    # None: the options as they are
    artifact_options: ArtifactOptions | None = None
    # what it can compute the layers a strategy leaves in fp32 with, for the whole model, on this profile's device
    # (fp32 first, the runtime's own default last), e.g. OpenVINO's bf16 on CPUs that have it
    runtime_precisions: Callable[[DeviceProfile], tuple[str, ...]] = lambda profile: ("fp32",)

    def artifact_files(self, main: Path) -> list[Path]:
        """The files of a built artifact that exist (the main file first)."""
        return [main, *(path for name in self.companions if (path := main.with_name(name)).exists())]

    def precisions(self, profile: DeviceProfile, kind: str) -> tuple[str, ...]:
        return tuple(scheme.precision for scheme in self.capabilities(profile).get(kind, ()))
