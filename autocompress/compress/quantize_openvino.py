"""Per-layer static quantization with NNCF for OpenVINO (IR with FakeQuantize, calibrated on real data).

Layers the strategy marks int8 are quantized; every other layer stays fp32. As in the ONNX Runtime
quantizer, supporting ops (ReLU, Add, pooling, reshapes) follow their producers: one whose activation
inputs all come from int8 ops is left to NNCF, so a run of int8 layers executes as one integer pipeline;
every other op goes into NNCF's ignored scope, so no FakeQuantize lands in an fp32 region (otherwise NNCF
quantizes e.g. the residual Adds between fp32 convolutions). Embedding lookups (a Gather from a constant table) are
left to NNCF too once anything is int8: it stores their tables in int8 and their outputs stay float (MiniLM, every
layer int8: 58.0 MB -> 22.9 MB, fidelity 0.9968 either way, as small as NNCF's own one-click).

Layer names: export_onnx names Conv/Gemm/MatMul nodes after their torch modules; OpenVINO's ONNX frontend
keeps that name on the Convolution/MatMul it creates, suffixed "/WithoutBiases" when it splits the bias
into a separate Add. Each strategy layer must resolve to exactly one such op, or the trial fails.

Calibration method -> NNCF activation range estimator (weights keep NNCF's per-channel min/max):
- minmax: RangeEstimatorParametersSet.MINMAX, the global min/max over the calibration split.
- percentile: MEAN_QUANTILE, the 0.01% / 99.99% quantiles of each calibration batch, averaged.
- entropy: HISTOGRAM. NNCF has no KL-divergence calibrator; its histogram aggregator searches the
  clipping range that minimises the quantization error over the activation histogram, which is the
  nearest it offers (a histogram search for the range rather than a raw statistic).
"""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

import nncf
import numpy as np
import openvino as ov
import torch
from nncf.quantization.advanced_parameters import (
    AdvancedQuantizationParameters,
    AdvancedSmoothQuantParameters,
    OverflowFix,
)
from nncf.quantization.range_estimator import RangeEstimatorParameters, RangeEstimatorParametersSet
from torch import nn

from autocompress.bugs import raised_in_our_code
from autocompress.compress.export import export_onnx
from autocompress.errors import CandidateRefused
from autocompress.evaluators.device.openvino_session import HINTS, PRECISION_RT_INFO
from autocompress.runtimes.base import DeviceProfile
from autocompress.spaces.graph import quant_layers
from autocompress.spaces.sections import QuantizeSettings
from autocompress.task import Batches, DynamicAxes

log = logging.getLogger(__name__)
# NNCF logs every ignored node at INFO; per-trial noise in a search
logging.getLogger("nncf").setLevel(logging.WARNING)

RANGE_ESTIMATORS: dict[str, RangeEstimatorParameters] = {
    "minmax": RangeEstimatorParametersSet.MINMAX,
    "percentile": RangeEstimatorParametersSet.MEAN_QUANTILE,
    "entropy": RangeEstimatorParametersSet.HISTOGRAM,
}
LAYER_OPS = ("Convolution", "GroupConvolution", "MatMul")
BIAS_SUFFIX = "/WithoutBiases"
# OpenVINO equivalents of the ONNX Runtime quantizer's followers (GlobalAveragePool -> ReduceMean, Flatten -> Reshape)
FOLLOWER_OPS = ("Relu", "Add", "MaxPool", "AvgPool", "ReduceMean", "Reshape", "Concat")
BOUNDARY_OPS = ("Parameter", "Result", "Constant")
EMBEDDING_OPS = ("Gather",)
# ops whose outputs are weights or shapes, never activations (a dynamic Reshape's target shape comes from ShapeOf)
SHAPE_SOURCES = ("Constant", "ShapeOf")


