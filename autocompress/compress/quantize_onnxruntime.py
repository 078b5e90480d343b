"""Per-layer quantization with onnxruntime.quantization: static QDQ (calibrated on real data) and dynamic.

Layers the strategy marks int8 are quantized statically; layers at int8-dynamic get ORT's dynamic recipe
(MatMulInteger, activations quantized per call: the fast int8 path for transformers on CPUs without VNNI); layers
at fp32 stay fp32. Supporting ops (ReLU, Add, pooling, reshapes) follow their static producers: an op whose every
activation input is already int8 stays int8 rather than bouncing through float, so a run of int8 layers executes
as one integer pipeline.
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quant_pre_process,
    quantize_dynamic,
    quantize_static,
)
from torch import nn

from autocompress.bugs import raised_in_our_code
from autocompress.compress.export import export_onnx
from autocompress.errors import CandidateRefused
from autocompress.runtimes.base import DeviceProfile
from autocompress.runtimes.onnxruntime_options import OrtQuantizeOptions
from autocompress.spaces.sections import QuantizeSettings
from autocompress.task import Batches, DynamicAxes

log = logging.getLogger(__name__)

CALIBRATION_METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}
ACTIVATION_TYPES = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
LAYER_OPS = ("Conv", "Gemm", "MatMul")
EMBEDDING_OPS = ("Gather",)
FOLLOWER_OPS = ("Relu", "Add", "MaxPool", "AveragePool", "GlobalAveragePool", "Flatten", "Reshape", "Concat")


class _Reader(CalibrationDataReader):
    """Feeds the calibration split to the ORT calibrator.

    ORT's histogram calibrators (entropy, percentile) stack per-run outputs, so when every batch has the same
    shape the split is re-chunked into equal chunks (the largest divisor of its length that is at most
    `max_chunk`). Inputs of different shapes (sentences at their real token lengths) run one batch per run.
    """

    def __init__(self, input_name: str, batches: Batches, max_chunk: int = 64) -> None:
        arrays = [batch.numpy() for batch, _ in batches]
        if len({array.shape[1:] for array in arrays}) > 1:
            self._chunks = [{input_name: array} for array in arrays]
        else:
            inputs = np.concatenate(arrays)
            size = max(d for d in range(1, min(max_chunk, len(inputs)) + 1) if len(inputs) % d == 0)
            self._chunks = [{input_name: chunk} for chunk in np.split(inputs, len(inputs) // size)]
        self._iterator: Iterator[dict[str, np.ndarray]] = iter(self._chunks)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._iterator, None)

    def rewind(self) -> None:
        self._iterator = iter(self._chunks)


def embedding_lookups(model: onnx.ModelProto) -> list[str]:
    """Gathers from a weight table (word and position embeddings): quantized with the int8-dynamic layers, their
    tables stored in int8 and their outputs float, as in the OpenVINO path (quantize_openvino.py)."""
    initializers = {init.name for init in model.graph.initializer}
    return [node.name for node in model.graph.node
            if node.op_type in EMBEDDING_OPS and node.name and node.input[0] in initializers]  # fmt: skip


def nodes_to_quantize(model: onnx.ModelProto, int8_layers: set[str]) -> list[str]:
    """The int8 layers plus every follower op whose activation inputs all come from quantized nodes."""
    initializers = {init.name for init in model.graph.initializer}
    quantized_tensors: set[str] = set()
    selected = []
    for node in model.graph.node:  # ONNX graphs are topologically sorted
        activations = [name for name in node.input if name and name not in initializers]
        is_layer = node.op_type in LAYER_OPS and node.name in int8_layers
        is_follower = (
            node.op_type in FOLLOWER_OPS and activations and all(name in quantized_tensors for name in activations)
        )
        if is_layer or is_follower:
            selected.append(node.name)
            quantized_tensors.update(node.output)
    return selected


def build_artifact(
    model: nn.Module,
    example_input: torch.Tensor,
    settings: QuantizeSettings,
    calibration: Batches,
    workdir: Path,
    profile: DeviceProfile,
    dynamic_axes: DynamicAxes | None = None,
) -> Path:
    """The runtime's artifact for a (pruned, distilled) model: ONNX export, then per-layer quantization with the
    profile's quantizer options."""
    float_path = workdir / "float.onnx"
    export_onnx(model, example_input, float_path, dynamic_axes)
    target = workdir / "model.onnx"
    symbolic_shapes = not (dynamic_axes and set(dynamic_axes) - {0})  # only the batch axis is dynamic
    options = OrtQuantizeOptions(**profile.quantize)
    quantize(float_path, target, settings, calibration, symbolic_shapes, options, options.reduce(profile))
    float_path.unlink()
    fp16_layers = set(settings.layers_at("fp16"))
    if fp16_layers:
        onnx.save(to_fp16(onnx.load(str(target)), fp16_layers), str(target))
    return target


