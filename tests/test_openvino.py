"""OpenVINO end to end with the real runtime and real NNCF: per-layer precision, int8 accuracy, the CLI."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import get_args

import pytest
from optuna.trial import TrialState

from autocompress.compress.quantize import Calibration, QuantizeSettings
from autocompress.evaluators.measure import measure_artifact
from autocompress.hardware import get_profile
from tests.helpers import invoke_cli, load_study, user_config

ov = pytest.importorskip("openvino")
pytest.importorskip("nncf")
from autocompress.compress.quantize_openvino import BIAS_SUFFIX, RANGE_ESTIMATORS, build_artifact  # noqa: E402

LAYERS = [
    "stem.0", "stage1.0.conv1", "stage1.0.conv2", "stage1.1.conv1", "stage1.1.conv2", "stage2.0.conv1",
    "stage2.0.conv2", "stage2.0.shortcut.0", "stage2.1.conv1", "stage2.1.conv2", "stage3.0.conv1",
    "stage3.0.conv2", "stage3.0.shortcut.0", "stage3.1.conv1", "stage3.1.conv2", "fc",
]  # fmt: skip
STAGE3_INT8 = {layer: ("int8" if layer.startswith("stage3") else "fp32") for layer in LAYERS}

pytestmark = pytest.mark.e2e  # integration: the trained digits model


@pytest.fixture(scope="module")
def openvino_profile():
    return get_profile("openvino")


def _build(task, tmp_path: Path, name: str, precisions: dict[str, str], calibration: str = "minmax") -> Path:
    settings = QuantizeSettings(calibration=calibration, precisions=precisions)
    return build_artifact(task.model, task.example_input, settings, task.data.calibration, tmp_path / name,
                          get_profile("openvino-cpu"))  # fmt: skip


def _layer_op(model: ov.Model, layer: str) -> ov.Node:
    names = {layer, layer + BIAS_SUFFIX}
    (op,) = [op for op in model.get_ordered_ops() if op.get_friendly_name() in names and op.get_type_name() != "Add"]
    return op


def _weights_are_int8(op: ov.Node) -> bool:
    """NNCF stores quantized weights as int8 Constant -> Convert -> Multiply(scale) (or a FakeQuantize)."""
    producer = op.input_value(1).get_node()
    if producer.get_type_name() == "FakeQuantize":
        return True
    while producer.get_type_name() in ("Multiply", "Subtract", "Convert"):
        producer = producer.input_value(0).get_node()
    return producer.get_type_name() == "Constant" and producer.get_output_element_type(0) == ov.Type.i8


def _fake_quantize_ranges(model: ov.Model) -> dict[str, float]:
    return {
        op.get_friendly_name(): float(op.input_value(2).get_node().get_data().max())
        for op in model.get_ordered_ops()
        if op.get_type_name() == "FakeQuantize"
    }


def test_every_calibration_method_has_a_range_estimator():
    assert set(RANGE_ESTIMATORS) == set(get_args(Calibration))


def test_per_layer_precision_is_applied_exactly(digits_task, tmp_path):
    artifact = _build(digits_task, tmp_path, "stage3", STAGE3_INT8)
    assert artifact.name == "model.xml" and artifact.with_suffix(".bin").is_file()
    assert sorted(path.name for path in artifact.parent.iterdir()) == ["model.bin", "model.xml"]
    model = ov.Core().read_model(artifact)
    assert model.input(0).get_partial_shape()[0].is_dynamic  # accuracy runs batched, latency at batch 1
    for layer, precision in STAGE3_INT8.items():
        op = _layer_op(model, layer)
        activation_fq = op.input_value(0).get_node().get_type_name() == "FakeQuantize"
        assert activation_fq == (precision == "int8"), layer
        assert _weights_are_int8(op) == (precision == "int8"), layer
    # nothing upstream of stage 3 is quantized: every FakeQuantize feeds stage 3 or what follows it
    order = {op.get_friendly_name(): index for index, op in enumerate(model.get_ordered_ops())}
    first_int8 = min(order[_layer_op(model, layer).get_friendly_name()] for layer in LAYERS if "stage3" in layer)
    for op in model.get_ordered_ops():
        if op.get_type_name() == "FakeQuantize" and op.input_value(0).get_node().get_type_name() != "Constant":
            consumers = [target.get_node().get_friendly_name() for target in op.output(0).get_target_inputs()]
            assert all(order[name] >= first_int8 for name in consumers), (op.get_friendly_name(), consumers)


def test_calibration_method_changes_activation_ranges(digits_task, tmp_path):
    ranges = {
        method: _fake_quantize_ranges(ov.Core().read_model(_build(digits_task, tmp_path, method, STAGE3_INT8, method)))
        for method in ("minmax", "entropy")
    }
    assert ranges["minmax"].keys() == ranges["entropy"].keys()
    assert any(ranges["minmax"][name] != pytest.approx(ranges["entropy"][name]) for name in ranges["minmax"])


def test_int8_accuracy_is_within_a_point_of_fp32(digits_task, openvino_profile, tmp_path):
    fp32 = measure_artifact(_build(digits_task, tmp_path, "fp32", dict.fromkeys(LAYERS, "fp32")), digits_task,
                            openvino_profile)  # fmt: skip
    int8 = measure_artifact(_build(digits_task, tmp_path, "int8", dict.fromkeys(LAYERS, "int8")), digits_task,
                            openvino_profile)  # fmt: skip
    assert fp32.metric > 0.95
    assert abs(int8.metric - fp32.metric) <= 0.01
    assert int8.size_bytes < fp32.size_bytes / 2
    assert fp32.environment["openvino"] == ov.__version__


def test_search_on_openvino_exports_the_ir(tmp_path):
    study = f"tiny-openvino-{uuid.uuid4().hex[:8]}"
    # the tests' tiny user task (the built-in example on OpenVINO is the benchmark's; test time): the warm starts,
    # nothing compressed, NNCF int8 and 50% pruning; a loose bound, so the winner is exported
    result = invoke_cli("search", "--no-sensitivity", str(user_config()), "--device", "openvino-cpu", "--trials",
                        "3", "--max-drop", "0.3", "--study", study, "--out", str(tmp_path))  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    device_dir = tmp_path / "openvino-cpu"
    report = json.loads((device_dir / "report.json").read_text())
    assert report["device"] == "openvino-cpu" and report["study"] == study
    ir_size = (device_dir / "model.xml").stat().st_size + (device_dir / "model.bin").stat().st_size
    assert report["size_bytes"] == ir_size
    assert all(trial.state == TrialState.COMPLETE for trial in load_study(study).trials)
