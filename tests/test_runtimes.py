"""Runtime records: one per runtime, everything derived from them; a runtime added from the tests folder; every
precision a built-in profile offers really built into the artifact; strategies checked against the device."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
import yaml

from autocompress.compress.pipeline import build
from autocompress.errors import ConfigError, DeviceError
from autocompress.evaluators.measure import measure_artifact
from autocompress.hardware import get_profile
from autocompress.hardware.availability import availability
from autocompress.hardware.profile import BUILTIN_DIR, load_profile_file
from autocompress.runtimes import builtin_runtimes
from autocompress.spaces.graph import quant_layers
from autocompress.spaces.space import SearchSpace
from autocompress.spaces.strategy import Strategy
from tests.helpers import invoke_cli, load_study, user_config
from tests.precisions import artifact_precisions

ROOT = Path(__file__).resolve().parent.parent
EXTRA = Path(__file__).parent / "extra_runtime"


def _product_files() -> list[Path]:
    return sorted((ROOT / "autocompress").rglob("*.py"))


def test_each_runtime_is_named_in_one_product_module_only():
    for name in builtin_runtimes():
        quoted = re.compile(rf"[\"']{re.escape(name)}[\"']")
        naming = [p for p in _product_files() if quoted.search(p.read_text()) and not p.name.endswith("_session.py")]
        assert naming == [ROOT / "autocompress" / "runtimes" / f"{name}.py"], (name, naming)


def test_a_runtime_from_the_tests_folder_needs_no_product_change(tiny_task, tmp_path):
    profile = get_profile(str(EXTRA / "onnx-reference.yaml"))
    assert profile.record.name == "onnx-reference" and profile.export_format == "onnx"
    assert availability(profile) is None
    assert not any("onnx_reference" in p.read_text() or "onnx-reference" in p.read_text() for p in _product_files())
    space = SearchSpace.for_task(tiny_task, profile)
    assert space.quantize.units() == {}  # fp32 only: the record promises nothing else
    baseline = build(tiny_task, Strategy(), profile, tmp_path / "fp32").path
    strategy = space.strategy(space.uniform(0.5, "fp32", 25))
    pruned = build(tiny_task, strategy, profile, tmp_path / "pruned").path
    measured = measure_artifact(pruned, tiny_task, profile, baseline=baseline)  # in its own worker, by its session file
    assert measured.environment["onnx"] and measured.speedup is not None
    assert measured.speedup.speedup > 1.0  # half the channels, in plain numpy
    on_ort = measure_artifact(
        build(tiny_task, strategy, get_profile("cpu"), tmp_path / "ort").path, tiny_task, get_profile("cpu")
    )
    assert measured.metric == pytest.approx(on_ort.metric, abs=0.005)  # the same model, another runtime


@pytest.mark.e2e
def test_a_search_on_the_added_runtime(tmp_path):
    device = str(EXTRA / "onnx-reference.yaml")
    result = invoke_cli("search", "--no-sensitivity", str(user_config()), "--device", device, "--trials", "3",
                        "--study", "tiny-onnx-reference", "--out", str(tmp_path))  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert [t.state.name for t in load_study("tiny-onnx-reference").trials] == ["COMPLETE"] * 3


def _uniform(model, example, profile, precision: str) -> Strategy:
    """Every layer at `precision` where the profile allows it for the layer's kind, fp32 elsewhere."""
    precisions = {
        layer.name: precision if precision in profile.precision_choices(layer.kind) else "fp32"
        for layer in quant_layers(model, example)
    }
    return Strategy.model_validate({"quantize": {"precisions": precisions}})


# the tiny model's layer kinds; precisions for MatMul alone: test_onnxruntime_dynamic_int8_and_the_nncf_transformer_path
TINY_KINDS = ("Conv", "Gemm")
CASES = [
    (path.stem, precision)
    for path in sorted(BUILTIN_DIR.glob("*.yaml"))
    for precision in sorted(
        {p for kind, choices in load_profile_file(path).precisions.items() if kind in TINY_KINDS for p in choices}
        - {"fp32"}
    )
]


@pytest.mark.e2e
@pytest.mark.parametrize(("device", "precision"), CASES, ids=[f"{d}-{p}" for d, p in CASES])
def test_every_precision_a_profile_offers_is_in_the_artifact(tiny_task, tmp_path, device, precision):
    profile = get_profile(device)
    strategy = _uniform(tiny_task.model, tiny_task.example_input, profile, precision)
    artifact = build(tiny_task, strategy, profile, tmp_path).path
    assert artifact_precisions(artifact, tiny_task.model) == strategy.quantize.precisions
    assert precision in strategy.quantize.precisions.values()


