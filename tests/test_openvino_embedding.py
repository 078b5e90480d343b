"""OpenVINO int8 of a model with an embedding table: NNCF stores the table in int8 once anything is quantized,
and the lookup's output stays float (a model that stays fp32 keeps an fp32 table)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from autocompress.compress.quantize import QuantizeSettings
from autocompress.hardware import get_profile

ov = pytest.importorskip("openvino")
pytest.importorskip("nncf")
from autocompress.compress.quantize_openvino import build_artifact  # noqa: E402

VOCAB, WIDTH = 500, 32


class TokenClassifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, WIDTH)
        self.hidden = nn.Linear(WIDTH, WIDTH)
        self.head = nn.Linear(WIDTH, 3)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.hidden(self.embedding(ids))).mean(1))


def _build(tmp_path: Path, precision: str) -> tuple[ov.Model, Path]:
    torch.manual_seed(0)
    model = TokenClassifier().eval()
    ids = torch.randint(0, VOCAB, (1, 16))
    calibration = [(torch.randint(0, VOCAB, (1, 16)), torch.zeros(1)) for _ in range(8)]
    settings = QuantizeSettings(precisions={"hidden": precision, "head": precision})
    path = build_artifact(model, ids, settings, calibration, tmp_path / precision, get_profile("openvino-cpu"))
    return ov.Core().read_model(path), path


def _table(model: ov.Model) -> ov.Node:
    """The Constant the embedding Gather reads its rows from (through NNCF's Convert/Multiply decompression)."""
    (gather,) = [op for op in model.get_ordered_ops() if op.get_type_name() == "Gather" and
                 op.get_output_partial_shape(0).rank.get_length() == 3]  # fmt: skip
    producer = gather.input_value(0).get_node()
    while producer.get_type_name() in ("Multiply", "Subtract", "Convert"):
        producer = producer.input_value(0).get_node()
    assert producer.get_type_name() == "Constant"
    return producer


def test_an_int8_model_stores_its_embedding_table_in_int8(tmp_path):
    int8, int8_path = _build(tmp_path, "int8")
    fp32, fp32_path = _build(tmp_path, "fp32")
    assert _table(int8).get_output_element_type(0) == ov.Type.i8
    assert _table(fp32).get_output_element_type(0) == ov.Type.f32
    gathers = [op for op in int8.get_ordered_ops() if op.get_type_name() == "Gather"]
    for gather in gathers:  # the lookup's output is not quantized: what reads it gets float rows
        assert all(t.get_node().get_type_name() != "FakeQuantize" for t in gather.output(0).get_target_inputs())
    assert int8_path.with_suffix(".bin").stat().st_size < 0.4 * fp32_path.with_suffix(".bin").stat().st_size
