"""A corpus of broken inputs, as users write them: configs, their own functions, profiles, strategies, flags.

Every one must end in exit 2 and one line on stderr that names the problem; never a traceback. Most run the real
CLI in this process (typer's runner: the same code, without a Python start-up per case); two run it as a user
does, in a fresh process, to show what the terminal gets.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from autocompress.cli import app
from autocompress.hardware.profile import BUILTIN_DIR
from tests.helpers import run_cli, user_config

pytestmark = pytest.mark.e2e
USER = user_config().parent


def _config(tmp_path: Path, **changes: object) -> str:
    """The tiny user config with some keys changed (None removes a key), written beside the user's modules."""
    raw = yaml.safe_load(user_config().read_text()) | changes
    path = USER / f"bad-{tmp_path.name}.yaml"
    path.write_text(yaml.safe_dump({key: value for key, value in raw.items() if value is not None}))
    return str(path)


def _profile(tmp_path: Path, **changes: object) -> str:
    raw = yaml.safe_load((BUILTIN_DIR / "cpu.yaml").read_text()) | {"name": "my-device", "aliases": []} | changes
    path = tmp_path / "device.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def _strategy(tmp_path: Path, text: str) -> str:
    path = tmp_path / "strategy.yaml"
    path.write_text(text)
    return str(path)


def _text(tmp_path: Path, text: str) -> str:
    path = USER / f"bad-{tmp_path.name}.yaml"
    path.write_text(text)
    return str(path)


