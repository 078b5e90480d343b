"""The torchlib table kept across exports (compress/onnx_registry.py) changes no exported byte and leaks nothing."""

from __future__ import annotations

from pathlib import Path

import onnx
import torch
from onnxscript import opset18 as op
from torch import nn
from torch.onnx._internal.exporter._registration import ONNXRegistry

from autocompress.compress.export import export_onnx
from autocompress.compress.onnx_registry import reuse_torchlib_table


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)).eval()


def test_an_export_with_the_kept_table_is_byte_identical_to_torchs_own(tmp_path: Path, monkeypatch) -> None:
    assert reuse_torchlib_table()
    example = torch.zeros(1, 1, 8, 8)
    export_onnx(_model(), example, tmp_path / "kept.onnx")
    torch_own = ONNXRegistry.from_torchlib.__func__.__wrapped__
    monkeypatch.setattr(ONNXRegistry, "from_torchlib", classmethod(torch_own))
    program = torch.onnx.export(_model(), (example,), dynamo=True, input_names=["input"], output_names=["output"],
                                dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=1024)},))  # fmt: skip
    kept, own = onnx.load(tmp_path / "kept.onnx"), program.model_proto
    assert [node.op_type for node in kept.graph.node] == [node.op_type for node in own.graph.node]
    assert [init.raw_data for init in kept.graph.initializer] == [init.raw_data for init in own.graph.initializer]


def test_a_custom_translation_does_not_stay_in_the_kept_table(tmp_path: Path) -> None:
    assert reuse_torchlib_table()
    first, second = ONNXRegistry.from_torchlib(), ONNXRegistry.from_torchlib()
    assert first is not second and first.functions is not second.functions
    assert first.functions.keys() == second.functions.keys()

    def relu_as_sigmoid(x):
        return op.Sigmoid(x)

    example = torch.zeros(1, 1, 8, 8)
    custom = torch.onnx.export(_model(), (example,), dynamo=True,
                               custom_translation_table={torch.ops.aten.relu.default: relu_as_sigmoid})  # fmt: skip
    assert "Sigmoid" in {node.op_type for node in custom.model_proto.graph.node}
    export_onnx(_model(), example, tmp_path / "plain.onnx")
    plain = {node.op_type for node in onnx.load(tmp_path / "plain.onnx").graph.node}
    assert "Relu" in plain and "Sigmoid" not in plain


def test_installing_twice_keeps_one_table() -> None:
    assert reuse_torchlib_table() and reuse_torchlib_table()
    assert not getattr(ONNXRegistry.from_torchlib.__func__.__wrapped__, "_kept_by_autocompress", False)
