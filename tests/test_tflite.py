"""LiteRT runtime end to end on the digits example: real litert-torch, ai-edge-quantizer and interpreter."""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch

from autocompress.compress.pipeline import build
from autocompress.compress.quantize import QuantizeSettings
from autocompress.compress.quantize_tflite import conversions, convert, module_paths, quantize
from autocompress.evaluators.device.runner import open_session
from autocompress.evaluators.measure import measure_artifact
from autocompress.hardware import get_profile
from autocompress.spaces.graph import layer_names
from autocompress.spaces.strategy import Strategy
from tests.helpers import invoke_cli, user_config

Interpreter = pytest.importorskip("ai_edge_litert.interpreter").Interpreter
SESSION = str(get_profile("tflite-cpu").record.session_file)
tfl_utils = pytest.importorskip("ai_edge_quantizer.utils.tfl_flatbuffer_utils")
INT4 = pytest.importorskip("ai_edge_litert.schema_py_generated").TensorType.INT4
LAYER_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"}
PROFILE_OP_TYPES = {"CONV_2D": "Conv", "DEPTHWISE_CONV_2D": "Conv", "FULLY_CONNECTED": "Gemm"}

pytestmark = pytest.mark.e2e  # integration: the trained digits model, litert-torch conversions


@pytest.fixture(scope="module")
def profile():
    return get_profile("tflite-cpu")


@pytest.fixture(scope="module")
def float_model(digits_task, profile, tmp_path_factory) -> Path:
    """The all-fp32 strategy through the real pipeline: the converted model, unquantized."""
    artifact = build(digits_task, Strategy(seed=3), profile, tmp_path_factory.mktemp("float"))
    assert sorted(p.name for p in artifact.path.parent.iterdir()) == ["model.tflite"]  # intermediates deleted
    return artifact.path


@pytest.fixture(scope="module")
def quantized(digits_task, float_model, tmp_path_factory):
    """Quantize the converted model with given per-layer precisions (no reconversion: the slow part)."""
    folder = tmp_path_factory.mktemp("quantized")
    paths = module_paths(digits_task.model)

    def make(name: str, precisions: dict[str, str], calibration: str = "minmax") -> Path:
        target = folder / f"{name}.tflite"
        if not target.exists():
            settings = QuantizeSettings(calibration=calibration, precisions=precisions)
            quantize(float_model, target, settings, digits_task.data.calibration, paths)
        return target

    return make


def _layers(task) -> list[str]:
    return layer_names(task.model)


def _graph(path: Path, delegated: bool = False) -> tuple[list[dict], list[dict]]:
    """(ops, tensors) from the interpreter; with `delegated`, after XNNPACK has partitioned the graph."""
    interpreter = Interpreter(model_path=str(path), num_threads=1)
    if delegated:
        interpreter.allocate_tensors()
    return interpreter._get_ops_details(), interpreter.get_tensor_details()


def _weight(op: dict, ops: list[dict], tensors: list[dict]) -> dict:
    """A layer op's stored weight tensor, looking through an explicit DEQUANTIZE (fp16 / weight-only)."""
    producers = {int(out): other for other in ops for out in other["outputs"]}
    weight = int(op["inputs"][1])
    producer = producers.get(weight)
    if producer is not None and producer["op_name"] == "DEQUANTIZE":
        weight = int(producer["inputs"][0])
    return tensors[weight]


def _stored_types(path: Path) -> set[int]:
    """Tensor types as the flatbuffer stores them (the interpreter reports int4 tensors as int8)."""
    return {tensor.type for tensor in tfl_utils.read_model(str(path)).subgraphs[0].tensors}


def _layer_ops(path: Path, delegated: bool = False) -> list[tuple[dict, dict, bool]]:
    """(op, weight tensor, runs inside an XNNPACK partition) per conv / fully connected op."""
    ops, tensors = _graph(path, delegated)
    in_delegates = {int(i) for op in ops if op["op_name"] == "DELEGATE" for i in op["inputs"]}
    result = []
    for op in ops:
        if op["op_name"] in LAYER_OPS:
            weight = _weight(op, ops, tensors)
            result.append((op, weight, weight["index"] in in_delegates))  # a partition takes its ops' constants
    return result


def test_per_layer_precision_is_applied_exactly(digits_task, quantized):
    precisions = {layer: ("int8" if layer.startswith("stage3") else "fp32") for layer in _layers(digits_task)}
    path = quantized("stage3", precisions)
    ops, tensors = _graph(path)
    layer_ops = _layer_ops(path)
    assert len(layer_ops) == len(precisions)
    for op, weight, _ in layer_ops:
        in_stage3 = "Sequential_stage3/" in weight["name"]
        operands = [tensors[i]["dtype"] for i in [*op["inputs"], *op["outputs"]] if i >= 0]
        if in_stage3:
            assert weight["dtype"] == np.int8 and tensors[op["outputs"][0]]["dtype"] == np.int8, weight["name"]
        else:
            assert all(dtype == np.float32 for dtype in operands), weight["name"]
    assert sum("Sequential_stage3/" in weight["name"] for _, weight, _ in layer_ops) == 5
    # besides the stage3 layers, only the (de)quantize ops and the residual adds / pooling they feed are integer
    others = [op for op in ops if op["op_name"] not in LAYER_OPS]
    integer = [op for op in others if any(tensors[i]["dtype"] == np.int8 for i in op["outputs"])]
    assert sorted(op["op_name"] for op in integer) == ["ADD", "ADD", "MEAN", "QUANTIZE", "QUANTIZE"]
    adds = [tensors[op["outputs"][0]]["name"] for op in integer if op["op_name"] == "ADD"]
    assert all("Sequential_stage3/" in name for name in adds)


