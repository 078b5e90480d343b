"""Per-layer quantization for LiteRT (TFLite): litert-torch conversion, then ai-edge-quantizer recipes.

Layers are found in the converted graph by name: litert-torch records each op's torch module path in its
tensor names (``DigitsResNet/torch.nn.modules.container.Sequential_stage3/...BasicBlock_0/...Conv2d_conv1``),
so a layer's expected path is built from the model's own classes and matched exactly against the locations
in the name of the op's weight tensor. Each chosen op then gets a recipe entry whose scope regex is its own
full quantizer scope (unique tensor names, anchored), so a layer left at fp32 stays fp32.

Precisions (per TFLite op; anything the quantizer's policy refuses fails the candidate):
  int8  static: int8 per-channel weights, int8 activations calibrated on the calibration split.
  int16 static: int8 weights, int16 activations (no XNNPACK kernels: runs on TFLite's own, slow kernels).
  int8-dynamic: int8 per-channel weights, activations quantized at run time (the dynamic_wi8_afp32 recipe).
  fp16  weight-only float16 weights (FLOAT_CASTING); compute stays fp32, XNNPACK folds the dequantize.
  int4  dynamic: int4 per-channel weights, activations quantized at run time (FULLY_CONNECTED, CONV_2D);
        weight-only int4 where the quantizer has no dynamic int4 (BATCH_MATMUL); none for DEPTHWISE_CONV_2D.
  fp32  untouched.
As in the ONNX Runtime builder, supporting ops (ADD, PAD, MEAN, RESHAPE, pooling, ...) whose every activation
input already comes from a statically quantized op follow it at the same activation width, so a run of int8
layers stays one integer pipeline instead of bouncing through float.

Calibration methods map to ai-edge-quantizer algorithms. Its calibrator collects one statistic for activations,
a running (EMA 0.95) min/max per tensor over the calibration samples, used by all three; what differs is how
the weight ranges (the clipping of each layer's weights) are chosen:
  minmax     -> MIN_MAX_UNIFORM_QUANT  (full weight range)
  entropy    -> MSE    (clipping searched to minimise quantization error; it has no KL/histogram calibrator)
  percentile -> OCTAV  (optimally clipped weight ranges: outliers cut, like a percentile)
fp16 always uses FLOAT_CASTING; supporting ops always use MIN_MAX_UNIFORM_QUANT.
"""

from __future__ import annotations

import contextlib
import io
import re
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ai_edge_litert.interpreter import Interpreter
from ai_edge_quantizer import qtyping, quantizer
from ai_edge_quantizer.utils import tfl_flatbuffer_utils as tfl_utils
from torch import nn

from autocompress.bugs import raised_in_our_code
from autocompress.compress.export import fingerprint
from autocompress.errors import CandidateRefused
from autocompress.runtimes.base import DeviceProfile
from autocompress.spaces.graph import layer_names
from autocompress.spaces.sections import QuantizeSettings
from autocompress.task import Batches, DynamicAxes

Algorithm = quantizer.AlgorithmName
OpName = qtyping.TFLOperationName
CALIBRATION_ALGORITHMS = {
    "minmax": Algorithm.MIN_MAX_UNIFORM_QUANT,
    "entropy": Algorithm.MSE,
    "percentile": Algorithm.OCTAV,
}
ACTIVATION_BITS = {"int8": 8, "int16": 16}
LAYER_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "BATCH_MATMUL")
FOLLOWER_OPS = ("ADD", "PAD", "MEAN", "RESHAPE", "MAX_POOL_2D", "AVERAGE_POOL_2D", "CONCATENATION", "RELU")


@dataclass(frozen=True)
class GraphOp:
    """One operator of the converted model, with what the recipe and the follower walk need."""

    index: int
    name: str
    scope: str
    weight_name: str
    output_name: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


def build_artifact(
    model: nn.Module,
    example_input: torch.Tensor,
    settings: QuantizeSettings,
    calibration: Batches,
    workdir: Path,
    profile: DeviceProfile,
    dynamic_axes: DynamicAxes | None = None,
) -> Path:
    """The runtime's artifact for a (pruned, distilled) model: LiteRT conversion, then per-layer quantization.

    TFLite graphs have static shapes (the example input's), so the record says it has no dynamic shapes and the
    pipeline refuses tasks that need them before anything is built.
    """
    float_path = workdir / "float.tflite"
    target = workdir / "model.tflite"
    convert(model, example_input, float_path)
    if all(precision == "fp32" for precision in settings.precisions.values()):
        float_path.replace(target)
        return target
    try:
        quantize(float_path, target, settings, calibration, module_paths(model))
    finally:
        float_path.unlink(missing_ok=True)
    return target