def test_a_strategy_asking_what_the_device_cannot_build_is_one_line(tiny_task, tmp_path):
    strategy = Strategy.model_validate({"quantize": {"precisions": {"fc": "int4"}}})
    with pytest.raises(ConfigError, match=r"layer 'fc' \(Gemm\) in int4, which device 'cpu' does not build") as raised:
        build(tiny_task, strategy, get_profile("cpu"), tmp_path)
    assert "\n" not in str(raised.value)
    assert not list(tmp_path.glob("model.*"))  # refused before anything was built


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"runtime": "openvino", "precisions": {"Conv": ["fp16", "fp32"]}}, "openvino cannot build fp16 for Conv"),
        ({"runtime": "onnxruntime", "precisions": {"Gemm": ["int4", "fp32"]}}, "onnxruntime cannot build int4"),
        ({"runtime": "warp-drive"}, "unknown runtime 'warp-drive'"),
        ({"precisions": {"Attention": ["fp32"]}}, "layer kind 'Attention' is not one of Conv, Gemm, MatMul"),
        ({"quantize": {"activation_type": "int3"}}, "quantize.activation_type"),
        ({"name": "../etc"}, "must be letters, digits"),
    ],
)
def test_profiles_are_checked_against_their_runtime(tmp_path, change, message):
    text = (BUILTIN_DIR / "cpu.yaml").read_text()
    raw = {key: value for key, value in yaml.safe_load(text).items() if key not in change}
    path = tmp_path / "device.yaml"
    path.write_text(yaml.safe_dump(raw | change))
    with pytest.raises(DeviceError, match=re.escape(message)) as raised:
        load_profile_file(path)
    assert str(path) in str(raised.value) and "\n" not in str(raised.value)


def test_a_home_profile_cannot_take_a_builtin_name(session_home, tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOCOMPRESS_HOME", str(tmp_path))
    (tmp_path / "profiles").mkdir()
    text = (BUILTIN_DIR / "cpu.yaml").read_text().replace("host: local", "host: ssh://someone@example.org")
    (tmp_path / "profiles" / "mine.yaml").write_text(text)
    with pytest.raises(DeviceError, match="uses the name 'cpu', already taken by .*cpu.yaml") as raised:
        get_profile("cpu")
    assert str(tmp_path / "profiles" / "mine.yaml") in str(raised.value)


class _Encoder(torch.nn.Module):
    """Linear layers on [batch, tokens, features]: what a transformer's projections are."""

    def __init__(self) -> None:
        super().__init__()
        self.up, self.down = torch.nn.Linear(16, 32), torch.nn.Linear(32, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(torch.relu(self.up(x))).mean(dim=1)


def test_onnxruntime_dynamic_int8_and_the_nncf_transformer_path(tmp_path):
    """int8-dynamic layers become MatMulInteger with run-time activation quantization; on OpenVINO, MatMul layers
    go through NNCF's TRANSFORMER model type, and a SmoothQuant alpha scales their inputs."""
    import onnx
    import openvino as ov

    from autocompress.task import DataSplits, Task, accuracy

    torch.manual_seed(0)
    batches = [(torch.randn(4, 6, 16), torch.randint(0, 16, (4,))) for _ in range(4)]
    task = Task("encoder", _Encoder().eval(), torch.zeros(1, 6, 16), DataSplits(batches, batches, batches), accuracy)
    precisions = {"quantize": {"precisions": {"up": "int8-dynamic", "down": "int8"}}}
    artifact = build(task, Strategy.model_validate(precisions), get_profile("cpu"), tmp_path / "ort").path
    ops = [node.op_type for node in onnx.load(str(artifact)).graph.node]
    assert "DynamicQuantizeLinear" in ops and "MatMulInteger" in ops  # up: dynamic
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops  # down: static QDQ
    smooth = Strategy.model_validate({"quantize": {"precisions": {"up": "int8", "down": "int8"},
                                                   "options": {"smooth_quant": 0.5}}})  # fmt: skip
    ir = build(task, smooth, get_profile("openvino-cpu"), tmp_path / "ov").path
    model = ov.Core().read_model(str(ir))
    kinds = [op.get_type_name() for op in model.get_ordered_ops()]
    assert kinds.count("FakeQuantize") >= 2
    assert any("smooth_quant" in op.get_friendly_name() for op in model.get_ordered_ops())


class _Embedder(torch.nn.Module):
    """Token ids -> an embedding table -> a projection: a transformer's first and last steps."""

    def __init__(self) -> None:
        super().__init__()
        self.table, self.head = torch.nn.Embedding(512, 64), torch.nn.Linear(64, 8)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.table(ids)).mean(dim=1)


def test_onnxruntime_int8_dynamic_also_stores_the_embedding_table_in_int8(tmp_path):
    """As quantize_dynamic's own defaults do: with any layer int8-dynamic, the table is stored in 8 bits (a
    quarter of its 128 KB) and the lookup's output is float; the fp32 artifact keeps it in float."""
    import onnx
    from onnx import TensorProto

    from autocompress.task import DataSplits, Task, accuracy

    torch.manual_seed(0)
    batches = [(torch.randint(0, 512, (4, 6)), torch.randint(0, 8, (4,))) for _ in range(4)]
    task = Task("embedder", _Embedder().eval(), torch.zeros(1, 6, dtype=torch.long),
                DataSplits(batches, batches, batches), accuracy)  # fmt: skip

    def table_type(strategy: Strategy, name: str) -> int:
        artifact = build(task, strategy, get_profile("cpu"), tmp_path / name).path
        tables = [init for init in onnx.load(str(artifact)).graph.initializer if math.prod(init.dims) == 512 * 64]
        assert len(tables) == 1, [init.name for init in tables]
        return tables[0].data_type

    assert table_type(Strategy(), "fp32") == TensorProto.FLOAT
    dynamic = Strategy.model_validate({"quantize": {"precisions": {"head": "int8-dynamic"}}})
    assert table_type(dynamic, "dynamic") in (TensorProto.INT8, TensorProto.UINT8)

