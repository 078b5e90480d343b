"""ONNX Runtime for GPUs (Jetson: TensorRT / CUDA): the model transformations are tested here on the CPU;
GPU timing runs only where a CUDA execution provider exists."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto

from autocompress.compress.quantize_onnxruntime import build_artifact
from autocompress.evaluators.device.runner import open_session
from autocompress.hardware import get_profile
from autocompress.hardware.availability import availability
from autocompress.spaces.graph import quant_layers
from autocompress.spaces.strategy import QuantizeSettings

HAS_CUDA = "CUDAExecutionProvider" in ort.get_available_providers()


def _mixed_precisions(task) -> dict[str, str]:
    names = [layer.name for layer in quant_layers(task.model)]
    return {n: "fp16" if n.startswith("stage3") else "int8" if n.startswith("stage2") else "fp32" for n in names}


@pytest.fixture(scope="module")
def mixed_artifact(digits_task, tmp_path_factory) -> Path:
    settings = QuantizeSettings(precisions=_mixed_precisions(digits_task))
    workdir = tmp_path_factory.mktemp("mixed")
    return build_artifact(digits_task.model, digits_task.example_input, settings, digits_task.data.calibration, workdir)


def test_fp16_int8_fp32_layers_each_get_their_precision(digits_task, mixed_artifact):
    model = onnx.load(str(mixed_artifact))
    onnx.checker.check_model(model)
    initializers = {init.name: init.data_type for init in model.graph.initializer}
    producers = {out: node.op_type for node in model.graph.node for out in node.output}
    for layer, precision in _mixed_precisions(digits_task).items():
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


def test_mixed_precision_artifact_keeps_accuracy_on_cpu(digits_task, cpu_profile, mixed_artifact):
    session = open_session(str(mixed_artifact), "onnxruntime", cpu_profile.runtime_options, 2)
    inputs, labels = next(iter(digits_task.data.validation))
    predictions = session.run(inputs.numpy()).argmax(axis=1)
    assert np.mean(predictions == labels.numpy()) > 0.97


def test_jetson_profile_is_refused_here_with_the_reason():
    problem = availability(get_profile("jetson"))
    if HAS_CUDA:
        pytest.skip("this machine has a CUDA execution provider")
    assert problem is not None and "TensorrtExecutionProvider not in onnxruntime's providers" in problem
    assert "install onnxruntime-gpu" in problem


@pytest.mark.skipif(not HAS_CUDA, reason="no CUDAExecutionProvider here: GPU timing needs onnxruntime-gpu and a GPU")
def test_gpu_io_binding_timing_matches_plain_outputs(digits_task, mixed_artifact):
    options = {"providers": ["CUDAExecutionProvider"], "io_binding": True}
    session = open_session(str(mixed_artifact), "onnxruntime", options, 1)
    sample = digits_task.example_input.numpy()
    call = session.timed_call(sample)
    call()
    cpu = open_session(str(mixed_artifact), "onnxruntime", {"providers": ["CPUExecutionProvider"]}, 1)
    np.testing.assert_allclose(session.run(sample), cpu.run(sample), atol=5e-2)