_recent: OrderedDict[str, bytes] = OrderedDict()  # fingerprint -> the converted float model
RECENT_CONVERSIONS = 4
_converted = [0]  # conversions this process really ran (not served from `_recent`)


def conversions() -> int:
    return _converted[0]


def convert(model: nn.Module, example_input: torch.Tensor, path: Path) -> None:
    """litert-torch conversion at the example input's (static) shape, with its progress log silenced. It takes
    seconds even for a small CNN (about 5 s for the digits ResNet on 2 quiet cores), so the last few are kept,
    as ONNX exports are: the same modules with the same weights (the baseline, candidates that only change
    precisions, a sensitivity analysis's precision rows) are converted once per process."""
    import litert_torch  # imported on use: it loads JAX and the MLIR converter (seconds)

    model = model.eval()
    key = fingerprint(model, example_input, None)
    if key in _recent:
        _recent.move_to_end(key)
        path.write_bytes(_recent[key])
        return
    show_progress = litert_torch.config.show_progress
    litert_torch.config.show_progress = False
    try:
        litert_torch.convert(model, (example_input,)).export(str(path))
    except Exception as error:  # the converter raises many types; all mean "this candidate cannot be converted"
        if raised_in_our_code(error):  # the user's forward or our callback: a bug, not a refusal
            raise
        raise _trial_error("litert-torch conversion failed", error) from error
    finally:
        litert_torch.config.show_progress = show_progress
    _converted[0] += 1
    _recent[key] = path.read_bytes()
    while len(_recent) > RECENT_CONVERSIONS:
        _recent.popitem(last=False)


def module_paths(model: nn.Module) -> dict[str, str]:
    """Each Conv/Linear layer's location as litert-torch writes it: `Root/pkg.Class_attr/...` per module level."""

    def qualified(module: nn.Module) -> str:
        return f"{type(module).__module__}.{type(module).__qualname__}"

    modules = dict(model.named_modules())
    paths = {}
    for layer in layer_names(model):
        parts, prefix = [qualified(model)], []
        for attr in layer.split("."):
            prefix.append(attr)
            parts.append(f"{qualified(modules['.'.join(prefix)])}_{attr}")
        paths[layer] = "/".join(parts)
    return paths


def graph_ops(path: Path) -> list[GraphOp]:
    """The main subgraph's ops in execution order, scoped exactly as the quantizer scopes them."""
    model = tfl_utils.read_model(str(path))
    subgraph = model.subgraphs[0]

    def tensor_name(index: int) -> str:
        return tfl_utils.get_tensor_name(subgraph.tensors[index]) if index >= 0 else ""

    ops = []
    for index, op in enumerate(subgraph.operators):
        op_name = tfl_utils.TFL_OP_CODE_TO_NAME.get(model.operatorCodes[op.opcodeIndex].builtinCode)
        name = op_name.value if op_name is not None else "UNKNOWN"
        inputs, outputs = tuple(int(i) for i in op.inputs), tuple(int(i) for i in op.outputs)
        weight = tensor_name(inputs[1]) if name in LAYER_OPS and len(inputs) > 1 else ""
        scope = tfl_utils.get_op_scope(op, subgraph.tensors)
        ops.append(GraphOp(index, name, scope, weight, tensor_name(outputs[0]), inputs, outputs))
    return ops


def _locations(tensor_name: str) -> set[str]:
    """litert-torch joins the locations of fused ops with ';' and appends ';<n>' to keep names unique."""
    return {part for part in tensor_name.split(";") if "/" in part}


def layer_ops(ops: list[GraphOp], paths: dict[str, str]) -> dict[str, list[GraphOp]]:
    """Layer name -> the layer ops that implement it, found by the module path in their weight (or output) names."""
    by_path = {path: layer for layer, path in paths.items()}
    found: dict[str, list[GraphOp]] = {}
    for op in ops:
        if op.name not in LAYER_OPS:
            continue
        layers = {by_path[loc] for loc in _locations(op.weight_name) if loc in by_path}
        layers = layers or {by_path[loc] for loc in _locations(op.output_name) if loc in by_path}
        if len(layers) > 1:
            raise CandidateRefused(f"op {op.index} ({op.name}) carries the names of several layers: {sorted(layers)}")
        for layer in layers:
            found.setdefault(layer, []).append(op)
    return found