def test_each_precision_changes_the_artifact_and_the_profile_lists_only_xnnpack_kernels(
    digits_task, float_model, quantized, profile
):
    layers = _layers(digits_task)
    stored = {"int8": np.int8, "int16": np.int8, "fp16": np.float16, "int4": np.int8}  # the interpreter widens int4
    sizes, built = {"fp32": float_model.stat().st_size}, {}
    for precision, dtype in stored.items():
        chosen = [layer for layer in layers if precision != "int4" or layer != "stem.0"]  # no int4 depthwise recipe
        path = built[precision] = quantized(precision, dict.fromkeys(chosen, precision))
        sizes[precision] = path.stat().st_size
        _, tensors = _graph(path)
        if precision == "int16":
            assert any(tensor["dtype"] == np.int16 for tensor in tensors)
        for op, weight, delegated in _layer_ops(path, delegated=True):
            if op["op_name"] == "DEPTHWISE_CONV_2D" and precision == "int4":
                continue
            assert weight["dtype"] == dtype, (precision, weight["name"])
            listed = precision in profile.precision_choices(PROFILE_OP_TYPES[op["op_name"]])
            assert delegated == listed, (precision, op["op_name"])
    assert sizes["int4"] < sizes["int8"] < sizes["fp16"] < sizes["fp32"]
    assert INT4 in _stored_types(built["int4"]) and INT4 not in _stored_types(built["int8"])
    assert sizes["int16"] != sizes["int8"]


def test_unsupported_precision_fails_the_candidate_in_one_line(digits_task, float_model, tmp_path):
    from autocompress.errors import TrialError

    with pytest.raises(TrialError, match=r"int4 is not supported for layer stem\.0 \(DEPTHWISE_CONV_2D\)"):
        quantize(
            float_model,
            tmp_path / "bad.tflite",
            QuantizeSettings(precisions={"stem.0": "int4"}),
            digits_task.data.calibration,
            module_paths(digits_task.model),
        )


def test_calibration_method_changes_the_scales(digits_task, quantized):
    int8 = dict.fromkeys(_layers(digits_task), "int8")
    scales = {}
    for method in ("minmax", "percentile"):
        _, tensors = _graph(quantized(f"int8-{method}", int8, method))
        scales[method] = {t["name"]: t["quantization_parameters"]["scales"] for t in tensors if t["dtype"] == np.int8}
    assert scales["minmax"].keys() == scales["percentile"].keys()
    assert any(not np.allclose(scales["minmax"][k], scales["percentile"][k]) for k in scales["minmax"])


def test_session_runs_any_batch_size_and_honours_the_delegate(digits_task, quantized, profile):
    path = str(quantized("int8", dict.fromkeys(_layers(digits_task), "int8")))
    inputs = next(iter(digits_task.data.validation))[0].numpy()[:37]
    session = open_session(path, SESSION, profile.runtime_options, profile.threads)
    batched = session.run(inputs)
    assert batched.shape == (37, 10)
    np.testing.assert_array_equal(batched, np.concatenate([session.run(sample[None]) for sample in inputs]))
    plain = open_session(path, SESSION, {"delegate": "none"}, 1).run(inputs)
    assert np.mean(plain.argmax(1) == batched.argmax(1)) > 0.95
    with pytest.raises(RuntimeError, match="delegate 'gpu'"):
        open_session(path, SESSION, {"delegate": "gpu"}, 1)


def test_uniform_int8_keeps_accuracy(digits_task, float_model, quantized, profile):
    int8 = quantized("int8", dict.fromkeys(_layers(digits_task), "int8"))
    baseline = measure_artifact(float_model, digits_task, profile)
    measured = measure_artifact(int8, digits_task, profile)
    assert baseline.metric > 0.9
    assert abs(measured.metric - baseline.metric) <= 0.01
    assert measured.size_bytes < baseline.size_bytes / 3
    assert "ai-edge-litert" in measured.environment


def test_the_same_weights_are_converted_once_and_changed_weights_again(digits_task, tmp_path):
    """Sensitivity rows and precision-only candidates reuse the conversion; a changed weight never does."""
    model = copy.deepcopy(digits_task.model)
    with torch.no_grad():
        next(model.parameters()).add_(1e-3)  # weights no other test converted
    before = conversions()
    convert(model, digits_task.example_input, tmp_path / "a.tflite")
    convert(model, digits_task.example_input, tmp_path / "b.tflite")
    assert conversions() == before + 1
    assert (tmp_path / "a.tflite").read_bytes() == (tmp_path / "b.tflite").read_bytes()
    with torch.no_grad():
        next(model.parameters()).add_(0.5)
    convert(model, digits_task.example_input, tmp_path / "c.tflite")
    assert conversions() == before + 2
    assert (tmp_path / "c.tflite").read_bytes() != (tmp_path / "a.tflite").read_bytes()


def test_search_on_tflite_exports_the_artifact(tmp_path):
    study = f"tiny-tflite-{uuid.uuid4().hex[:8]}"
    # the tests' tiny user task (the built-in example on LiteRT is the benchmark's; test time): sampled trials at
    # layer granularity, so precisions mix per layer; a loose bound, so the winner is exported
    result = invoke_cli("search", "--no-sensitivity", "--no-warm-starts", str(user_config()), "--device",
                        "tflite-cpu", "--granularity", "layer", "--trials", "3", "--max-drop", "0.3", "--study",
                        study, "--seed", "2", "--out", str(tmp_path))  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    device_dir = tmp_path / "tflite-cpu"
    report = json.loads((device_dir / "report.json").read_text())
    assert report["device"] == "tflite-cpu" and report["study"] == study
    assert (device_dir / "model.tflite").stat().st_size == report["size_bytes"]