CASES = {
    # CLI flags
    "unknown device": (lambda t: ["search", "--example", "digits", "--device", "jetson-nano-9000"],
                       "unknown device 'jetson-nano-9000'"),
    "unknown example": (lambda t: ["search", "--example", "mnist-huge"], "unknown example 'mnist-huge'"),
    "missing config": (lambda t: ["search", "missing.yaml"], "config file 'missing.yaml' does not exist"),
    "bad timeout": (lambda t: ["search", "--timeout", "8 parsecs"], "is not a duration"),
    "bad deadline margin": (lambda t: ["search", "--timeout", "1h", "--deadline-margin", "soon"], "is not a duration"),
    "bad drop mode": (lambda t: ["search", "--drop-mode", "sideways"], "drop_mode"),
    "negative max drop": (lambda t: ["search", "--max-drop", "-1"], "max_drop"),
    "zero trials": (lambda t: ["search", "--trials", "0"], "search.trials"),
    "negative confirm": (lambda t: ["search", "--confirm", "-1"], "search.confirm"),
    "no confirmation window": (lambda t: ["export", "--confirm-windows", "0"], "search.confirm_windows"),
    "study escapes the home": (lambda t: ["search", "--study", "../../etc"], "must be 1-128 letters"),
    "study with a slash": (lambda t: ["search", "--study", "a/b"], "must be 1-128 letters"),
    "bad granularity": (lambda t: ["search", "--granularity", "blocks"], "granularity"),
    "bad sampler": (lambda t: ["search", "--sampler", "annealing"], "sampler"),
    "bad storage": (lambda t: ["search", "--storage", "nosuchdb://x", "--trials", "1"],
                    "cannot open study storage 'nosuchdb://x'"),
    "unreachable postgresql": (lambda t: ["search", "--storage", "postgresql://nobody@127.0.0.1:1/x", "--trials", "1"],
                               "cannot open study storage 'postgresql://nobody@127.0.0.1:1/x'"),
    "report of a study in a bad storage": (lambda t: ["report", "s", "--storage", "nosuchdb://x"],
                                           "cannot open study storage 'nosuchdb://x'"),
    "missing strategy": (lambda t: ["apply", "nowhere/strategy.yaml"], "strategy file 'nowhere/strategy.yaml'"),
    "export of no study": (lambda t: ["export", "--study", "never-ran"], "no study named 'never-ran'"),
    "missing profile file": (lambda t: ["search", "--device", "nowhere/device.yaml"], "does not exist"),
    # configs
    "config not YAML": (lambda t: ["search", _text(t, "model: [unclosed\n")], "is not valid YAML"),
    "config a list": (lambda t: ["search", _text(t, "- model\n- data\n")], "must be a YAML mapping"),
    "config unknown key": (lambda t: ["search", _config(t, colour="blue")], "colour: Extra inputs are not permitted"),
    "config name escapes": (lambda t: ["search", _config(t, name="../../etc/x")], "name: '../../etc/x' must be"),
    "config example and model": (lambda t: ["search", _config(t, example="digits")], "not both"),
    "config model without data": (lambda t: ["search", _config(t, data=None)], "give both `model` and `data`"),
    "config negative trials": (lambda t: ["search", _config(t, search={"trials": -3})], "search.trials"),
    "config unknown space option": (lambda t: ["search", _config(t, space={"max_ratio": 0.5})],
                                    "space option 'max_ratio' is unknown; known options: alpha"),
    "config space value of the wrong type": (lambda t: ["search", _config(t, space={"distill_steps": [0, "many"]})],
                                             "space option 'distill_steps[1]': Input should be a valid integer"),
    # the user's own functions
    "model not a model": (lambda t: ["search", _config(t, model="tiny_task:not_a_model")],
                          "must return (nn.Module, example_input)"),
    "model missing": (lambda t: ["search", _config(t, model="tiny_task:no_such_function")],
                      "has no attribute 'no_such_function'"),
    "model module missing": (lambda t: ["search", _config(t, model="no_such_package.models:build")],
                             "cannot import module 'no_such_package.models'"),
    "model not a reference": (lambda t: ["search", _config(t, model="tiny_task")], "package.module:function"),
    "model raises": (lambda t: ["search", _config(t, model="tiny_task:broken_model")],
                     "model 'tiny_task:broken_model' raised RuntimeError: checkpoint tiny.pt not found"),
    "forward fails": (lambda t: ["search", _config(t, model="tiny_task:wrong_input_model")],
                      "fails on its own example input of shape (1, 3, 8, 8)"),
    "metric signature": (lambda t: ["search", _config(t, metric="tiny_task:metric_one_argument")],
                         "metric 'tiny_task:metric_one_argument' failed on (outputs, labels) arrays: TypeError"),
    "metric returns text": (lambda t: ["search", _config(t, metric="tiny_task:metric_as_text")],
                            "returned str"),
    "single-use loaders": (lambda t: ["search", _config(t, data="tiny_task:generator_loaders")],
                           "can be read only once"),
    "float labels": (lambda t: ["search", _config(t, data="tiny_task:float_label_loaders", metric="accuracy")],
                     "metric 'accuracy' needs integer class labels"),
    "data not loaders": (lambda t: ["search", _config(t, data="tiny_task:not_loaders")],
                         "must return (train, calibration, validation[, test])"),
    "unexportable model": (lambda t: ["search", _config(t, model="tiny_task:unexportable_model")],
                           "ONNX export failed"),
    # profiles
    "profile fp16 on openvino": (lambda t: ["search", "--device", _profile(t, runtime="openvino",
                                 precisions={"Conv": ["fp16", "fp32"]})], "openvino cannot build fp16 for Conv"),
    "profile unknown runtime": (lambda t: ["search", "--device", _profile(t, runtime="warp")],
                                "unknown runtime 'warp'"),
    "profile without fp32": (lambda t: ["search", "--device", _profile(t, precisions={"Conv": ["int8"]})],
                             "must include fp32"),
    "profile bad host": (lambda t: ["search", "--device", _profile(t, host="pi@raspberry")],
                         "must be 'local' or ssh://"),
    "profile TensorRT unsigned": (lambda t: ["search", "--device", _profile(t, runtime_options={
                                  "providers": ["TensorrtExecutionProvider"]},
                                  precisions={"MatMul": ["int8", "fp32"]})], "signed symmetric int8"),
    # strategies
    "strategy precision the device lacks": (lambda t: ["apply", _strategy(t, "quantize: {precisions: {fc: int4}}\n"),
                                            "--config", str(user_config()), "--device", "cpu"],
                                            "layer 'fc' (Gemm) in int4, which device 'cpu' does not build"),
    "strategy unknown layer": (lambda t: ["apply", _strategy(t, "quantize: {precisions: {head: int8}}\n"),
                               "--config", str(user_config()), "--device", "cpu"], "this model does not have: head"),
    "strategy prunes unknown layer": (lambda t: ["apply", _strategy(t, "prune: {ratios: {head: 0.5}}\n"),
                                      "--config", str(user_config()), "--device", "cpu"],
                                      "strategy prunes layers this model does not have: head"),
    "strategy skips a layer that is not a block": (lambda t: ["apply", _strategy(t, "prune: {skip: [conv2]}\n"),
                                                   "--config", str(user_config()), "--device", "cpu"],
                                                   "skips 'conv2', which is not a block that can be skipped"),
    "strategy newer schema": (lambda t: ["apply", _strategy(t, "schema_version: 99\n"), "--config",
                              str(user_config())], "schema_version 99 is not supported"),
    "strategy not YAML": (lambda t: ["apply", _strategy(t, "prune: [unclosed\n"), "--config", str(user_config())],
                          "not valid YAML"),
    "strategy of elastic weights never trained": (lambda t: ["apply", _strategy(t, "prune: {ratios: {conv1: 0.5}}\n"
                                                  "elastic: {steps: 7, seed: 4242}\n"), "--config", str(user_config()),
                                                  "--device", "cpu"], "does not hold trained"),
    "strategy elastic without a length": (lambda t: ["apply", _strategy(t, "elastic: {lr: 0.01}\n"), "--config",
                                          str(user_config())], "elastic training needs `steps` or `budget_s`"),
    # the elastic model
    "elastic budget not a duration": (lambda t: ["search", str(user_config()), "--elastic-budget", "2 hours"],
                                      "'2 hours' is not a duration"),
    "elastic budget negative": (lambda t: ["search", str(user_config()), "--elastic-budget", "-5"],
                                "search.elastic.budget_s: Input should be greater than 0"),
    "elastic fractions without 1": (lambda t: ["search", _config(t, search={"elastic": {"steps": 5,
                                    "fractions": [0.5, 0.25]}})], "must be in (0, 1] and include 1"),
}  # fmt: skip


