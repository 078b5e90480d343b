"""What precision each layer of a built artifact really holds, read from the artifact itself (test helper).

One reader per artifact format, each written against the format's own library: the ONNX graph (onnx), the IR
(openvino), the flatbuffer (the TFLite schema). They answer per layer: int8, int8-dynamic (TFLite hybrid ops),
int4, fp16 or fp32.
"""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import TensorProto

from autocompress.spaces.graph import layer_names

ONNX_TYPES = {
    TensorProto.INT8: "int8",
    TensorProto.INT4: "int4",
    TensorProto.FLOAT16: "fp16",
    TensorProto.FLOAT: "fp32",
}


def onnx_precisions(path: Path, layers: list[str]) -> dict[str, str]:
    """A layer node's weight: an initializer (its type) or a DequantizeLinear of one (the quantized type)."""
    model = onnx.load(str(path))
    initializers = {init.name: init.data_type for init in model.graph.initializer}
    producers = {out: node for node in model.graph.node for out in node.output}
    nodes = {node.name: node for node in model.graph.node}
    found = {}
    for layer in layers:
        weight = nodes[layer].input[1]
        producer = producers.get(weight)
        if producer is not None and producer.op_type == "DequantizeLinear":
            weight = producer.input[0]
        found[layer] = ONNX_TYPES[initializers[weight]]
    return found


def openvino_precisions(path: Path, layers: list[str]) -> dict[str, str]:
    """NNCF's int8 weights: an i8 Constant -> Convert -> Multiply(scale) chain, or a FakeQuantize."""
    import openvino as ov

    model = ov.Core().read_model(str(path))
    by_name = {op.get_friendly_name().removesuffix("/WithoutBiases"): op for op in model.get_ordered_ops()
               if op.get_type_name() in ("Convolution", "GroupConvolution", "MatMul")}  # fmt: skip
    found = {}
    for layer in layers:
        producer = by_name[layer].input_value(1).get_node()
        if producer.get_type_name() == "FakeQuantize":
            found[layer] = "int8"
            continue
        while producer.get_type_name() in ("Multiply", "Subtract", "Convert", "Reshape", "Transpose"):
            producer = producer.input_value(0).get_node()
        element = producer.get_output_element_type(0)
        found[layer] = {ov.Type.i8: "int8", ov.Type.f16: "fp16", ov.Type.f32: "fp32"}.get(element, str(element))
    return found


def tflite_precisions(path: Path, model, layers: list[str]) -> dict[str, str]:
    """The stored type of each layer op's weight tensor (through an explicit DEQUANTIZE for weight-only types)."""
    from ai_edge_litert.schema_py_generated import BuiltinOperator, TensorType
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils as tfl_utils

    from autocompress.compress.quantize_tflite import graph_ops, layer_ops, module_paths

    names = {TensorType.INT8: "int8", TensorType.INT4: "int4", TensorType.FLOAT16: "fp16", TensorType.FLOAT32: "fp32"}
    flatbuffer = tfl_utils.read_model(str(path))
    subgraph = flatbuffer.subgraphs[0]
    dequantized = {
        int(op.outputs[0]): int(op.inputs[0])
        for op in subgraph.operators
        if flatbuffer.operatorCodes[op.opcodeIndex].builtinCode == BuiltinOperator.DEQUANTIZE
    }
    found = {}
    for layer, layer_op_list in layer_ops(graph_ops(path), module_paths(model)).items():
        if layer in layers:
            op = layer_op_list[0]
            weight, activation = op.inputs[1], op.inputs[0]
            tensor_type = subgraph.tensors[dequantized.get(weight, weight)].type
            found[layer] = names.get(tensor_type, str(tensor_type))
            if tensor_type == TensorType.INT8 and subgraph.tensors[activation].type == TensorType.FLOAT32:
                found[layer] = "int8-dynamic"  # int8 weights, float activations: a dynamic-range (hybrid) op
    return found


def artifact_precisions(path: Path, model) -> dict[str, str]:
    layers = layer_names(model)
    if path.suffix == ".onnx":
        return onnx_precisions(path, layers)
    if path.suffix == ".xml":
        return openvino_precisions(path, layers)
    return tflite_precisions(path, model, layers)