def _followers(ops: list[GraphOp], static_bits: dict[int, int]) -> dict[int, int]:
    """Supporting ops whose activation inputs all come from static ops of one width -> that width."""
    produced = {tensor for op in ops for tensor in op.outputs}
    bits_of: dict[int, int] = {}
    followers: dict[int, int] = {}
    for op in ops:  # TFLite stores ops in execution order
        width = static_bits.get(op.index)
        if width is None and op.name in FOLLOWER_OPS:
            widths = {bits_of.get(tensor) for tensor in op.inputs if tensor in produced}
            if len(widths) == 1 and None not in widths:
                width = followers[op.index] = widths.pop()
        if width is not None:
            bits_of.update(dict.fromkeys(op.outputs, width))
    return followers


def _add_config(qt: quantizer.Quantizer, op: GraphOp, precision: str, algorithm: Algorithm) -> None:
    regex, op_name = f"^{re.escape(op.scope)}$", OpName(op.name)
    if precision in ACTIVATION_BITS:
        qt.add_static_config(regex, op_name, ACTIVATION_BITS[precision], 8, algorithm_key=algorithm)
    elif precision == "int8-dynamic":
        qt.add_dynamic_config(regex, op_name, 8, algorithm_key=algorithm)
    elif precision == "int4":
        try:
            qt.add_dynamic_config(regex, op_name, 4, algorithm_key=algorithm)
        except ValueError:  # no dynamic int4 kernel for this op (e.g. BATCH_MATMUL): weight-only int4 instead
            qt.add_weight_only_config(regex, op_name, 4, algorithm_key=algorithm)
    elif precision == "fp16":
        qt.add_weight_only_config(regex, op_name, 16, algorithm_key=Algorithm.FLOAT_CASTING)
    else:
        raise CandidateRefused(f"precision '{precision}' is not one of fp32, fp16, int8, int8-dynamic, int16, int4")


def _samples(calibration: Batches, shape: tuple[int, ...]) -> Iterator[np.ndarray]:
    """The calibration split re-chunked to the converted model's static input shape (batch 1 by default)."""
    for inputs, _labels in calibration:
        array = inputs.numpy().astype(np.float32)
        for start in range(0, len(array) - shape[0] + 1, shape[0]):
            yield array[start : start + shape[0]]


def calibration_data(path: Path, calibration: Batches) -> dict[str, list[dict[str, Any]]]:
    interpreter = Interpreter(model_path=str(path))
    (signature, io_names), *_ = interpreter.get_signature_list().items()
    shape = tuple(int(d) for d in interpreter.get_input_details()[0]["shape"])
    return {signature: [{io_names["inputs"][0]: sample} for sample in _samples(calibration, shape)]}


def quantize(
    source: Path, target: Path, settings: QuantizeSettings, calibration: Batches, paths: dict[str, str]
) -> None:
    """Write `target`: `source` with exactly the strategy's layers at their precisions, the rest left float."""
    ops = graph_ops(source)
    found = layer_ops(ops, paths)
    chosen = {layer: p for layer, p in settings.precisions.items() if p != "fp32"}
    missing = sorted(set(chosen) - set(found))
    if missing:
        raise CandidateRefused(f"strategy quantizes layers absent from the converted graph: {', '.join(missing[:3])}")
    algorithm = CALIBRATION_ALGORITHMS[settings.calibration]
    qt = quantizer.Quantizer(str(source))
    static_bits = {}
    for layer, precision in sorted(chosen.items()):
        for op in found[layer]:
            try:
                _add_config(qt, op, precision, algorithm)
            except ValueError as error:  # the quantizer's policy refuses this precision for this op type
                raise CandidateRefused(
                    f"{precision} is not supported for layer {layer} ({op.name}) by ai-edge-quantizer"
                ) from error
            if precision in ACTIVATION_BITS:
                static_bits[op.index] = ACTIVATION_BITS[precision]
    by_index = {op.index: op for op in ops}
    for index, bits in _followers(ops, static_bits).items():
        qt.add_static_config(f"^{re.escape(by_index[index].scope)}$", OpName(by_index[index].name), bits, 8)
    try:
        result = None
        if qt.need_calibration:
            data = calibration_data(source, calibration)
            with contextlib.redirect_stderr(io.StringIO()):  # the calibrator draws a tqdm bar
                result = qt.calibrate(data, num_threads=torch.get_num_threads())
        qt.quantize(result, enable_progress_report=False).export_model(str(target), overwrite=True)
    except Exception as error:  # the quantizer raises assorted types; each fails only this candidate
        if raised_in_our_code(error):  # the user's forward or our callback: a bug, not a refusal
            raise
        raise _trial_error("ai-edge-quantizer failed", error) from error


def _trial_error(what: str, error: Exception) -> CandidateRefused:
    first = (str(error).strip().splitlines() or [""])[0][:300]
    return CandidateRefused(f"{what}: {type(error).__name__}: {first}")
