"""ONNX Runtime for GPUs (Jetson: TensorRT / CUDA): the model transformations are tested here on the CPU;
GPU timing runs only where a CUDA execution provider exists."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto

from autocompress.compress.quantize import QuantizeSettings
from autocompress.compress.quantize_onnxruntime import build_artifact
from autocompress.evaluators.device.runner import open_session
from autocompress.hardware import get_profile
from autocompress.hardware.availability import availability
from autocompress.spaces.graph import layer_names

HAS_CUDA = "CUDAExecutionProvider" in ort.get_available_providers()

SESSION = str(get_profile("jetson-orin").record.session_file)


def _mixed_precisions(task) -> dict[str, str]:
    names = layer_names(task.model)
    return {n: "fp16" if n.startswith("stage3") else "int8" if n.startswith("stage2") else "fp32" for n in names}


def _mixed(task, workdir: Path) -> Path:
    settings = QuantizeSettings(precisions=_mixed_precisions(task))
    return build_artifact(task.model, task.example_input, settings, task.data.calibration, workdir,
                          get_profile("jetson-orin"))  # fmt: skip


@pytest.fixture(scope="module")
def mixed_artifact(digits_untrained, tmp_path_factory) -> Path:
    """fp16, int8 and fp32 layers for the Jetson profile; the model's structure is what matters here."""
    return _mixed(digits_untrained, tmp_path_factory.mktemp("mixed"))


def test_fp16_int8_fp32_layers_each_get_their_precision(digits_untrained, mixed_artifact):
    model = onnx.load(str(mixed_artifact))
    onnx.checker.check_model(model)
    initializers = {init.name: init.data_type for init in model.graph.initializer}
    producers = {out: node.op_type for node in model.graph.node for out in node.output}
    for layer, precision in _mixed_precisions(digits_untrained).items():
        node = next(n for n in model.graph.node if n.name == layer)
        weight = node.input[1]
        if precision == "fp16":
            assert initializers[weight] == TensorProto.FLOAT16, layer
            assert producers[node.input[0]] == "Cast", layer
        elif precision == "int8":
            assert producers[weight] == "DequantizeLinear", layer
        else:
            assert initializers[weight] == TensorProto.FLOAT, layer
    assert model.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT  # callers feed float32


@pytest.mark.e2e
def test_mixed_precision_artifact_keeps_accuracy_on_cpu(digits_task, cpu_profile, tmp_path):
    session = open_session(str(_mixed(digits_task, tmp_path)), SESSION, cpu_profile.runtime_options, 2)
    inputs, labels = next(iter(digits_task.data.validation))
    predictions = session.run(inputs.numpy()).argmax(axis=1)
    assert np.mean(predictions == labels.numpy()) > 0.97


def test_jetson_profile_is_refused_here_with_the_reason():
    problem = availability(get_profile("jetson"))
    if HAS_CUDA:
        pytest.skip("this machine has a CUDA execution provider")
    assert problem is not None and "TensorrtExecutionProvider not in onnxruntime's providers" in problem
    assert "install onnxruntime-gpu" in problem


def test_tensorrt_int8_is_signed_and_symmetric(mixed_artifact):
    """TensorRT takes only signed symmetric int8: every activation quantizer has an int8 zero point of 0."""
    model = onnx.load(str(mixed_artifact))
    initializers = {init.name: init for init in model.graph.initializer}
    activation_zero_points = [
        initializers[node.input[2]]
        for node in model.graph.node
        if node.op_type == "QuantizeLinear" and node.input[0] not in initializers
    ]
    assert activation_zero_points
    for zero_point in activation_zero_points:
        assert zero_point.data_type == TensorProto.INT8
        assert not onnx.numpy_helper.to_array(zero_point).any()


@pytest.mark.skipif(not HAS_CUDA, reason="no CUDAExecutionProvider here: GPU timing needs onnxruntime-gpu and a GPU")
def test_gpu_io_binding_timing_matches_plain_outputs(digits_untrained, mixed_artifact):
    """What the timed path computes (inputs and outputs bound on the GPU) is what the CPU computes."""
    options = {"providers": ["CUDAExecutionProvider"], "io_binding": True}
    session = open_session(str(mixed_artifact), SESSION, options, 1)
    sample = digits_untrained.example_input.numpy()
    timed = session.timed_call(sample)().copy_outputs_to_cpu()[0]
    cpu = open_session(str(mixed_artifact), SESSION, {"providers": ["CPUExecutionProvider"]}, 1)
    np.testing.assert_allclose(timed, cpu.run(sample), atol=5e-2)