def to_fp16(model: onnx.ModelProto, fp16_layers: set[str]) -> onnx.ModelProto:
    """Run exactly `fp16_layers` in float16 (for GPU execution providers); every other node keeps its type.

    Each fp16 layer gets float16 weights and a Cast on its activation input and output. (onnxruntime's
    float16 converter also rewrites the Q/DQ pairs of int8 layers, which breaks their fusion into
    integer kernels, so this targeted rewrite is used instead.) Inputs and outputs stay float32.
    """
    nodes = {node.name: node for node in model.graph.node}
    missing = fp16_layers - set(nodes)
    if missing:
        raise CandidateRefused(
            f"strategy puts layers absent from the exported graph in fp16: {', '.join(sorted(missing)[:3])}"
        )
    initializers = {init.name: init for init in model.graph.initializer}
    uses = Counter(name for node in model.graph.node for name in node.input)
    rewritten: list[onnx.NodeProto] = []
    for node in model.graph.node:
        if node.name not in fp16_layers:
            rewritten.append(node)
            continue
        for index, name in enumerate(node.input):
            if name in initializers:
                weights = numpy_helper.to_array(initializers[name]).astype(np.float16)
                if uses[name] > 1:  # shared with a node that stays float32: give this layer its own copy
                    node.input[index] = name = f"{name}/fp16"
                    initializers[name] = model.graph.initializer.add()
                initializers[name].CopyFrom(numpy_helper.from_array(weights, name))
            elif name:
                cast_name = f"{node.name}/input{index}_fp16"
                rewritten.append(helper.make_node("Cast", [name], [cast_name], name=cast_name, to=TensorProto.FLOAT16))
                node.input[index] = cast_name
        original_output = node.output[0]
        node.output[0] = f"{node.name}/output_fp16"
        rewritten.append(node)
        rewritten.append(
            helper.make_node(
                "Cast", [node.output[0]], [original_output], name=f"{node.name}/output_fp32", to=TensorProto.FLOAT
            )
        )
    del model.graph.node[:]
    model.graph.node.extend(rewritten)
    del model.graph.value_info[:]  # shapes stay valid, element types changed: let the runtime re-infer them
    return model


def _pre_process(source: Path, prepared: Path, symbolic_shapes: bool) -> None:
    """ORT's recommended pre-processing (shape inference). Its symbolic pass gives up on graphs with a dynamic
    sequence axis (`Min(512, sequence)` broadcasts) and then dumps a debug model into the working directory, so
    such graphs get ONNX's own shape inference only, which is enough for QDQ placement."""
    with contextlib.redirect_stdout(io.StringIO()):
        quant_pre_process(str(source), str(prepared), skip_optimization=True, skip_symbolic_shape=not symbolic_shapes)


def quantize(
    source: Path,
    target: Path,
    settings: QuantizeSettings,
    calibration: Batches,
    symbolic_shapes: bool = True,
    options: OrtQuantizeOptions | None = None,
    reduce_range: bool = False,
) -> None:
    """Write `target`: `source` with exactly the strategy's int8 layers quantized statically (QDQ, calibrated) and
    its int8-dynamic layers dynamically (MatMulInteger, activations quantized per call); a copy if neither."""
    options = options or OrtQuantizeOptions()
    static, dynamic = set(settings.layers_at("int8")), set(settings.layers_at("int8-dynamic"))
    if not static and not dynamic:
        shutil.copyfile(source, target)
        return
    model = onnx.load(str(source))
    missing = (static | dynamic) - {node.name for node in model.graph.node}
    if missing:
        absent = ", ".join(sorted(missing)[:3])
        raise CandidateRefused(f"strategy quantizes layers absent from the exported graph: {absent}")
    with tempfile.TemporaryDirectory() as scratch:
        current = source
        if static:
            current = Path(scratch) / "static.onnx"
            selected = nodes_to_quantize(model, static)
            op_types = sorted({node.op_type for node in model.graph.node if node.name in selected})
            prepared = Path(scratch) / "prepared.onnx"
            _pre_process(source, prepared, symbolic_shapes)
            reader = _Reader(model.graph.input[0].name, calibration)
            _run("quantization", quantize_static, str(prepared), str(current), reader, quant_format=QuantFormat.QDQ,
                 op_types_to_quantize=op_types, nodes_to_quantize=selected, per_channel=options.per_channel,
                 reduce_range=reduce_range, activation_type=ACTIVATION_TYPES[options.activation_type],
                 weight_type=QuantType.QInt8, calibrate_method=CALIBRATION_METHODS[settings.calibration],
                 extra_options={"CalibTensorRangeSymmetric": options.activation_symmetric,
                                "ActivationSymmetric": options.activation_symmetric})  # fmt: skip
        if dynamic:  # ORT's dynamic recipe on exactly these MatMul layers (int8 per-channel weights), and the
            # embedding tables beside them, as quantize_dynamic's defaults do (MiniLM: 59 MB -> 23 MB)
            _run("dynamic quantization", quantize_dynamic, str(current), str(target),
                 op_types_to_quantize=["MatMul", *EMBEDDING_OPS],
                 nodes_to_quantize=sorted(dynamic) + embedding_lookups(model), per_channel=options.per_channel,
                 reduce_range=reduce_range, weight_type=QuantType.QInt8)  # fmt: skip
        else:
            shutil.copyfile(current, target)


def _run(what: str, quantizer: Callable[..., None], *args: Any, **kwargs: Any) -> None:
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            quantizer(*args, **kwargs)
    except Exception as error:  # the quantizer raises assorted types; each fails only this candidate
        if raised_in_our_code(error):  # the user's forward or our callback: a bug, not a refusal
            raise
        raise CandidateRefused(f"onnxruntime {what} failed: {type(error).__name__}: {error}".splitlines()[0]) from error
