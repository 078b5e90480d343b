"""The words every part of autocompress shares: precisions, layer kinds, knob granularity, strategy sections.

One vocabulary, so a profile, a runtime, a strategy and a search space cannot disagree on what "int8" or a
"MatMul layer" is: profiles are validated against it when loaded, runtimes declare what they build in it, and
strategies are checked against the device before anything is built.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

# int8: static (weights and activations int8, activation ranges calibrated); int8-dynamic: int8 weights, activations
# quantized at run time per call (no calibration; the fast int8 path for Linear layers on CPUs without VNNI);
# int4: int4 weights (activations at run time where the runtime does it); fp16/fp32: float.
Precision = Literal["fp32", "fp16", "int8", "int8-dynamic", "int16", "int4"]
# The precision a runtime computes what a strategy leaves in fp32 with, for the whole model (OpenVINO's inference
# precision hint: its CPU plugin runs fp32 layers in bf16 by default on CPUs that have it, and cannot mix bf16 and
# fp32 layers in one compiled model)
RuntimePrecision = Literal["fp32", "bf16"]
STATIC_INT = ("int8", "int16")  # precisions whose activation ranges come from calibration
PRECISIONS: tuple[str, ...] = get_args(Precision)
# A layer is a module with weights, named by the ONNX op it exports to: convolutions, Linear on 2-D inputs (Gemm),
# Linear on 3-D or larger inputs (MatMul, e.g. every projection of a transformer).
LayerKind = Literal["Conv", "Gemm", "MatMul"]
LAYER_KINDS: tuple[str, ...] = get_args(LayerKind)
Granularity = Literal["layer", "family", "stage", "global"]
BLOCK_INDEX = re.compile(r"(^|\.)\d+(?=\.|$)")
# Value ranges shared by a step's settings (strategies) and its knobs (`space:` options), checked by pydantic
Ratio = Annotated[float, Field(ge=0, lt=1)]  # a fraction removed: 1 would remove everything
Share = Annotated[float, Field(ge=0, le=1)]
Positive = Annotated[float, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]


def _low_high(pair: tuple[float, float]) -> tuple[float, float]:
    if pair[0] > pair[1]:
        raise ValueError(f"the low end {pair[0]:g} is above the high end {pair[1]:g}")
    return pair


# a (low, high) range a float knob is sampled from
PositiveRange = Annotated[tuple[Positive, Positive], AfterValidator(_low_high)]
ShareRange = Annotated[tuple[Share, Share], AfterValidator(_low_high)]
NonNegativeRange = Annotated[tuple[NonNegative, NonNegative], AfterValidator(_low_high)]


class Section(BaseModel):
    """A part of a Strategy (one per compression step): frozen, and strict about unknown keys."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def unit_of(name: str, granularity: Granularity) -> str:
    """The shared knob a layer (or channel group) belongs to at a granularity.

    layer: its own; family: the same layer of every repeated block (layer.0.query, layer.1.query ->
    layer.*.query); stage: its top-level module; global: one knob for the whole model."""
    if granularity == "layer":
        return name
    if granularity == "family":
        return BLOCK_INDEX.sub(r"\1*", name)
    if granularity == "stage":
        return name.split(".")[0]
    return "all"