def refused(make_args, tmp_path: Path, message: str):
    """Run one bad-input case through the CLI: exit 2, one line holding `message`, no traceback. Returns the
    result and the arguments (made once: making them writes files, which are removed here)."""
    args = make_args(tmp_path)
    try:
        result = CliRunner().invoke(app, args)
    finally:
        for leftover in USER.glob(f"bad-{tmp_path.name}.yaml"):
            leftover.unlink()
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2, (result.exit_code, result.stderr[-1500:], result.exception)
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.output + result.stderr
    return result, args


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_broken_input_is_one_line_and_exit_2(case, tmp_path):
    make_args, message = CASES[case]
    refused(make_args, tmp_path, message)


def test_a_resume_with_another_bound_or_space_is_refused(tmp_path):
    """One searched study, resumed twice with what would change its meaning: another bound, and other
    distillation steps (other Optuna choices under the same parameter names)."""
    first = CliRunner().invoke(
        app, ["search", "--no-sensitivity", str(user_config()), "--study", "tiny-resumed", "--trials", "1"]
    )
    assert first.exit_code == 0, first.stderr
    again = CliRunner().invoke(app, ["search", "--no-sensitivity", str(user_config()), "--study", "tiny-resumed",
                                     "--trials", "1", "--max-drop", "0.05"])  # fmt: skip
    assert again.exit_code == 2
    assert "was searched with max_drop 0.02 (now 0.05)" in again.stderr and len(again.stderr.splitlines()) == 1
    narrowed = _config(tmp_path, space={"distill_steps": [0, 50]})
    try:
        again = CliRunner().invoke(app, ["search", "--no-sensitivity", narrowed, "--study", "tiny-resumed",
                                         "--trials", "1"])  # fmt: skip
    finally:
        Path(narrowed).unlink()
    assert again.exit_code == 2
    assert "was searched with space distill_steps [0, 25, 50, 100, 200, 400] (now [0, 50])" in again.stderr
    assert len(again.stderr.splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["search", "--example", "digits", "--device", "jetson-nano-9000"], "unknown device 'jetson-nano-9000'"),
        (["search", str(user_config()), "--study", "x", "--max-drop", "-0.5"], "max_drop"),
    ],
)
def test_in_a_fresh_process_the_terminal_gets_one_line(args, message):
    result = run_cli(*args, timeout=120)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
