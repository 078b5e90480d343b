"""A strategy pins its artifact: the base model's fingerprint, the quantizer's resolved "auto" settings, the
threads and versions; `apply` refuses another base model and says where a rebuild differs from the report."""

from __future__ import annotations

import json

import torch

from autocompress.fingerprint import model_fingerprint
from autocompress.hardware import get_profile
from autocompress.search.export import pin
from autocompress.spaces.strategy import Strategy
from tests.helpers import invoke_cli, last_line, user_config


def test_the_fingerprint_follows_the_weights_not_the_object():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    same = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    same.load_state_dict(model.state_dict())
    assert model_fingerprint(model) == model_fingerprint(same)
    with torch.no_grad():
        same[0].weight[0, 0] += 1e-6
    assert model_fingerprint(model) != model_fingerprint(same)


def test_an_exported_strategy_records_what_its_artifact_was_built_from(tiny_task, tmp_path):
    pinned = pin(tiny_task, get_profile("cpu"), build_threads=2.0)
    assert pinned.base_model == model_fingerprint(tiny_task.model) and pinned.runtime == "onnxruntime"
    assert isinstance(pinned.resolved["reduce_range"], bool)  # "auto" resolved on this machine's CPU
    assert pinned.threads == 2 and pinned.build_threads == 2
    assert set(pinned.versions) == {"torch", "onnxruntime"}
    path = tmp_path / "strategy.yaml"
    Strategy(pinned=pinned).save(path)
    assert Strategy.load(path).pinned == pinned  # a YAML round trip
    assert "pinned" not in Strategy().to_yaml()  # a trial's strategy carries no pin


def test_apply_refuses_a_strategy_pinned_to_another_base_model(tiny_task, tmp_path):
    pinned = pin(tiny_task, get_profile("cpu")).model_copy(update={"base_model": "0123456789abcdef"})
    path = tmp_path / "strategy.yaml"
    Strategy(device="cpu", pinned=pinned).save(path)
    result = invoke_cli("apply", str(path), str(user_config()), "--out", str(tmp_path / "rebuilt"))
    assert result.returncode == 2, result.stderr[-2000:]
    assert last_line(result.stderr).startswith("error: this strategy was searched on another base model")
    assert "Traceback" not in result.stderr and not (tmp_path / "rebuilt").exists()


def test_apply_says_where_a_rebuild_differs_from_the_report(tiny_task, tmp_path):
    """The same base model (its fingerprint matches), a report claiming another accuracy and a speedup far from
    what an unpruned model can give: apply rebuilds, scores, times in one window, and names both differences."""
    folder = tmp_path / "exported"
    folder.mkdir()
    Strategy(device="cpu", pinned=pin(tiny_task, get_profile("cpu"))).save(folder / "strategy.yaml")
    (folder / "report.json").write_text(json.dumps({"accuracy": 0.123, "confirmed_speedup": 50.0,
                                                    "confirmed_speedup_ci": [45.0, 55.0], "threads": 2}))  # fmt: skip
    result = invoke_cli("apply", str(folder / "strategy.yaml"), str(user_config()), "--windows", "1",
                        "--out", str(tmp_path / "rebuilt"))  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    rebuilt = json.loads((tmp_path / "rebuilt" / "report.json").read_text())
    assert rebuilt["validation"]["metric"] == rebuilt["validation"]["baseline"]  # nothing compressed: the same
    assert rebuilt["test"]["metric"] == rebuilt["test"]["baseline"] and rebuilt["windows"] == 1
    assert [line.split(" ")[0] for line in rebuilt["differences"]] == ["validation", "speedup"]
    assert "differs from the exported report: validation metric" in result.stderr
