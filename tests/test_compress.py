"""Every strategy knob really changes the artifact: pruning, per-layer precision, calibration, distillation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from autocompress.compress.distill import DistillSettings, distill, distillation_loss
from autocompress.compress.pipeline import STAGE_SECONDS, build
from autocompress.compress.prune import PruneSettings
from autocompress.compress.quantize import QuantizeSettings
from autocompress.evaluators.device.runner import open_session
from autocompress.hardware import get_profile
from autocompress.spaces.strategy import Strategy

LAYERS = [
    "stem.0", "stage1.0.conv1", "stage1.0.conv2", "stage1.1.conv1", "stage1.1.conv2", "stage2.0.conv1",
    "stage2.0.conv2", "stage2.0.shortcut.0", "stage2.1.conv1", "stage2.1.conv2", "stage3.0.conv1",
    "stage3.0.conv2", "stage3.0.shortcut.0", "stage3.1.conv1", "stage3.1.conv2", "fc",
]  # fmt: skip

SESSION = str(get_profile("cpu").record.session_file)


def _built(task, profile, tmp_path: Path, name: str, **sections) -> onnx.ModelProto:
    artifact = build(task, Strategy(seed=3, **sections), profile, tmp_path / name)
    return onnx.load(str(artifact.path))


def _weights(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}


def _node(model: onnx.ModelProto, name: str) -> onnx.NodeProto:
    return next(node for node in model.graph.node if node.name == name)


def _weight_is_quantized(model: onnx.ModelProto, layer: str) -> bool:
    producers = {output: node for node in model.graph.node for output in node.output}
    weight_input = _node(model, layer).input[1]
    producer = producers.get(weight_input)
    return producer is not None and producer.op_type == "DequantizeLinear"


def test_pruning_shrinks_every_coupled_layer(digits_untrained, cpu_profile, tmp_path):
    pruned = _built(digits_untrained, cpu_profile, tmp_path, "p", prune=PruneSettings(ratios={"stem.0": 0.5}))
    weights = _weights(pruned)
    # stem.0 feeds stage 1's residual sums, so every conv writing into them loses the same channels
    assert weights["stem.0.weight"].shape[0] == 16
    assert weights["stage1.0.conv2.weight"].shape[0] == 16
    assert weights["stage1.0.conv1.weight"].shape[1] == 16
    assert weights["stage2.0.conv1.weight"].shape[1] == 16
    assert weights["stage2.0.conv1.weight"].shape[0] == 64  # other groups untouched


def test_skipped_blocks_leave_the_graph_and_their_precisions_with_them(digits_untrained, cpu_profile, tmp_path):
    everything_int8 = QuantizeSettings(precisions=dict.fromkeys(LAYERS, "int8"))
    skip = PruneSettings(ratios={"stem.0": 0.5, "stage1.1.conv1": 0.5}, skip=["stage1.1", "stage2.1"])
    artifact = build(digits_untrained, Strategy(prune=skip, quantize=everything_int8), cpu_profile, tmp_path / "s")
    model = onnx.load(str(artifact.path))
    convs = {node.name for node in model.graph.node if node.op_type == "Conv"}
    gone = {"stage1.1.conv1", "stage1.1.conv2", "stage2.1.conv1", "stage2.1.conv2"}
    assert convs == set(LAYERS) - gone - {"fc"}
    assert all(_weight_is_quantized(model, layer) for layer in convs)  # the rest is still built as asked
    assert _weights(model)["stem.0.weight_quantized"].shape[0] == 16  # pruning still applies outside them
    session = open_session(str(artifact.path), SESSION, cpu_profile.runtime_options, cpu_profile.threads)
    images = next(iter(digits_untrained.data.validation))[0].numpy()
    assert session.run(images).shape == (len(images), 10)


def test_per_layer_precision_is_applied_exactly(digits_untrained, cpu_profile, tmp_path):
    precisions = {layer: ("int8" if layer.startswith("stage3") else "fp32") for layer in LAYERS}
    model = _built(digits_untrained, cpu_profile, tmp_path, "q", quantize=QuantizeSettings(precisions=precisions))
    for layer in LAYERS:
        assert _weight_is_quantized(model, layer) == (precisions[layer] == "int8"), layer


def test_calibration_method_changes_activation_scales(digits_untrained, cpu_profile, tmp_path):
    int8 = dict.fromkeys(LAYERS, "int8")
    scales = {}
    for method in ("minmax", "percentile"):
        model = _built(
            digits_untrained,
            cpu_profile,
            tmp_path,
            method,
            quantize=QuantizeSettings(calibration=method, precisions=int8),
        )
        scales[method] = {k: v for k, v in _weights(model).items() if k.endswith("_scale") and v.ndim == 0}
    assert scales["minmax"].keys() == scales["percentile"].keys()
    assert any(not np.isclose(scales["minmax"][k], scales["percentile"][k]) for k in scales["minmax"])


def test_distillation_settings_change_the_student(digits_untrained, cpu_profile, tmp_path):
    prune = PruneSettings(ratios={"stage3.1.conv1": 0.5})
    variants = {
        "none": DistillSettings(steps=0),
        "kd": DistillSettings(steps=4, temperature=4.0, alpha=0.9, lr=1e-3),
        "hot": DistillSettings(steps=4, temperature=8.0, alpha=0.9, lr=1e-3),
        "hard": DistillSettings(steps=4, temperature=4.0, alpha=0.0, lr=1e-3),
    }
    weights = {
        name: _weights(_built(digits_untrained, cpu_profile, tmp_path, name, prune=prune, distill=d))[
            "stage3.1.conv1.weight"
        ]
        for name, d in variants.items()
    }
    names = list(weights)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            assert not np.allclose(weights[first], weights[second]), (first, second)


def test_importance_criterion_picks_different_channels(digits_untrained, cpu_profile, tmp_path):
    kept = {}
    for importance in ("l1", "fpgm"):
        prune = PruneSettings(importance=importance, ratios={"stage2.0.conv1": 0.5})
        kept[importance] = _weights(_built(digits_untrained, cpu_profile, tmp_path, importance, prune=prune))
    assert kept["l1"]["stage2.0.conv1.weight"].shape == kept["fpgm"]["stage2.0.conv1.weight"].shape == (32, 32, 3, 3)
    assert not np.allclose(kept["l1"]["stage2.0.conv1.weight"], kept["fpgm"]["stage2.0.conv1.weight"])


def test_building_twice_gives_the_same_artifact_outputs(digits_untrained, cpu_profile, tmp_path):
    strategy = Strategy(
        seed=11,
        prune=PruneSettings(ratios={"stage1.0.conv1": 0.25}),
        quantize=QuantizeSettings(precisions=dict.fromkeys(LAYERS, "int8")),
        distill=DistillSettings(steps=3),
    )
    outputs, seconds = [], []
    inputs = next(iter(digits_untrained.data.validation))[0].numpy()
    for name in ("a", "b"):
        artifact = build(digits_untrained, strategy, cpu_profile, tmp_path / name)
        session = open_session(str(artifact.path), SESSION, cpu_profile.runtime_options, cpu_profile.threads)
        outputs.append(session.run(inputs))
        seconds.append({stage: artifact.metadata[stage] for stage in STAGE_SECONDS})
    np.testing.assert_array_equal(outputs[0], outputs[1])
    assert seconds[0]["export_s"] > 0  # the first build exported: its seconds are counted
    assert seconds[1]["export_s"] < seconds[0]["export_s"] / 10  # the same graph again: the export is reused


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_distillation_loss_weights_teacher_and_labels(alpha):
    torch.manual_seed(0)
    student, teacher, labels = torch.randn(8, 10), torch.randn(8, 10), torch.randint(0, 10, (8,))
    settings = DistillSettings(steps=1, temperature=2.0, alpha=alpha)
    loss = distillation_loss(student, teacher, labels, settings)
    if alpha == 0.0:
        expected = torch.nn.functional.cross_entropy(student, labels)
    else:
        log_p = torch.log_softmax(student / 2, -1)
        q = torch.softmax(teacher / 2, -1)
        expected = (q * (torch.log(q) - log_p)).sum(-1).mean() * 4
    assert torch.isclose(loss, expected, atol=1e-5)


def test_distillation_visits_a_list_of_batches_in_a_seeded_order_each_pass():
    """A task's batches in a meaningful order (MiniLM's are sorted by length): a short distillation must not see
    only the head of the list, and every batch once per pass."""
    batches = [(torch.full((2, 4), float(index)), torch.zeros(2, 4)) for index in range(20)]
    seen: list[int] = []
    student = torch.nn.Linear(4, 4)
    student.register_forward_hook(lambda _module, inputs, _output: seen.append(int(inputs[0][0, 0])))
    settings = DistillSettings(steps=40, loss="mse", alpha=1.0)
    distill(student, torch.nn.Linear(4, 4), batches, settings, seed=5)
    first, second = seen[:20], seen[20:]
    assert sorted(first) == sorted(second) == list(range(20))  # each pass visits every batch once
    assert first != list(range(20)) and first != second  # shuffled, and anew each pass
    seen.clear()
    distill(student, torch.nn.Linear(4, 4), batches, settings, seed=5)
    assert seen[:20] == first  # the seed fixes the order
