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


# ---- TensorRT's options per artifact (autocompress/hardware/tensorrt.py): pure functions, no GPU needed ----

HAS_TENSORRT = "TensorrtExecutionProvider" in ort.get_available_providers()
SHAPES = [(200, 1, 32, 32), (160, 1, 32, 32)]  # the batches scored (the last one short)
TIMED = (1, 1, 32, 32)  # the sample timed at the profile's batch size


@pytest.fixture(scope="module")
def float_artifact(digits_untrained, tmp_path_factory) -> Path:
    """The same model with every layer fp32: a baseline, as the Jetson profile builds it."""
    return build_artifact(digits_untrained.model, digits_untrained.example_input, QuantizeSettings(),
                          digits_untrained.data.calibration, tmp_path_factory.mktemp("float"),
                          get_profile("jetson-orin"))  # fmt: skip


def _tensorrt(options: dict) -> dict:
    name, settings = options["providers"][0]
    assert name == "TensorrtExecutionProvider"
    return settings


def test_tensorrt_int8_only_on_artifacts_with_qdq_nodes(mixed_artifact, float_artifact):
    from autocompress.hardware.tensorrt import artifact_options

    jetson = get_profile("jetson-orin").runtime_options
    assert _tensorrt(jetson)["trt_int8_enable"] is True  # what the profile asks for its int8 candidates
    assert _tensorrt(artifact_options(jetson, mixed_artifact, SHAPES, TIMED))["trt_int8_enable"] is True
    assert _tensorrt(artifact_options(jetson, float_artifact, SHAPES, TIMED))["trt_int8_enable"] is False
    loaded = artifact_options(jetson, mixed_artifact, SHAPES, TIMED)
    assert loaded["providers"][1:] == jetson["providers"][1:] and loaded["io_binding"] is True  # the rest as given


def test_each_artifact_gets_its_own_engine_cache(mixed_artifact, float_artifact, tmp_path):
    from autocompress.hardware.tensorrt import artifact_options

    jetson = get_profile("jetson-orin").runtime_options
    mixed = _tensorrt(artifact_options(jetson, mixed_artifact, SHAPES, TIMED))["trt_engine_cache_path"]
    plain = _tensorrt(artifact_options(jetson, float_artifact, SHAPES, TIMED))["trt_engine_cache_path"]
    assert mixed != plain and mixed.startswith(".trt-cache/") and plain.startswith(".trt-cache/")
    copy = tmp_path / "elsewhere" / "model.onnx"  # the same artifact elsewhere (a rebuild, a remote upload)
    copy.parent.mkdir()
    copy.write_bytes(mixed_artifact.read_bytes())
    assert _tensorrt(artifact_options(jetson, copy, SHAPES, TIMED))["trt_engine_cache_path"] == mixed
    other_shapes = _tensorrt(artifact_options(jetson, mixed_artifact, [(64, 1, 32, 32)], TIMED))
    assert other_shapes["trt_engine_cache_path"] != mixed  # an engine is built for its shape profile
    name, settings = jetson["providers"][0]
    uncached = {**jetson, "providers": [[name, {**settings, "trt_engine_cache_enable": False}]]}
    assert "trt_engine_cache_path" not in _tensorrt(artifact_options(uncached, mixed_artifact, SHAPES, TIMED))


def test_the_optimization_profile_covers_the_shapes_used(mixed_artifact):
    from autocompress.hardware.tensorrt import artifact_options

    settings = _tensorrt(artifact_options(get_profile("jetson-orin").runtime_options, mixed_artifact, SHAPES, TIMED))
    name = onnx.load(str(mixed_artifact)).graph.input[0].name
    assert settings["trt_profile_min_shapes"] == f"{name}:1x1x32x32"
    assert settings["trt_profile_max_shapes"] == f"{name}:200x1x32x32"
    assert settings["trt_profile_opt_shapes"] == f"{name}:1x1x32x32"


def test_other_providers_keep_their_options(mixed_artifact, cpu_profile):
    from autocompress.hardware.tensorrt import artifact_options

    cuda = {"providers": ["CUDAExecutionProvider"], "io_binding": True}
    assert artifact_options(cuda, mixed_artifact, SHAPES, TIMED) == cuda
    assert artifact_options(cpu_profile.runtime_options, mixed_artifact, SHAPES, TIMED) == cpu_profile.runtime_options


def test_measurements_load_each_artifact_with_its_own_tensorrt_settings(mixed_artifact, float_artifact):
    """What the device is sent: per artifact, the baseline without int8 and the candidate with it."""
    from autocompress.evaluators.measure import loading_options

    loaded = loading_options(get_profile("jetson-orin"), [float_artifact, mixed_artifact], None, SHAPES, TIMED)
    assert [_tensorrt(options)["trt_int8_enable"] for options in loaded] == [False, True]


def test_reduce_range_is_never_on_for_tensorrt(monkeypatch, tmp_path):
    from autocompress.errors import AutocompressError
    from autocompress.hardware.profile import BUILTIN_DIR
    from autocompress.runtimes import onnxruntime as ort_runtime
    from autocompress.runtimes import onnxruntime_options

    monkeypatch.setattr(onnxruntime_options, "has_vnni", lambda: False)  # a CPU where "auto" means 7-bit weights
    jetson = get_profile("jetson-orin")
    assert ort_runtime.OrtQuantizeOptions(**jetson.quantize).reduce(jetson) is False
    assert ort_runtime.OrtQuantizeOptions(reduce_range="auto").reduce(get_profile("cpu")) is True  # the contrast
    text = (BUILTIN_DIR / "jetson-orin.yaml").read_text().replace("name: jetson-orin", "name: my-orin")
    text = text.replace("aliases: [jetson, orin]", "aliases: []").replace(
        "quantize: {activation_type: int8, activation_symmetric: true}",
        "quantize: {activation_type: int8, activation_symmetric: true, reduce_range: true}",
    )
    (tmp_path / "my-orin.yaml").write_text(text)
    with pytest.raises(AutocompressError, match="reduce_range quantizes weights to 7 bits for CPUs; TensorRT"):
        get_profile(str(tmp_path / "my-orin.yaml"))


@pytest.mark.skipif(not HAS_TENSORRT, reason="no TensorrtExecutionProvider here: building an engine needs "
                    "onnxruntime-gpu with TensorRT and an NVIDIA GPU")  # fmt: skip
def test_tensorrt_builds_engines_with_these_settings(mixed_artifact, float_artifact, tmp_path, monkeypatch):
    """On a GPU: each artifact's session opens with its settings, its engine lands in its own cache folder, and
    the int8 artifact's outputs stay close to the CPU's."""
    from autocompress.hardware.tensorrt import artifact_options

    monkeypatch.chdir(tmp_path)
    jetson = get_profile("jetson-orin").runtime_options
    sample = np.zeros(TIMED, dtype=np.float32)
    for artifact in (float_artifact, mixed_artifact):
        options = artifact_options(jetson, artifact, SHAPES, TIMED)
        session = open_session(str(artifact), SESSION, options, 1)
        cpu = open_session(str(artifact), SESSION, {"providers": ["CPUExecutionProvider"]}, 1)
        np.testing.assert_allclose(session.run(sample), cpu.run(sample), atol=5e-2)
        assert any(Path(_tensorrt(options)["trt_engine_cache_path"]).iterdir())