def _one_line(error: Exception) -> str:
    """The line of a library error that says what went wrong: NNCF's first; OpenVINO's last, after its stack."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()] or ["(no message)"]
    line = lines[-1] if lines[0].startswith("Exception from ") else lines[0]
    return f"{type(error).__name__}: {line[:300]}"


def layer_ops(model: ov.Model, layers: set[str]) -> dict[str, str]:
    """{strategy layer: friendly name of its Convolution/MatMul op}; a layer matching none or several fails."""
    by_layer: dict[str, list[str]] = {}
    for op in model.get_ordered_ops():
        if op.get_type_name() in LAYER_OPS:
            name = op.get_friendly_name()
            by_layer.setdefault(name.removesuffix(BIAS_SUFFIX), []).append(name)
    unresolved = sorted(layer for layer in layers if len(by_layer.get(layer, [])) != 1)
    if unresolved:
        raise CandidateRefused(f"layers not found exactly once in the OpenVINO model: {', '.join(unresolved[:3])}")
    return {layer: by_layer[layer][0] for layer in layers}


def ignored_ops(model: ov.Model, int8_ops: set[str]) -> list[str]:
    """Every compute op that is neither an int8 layer, nor a follower fed only by int8 ops, nor (when anything is
    int8) an embedding lookup."""
    constant: set[str] = set()  # ops computing weights or shapes only
    quantized: set[str] = set()
    ignored = []
    for op in model.get_ordered_ops():  # topological order
        name, kind = op.get_friendly_name(), op.get_type_name()
        producers = [value.get_node().get_friendly_name() for value in op.input_values()]
        activations = [producer for producer in producers if producer not in constant]
        if kind in SHAPE_SOURCES or (producers and not activations):
            constant.add(name)
        elif kind in BOUNDARY_OPS:
            continue
        elif name in int8_ops or (kind in FOLLOWER_OPS and all(p in quantized for p in activations)):
            quantized.add(name)
        elif kind in EMBEDDING_OPS and int8_ops and producers[0] in constant:
            continue  # a lookup into a weight table: NNCF compresses the table, the lookup's output stays float
        else:
            ignored.append(name)
    return ignored


def build_artifact(
    model: nn.Module,
    example_input: torch.Tensor,
    settings: QuantizeSettings,
    calibration: Batches,
    workdir: Path,
    profile: DeviceProfile,
    dynamic_axes: DynamicAxes | None = None,
) -> Path:
    """The runtime's artifact: ONNX export, conversion to OpenVINO, per-layer quantization, IR on disk."""
    float_path = workdir / "float.onnx"
    export_onnx(model, example_input, float_path, dynamic_axes)
    try:
        ov_model = ov.convert_model(float_path)
    except Exception as error:  # the frontend raises assorted types; each fails only this candidate
        if raised_in_our_code(error):  # the user's forward or our callback: a bug, not a refusal
            raise
        raise CandidateRefused(f"OpenVINO conversion failed: {_one_line(error)}") from error
    finally:
        float_path.unlink()
    int8_layers = set(settings.layers_at("int8"))
    if int8_layers:
        transformer = any(layer.kind == "MatMul" for layer in quant_layers(model, example_input))
        ov_model = quantize(ov_model, int8_layers, settings, calibration, transformer)
    if settings.runtime_precision != "fp32":  # the session (and a user's plain compile_model) reads it back
        ov_model.set_rt_info(HINTS[settings.runtime_precision], PRECISION_RT_INFO)
    target = workdir / "model.xml"
    ov.save_model(ov_model, target, compress_to_fp16=False)  # fp32 weights stay fp32 (compare like with like)
    return target


def _model_input(batch: tuple[torch.Tensor, torch.Tensor]) -> np.ndarray:
    return batch[0].numpy()


def advanced_parameters(settings: QuantizeSettings) -> AdvancedQuantizationParameters:
    """The calibration method's range estimator, OverflowFix, and SmoothQuant's alpha on MatMul (when set)."""
    options = settings.options
    parameters = AdvancedQuantizationParameters(
        activations_range_estimator_params=RANGE_ESTIMATORS[settings.calibration],
        overflow_fix=OverflowFix(options.get("overflow_fix", "first_layer_only")),
    )
    if options.get("smooth_quant") is not None:
        parameters.smooth_quant_alphas = AdvancedSmoothQuantParameters(matmul=float(options["smooth_quant"]))
    return parameters


def quantize(
    model: ov.Model, int8_layers: set[str], settings: QuantizeSettings, calibration: Batches, transformer: bool
) -> ov.Model:
    """`model` with exactly `int8_layers` (and the followers they feed) quantized, calibrated on `calibration`.
    A transformer gets NNCF's TRANSFORMER model type (which enables SmoothQuant), on the ov.Model itself."""
    int8_ops = set(layer_ops(model, int8_layers).values())
    ignored = ignored_ops(model, int8_ops)
    log.debug("NNCF: %d int8 layers, %d ops ignored", len(int8_ops), len(ignored))
    batches = list(calibration)
    if not batches:
        raise CandidateRefused("the calibration split is empty: int8 layers need calibration data")
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # NNCF's progress bars
            return nncf.quantize(
                model,
                nncf.Dataset(batches, _model_input),
                subset_size=len(batches),  # counted in dataset items, i.e. batches: use the whole split
                model_type=nncf.ModelType.TRANSFORMER if transformer else None,
                ignored_scope=nncf.IgnoredScope(names=ignored),
                advanced_parameters=advanced_parameters(settings),
            )
    except Exception as error:  # NNCF raises assorted types; each fails only this candidate
        if raised_in_our_code(error):  # the user's forward or our callback: a bug, not a refusal
            raise
        raise CandidateRefused(f"NNCF quantization failed: {_one_line(error)}") from error
