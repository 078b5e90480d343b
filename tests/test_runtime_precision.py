"""The runtime's compute precision as a choice (issue 26): OpenVINO runs what a strategy leaves in fp32 in bf16
by default on CPUs that have it, so bf16 is what a user who sets nothing gets there, and a precision the search
can choose for the whole model. The artifact carries it, so it runs (and is re-timed) as it was measured."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import optuna
import pytest
import yaml

from autocompress.compress.quantize import RUNTIME_UNIT, QuantizeSettings, check_precisions
from autocompress.errors import ConfigError
from autocompress.hardware import get_profile
from autocompress.hardware.profile import HardwareProfile
from autocompress.spaces.space import SearchSpace
from autocompress.spaces.strategy import Strategy

ov = pytest.importorskip("openvino")
pytest.importorskip("nncf")
from autocompress.compress.quantize_openvino import build_artifact  # noqa: E402
from autocompress.evaluators.device.openvino_session import own_precision  # noqa: E402
from autocompress.runtimes.openvino import runtime_precisions  # noqa: E402

HAS_BF16 = "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
needs_bf16 = pytest.mark.skipif(not HAS_BF16, reason="this CPU has no bf16 (OpenVINO lists no BF16 capability)")


@pytest.fixture(scope="module")
def openvino_profile() -> HardwareProfile:
    return get_profile("openvino-cpu")


def test_bf16_is_offered_exactly_where_the_plugin_runs_it(openvino_profile):
    assert runtime_precisions(openvino_profile) == (("fp32", "bf16") if HAS_BF16 else ("fp32",))
    remote = openvino_profile.model_copy(update={"host": "user@192.0.2.1"})
    assert remote.is_remote and runtime_precisions(remote) == ("fp32",)  # not this machine's CPU: not asked
    cpu = get_profile("cpu")
    assert cpu.record.runtime_precisions(cpu) == ("fp32",)  # ONNX Runtime: no such choice
    with pytest.raises(ConfigError, match="compute in bf16.*runtime_precision: fp32"):  # apply'd refuse it there
        check_precisions(QuantizeSettings(runtime_precision="bf16"), [], cpu)


@needs_bf16
def test_the_search_asks_for_it_measures_it_alone_and_starts_from_the_runtime_s_default(tiny_task, openvino_profile):
    space = SearchSpace.for_task(tiny_task, openvino_profile, "layer")
    knob = space.quantize.runtime_precision_knob()
    assert knob is not None and knob.choices == ("fp32", "bf16") and knob.probes == ("bf16",)
    assert (knob.kind, knob.unit, "bf16") in {(k.kind, k.unit, value) for k, value in space.probes()}
    alone = space.alone(knob, "bf16")  # the sensitivity row's candidate: nothing else changed
    assert alone.quantize.runtime_precision == "bf16" and not alone.quantize.any and not alone.prune.any
    starts = dict(space.warm_starts())
    default = space.strategy(starts["the runtime's default (bf16 compute)"])
    assert default.quantize.runtime_precision == "bf16" and not default.quantize.any
    assert space.strategy(starts["no compression"]).quantize.runtime_precision == "fp32"
    recipe = space.strategy(starts["NNCF int8 (model type preset), bf16 compute"])
    assert recipe.quantize.any and recipe.quantize.runtime_precision == "bf16"
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    sampled = {space.sample(study.ask(), seed=0).quantize.runtime_precision for _ in range(12)}
    assert sampled == {"fp32", "bf16"}
    strategy = Strategy(quantize=QuantizeSettings(runtime_precision="bf16"))
    assert Strategy.from_yaml(strategy.to_yaml()) == strategy
    assert yaml.safe_load(strategy.to_yaml())["quantize"]["runtime_precision"] == "bf16"
    assert "runtime_precisions=fp32/bf16" in space.signature()  # a study from a CPU without bf16 is not resumed
    terms = space.terms(strategy)
    assert any(term.unit == RUNTIME_UNIT and term.value == "bf16" for term in terms)  # in the additive estimate
    assert "bf16 compute" in strategy.quantize.describe()


@needs_bf16
def test_a_bf16_artifact_carries_its_precision_and_runs_in_it(tiny_task, openvino_profile, tmp_path):
    def build(name: str, runtime_precision: str):
        settings = QuantizeSettings(precisions={}, runtime_precision=runtime_precision)
        return build_artifact(tiny_task.model, tiny_task.example_input, settings, tiny_task.data.calibration,
                              tmp_path / name, openvino_profile)  # fmt: skip

    bf16, fp32 = build("bf16", "bf16"), build("fp32", "fp32")
    assert own_precision(ov.Core().read_model(bf16)) == "bf16" and own_precision(ov.Core().read_model(fp32)) is None
    batch = np.concatenate([inputs.numpy() for inputs, _ in list(tiny_task.data.validation)[:2]])
    np.save(tmp_path / "batch.npy", batch)
    # the sessions run in a process of their own, as on the device (compiled models in the test process made
    # test_signals' finaliser test segfault later in the suite)
    script = f"""
import json, sys, numpy as np, openvino as ov
from autocompress.evaluators.device.openvino_session import Session
batch = np.load({str(tmp_path / "batch.npy")!r})
sessions = {{name: Session(path, json.loads(sys.argv[1]), 2) for name, path in (("bf16", {str(bf16)!r}),
            ("fp32", {str(fp32)!r}))}}
plain = ov.Core().compile_model({str(bf16)!r}, "CPU")  # what a user who sets nothing gets
print(json.dumps({{"hints": {{name: str(one._compiled.get_property("INFERENCE_PRECISION_HINT"))
                              for name, one in sessions.items()}},
                  "plain": str(plain.get_property("INFERENCE_PRECISION_HINT")),
                  "outputs": {{name: one.run(batch).tolist() for name, one in sessions.items()}}}}))
"""
    options = json.dumps(openvino_profile.runtime_options)  # the profile forces f32; the artifact's own hint wins
    done = subprocess.run([sys.executable, "-c", script, options], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.splitlines()[-1])
    assert "bfloat16" in found["hints"]["bf16"] and "float32" in found["hints"]["fp32"], found["hints"]
    assert "bfloat16" in found["plain"]  # bf16 is what this CPU's plugin runs by default anyway
    outputs = {name: np.array(values) for name, values in found["outputs"].items()}
    assert not np.array_equal(outputs["bf16"], outputs["fp32"])  # really computed in bf16: rounded differently
    np.testing.assert_allclose(outputs["bf16"], outputs["fp32"], rtol=0.1, atol=0.1)


def test_the_benchmark_times_each_nncf_recipe_as_it_runs_by_default_here(tiny_task, openvino_profile, tmp_path):
    from experiments.benchmark_methods import one_click_methods

    methods = one_click_methods(openvino_profile, tiny_task)
    assert ("nncf-int8-bf16" in methods) == HAS_BF16 and "nncf-int8" in methods
    if HAS_BF16:
        artifact = methods["nncf-int8-bf16"](tiny_task, openvino_profile, tmp_path, 0)
        assert own_precision(ov.Core().read_model(artifact)) == "bf16"
