"""More broken inputs (the issue "Nothing silently wrong"): what used to be accepted in silence, or reported as
something else. Each one is exit 2 and one line on stderr starting "error: ", naming the file or option.

None of them loads a model or trains: they are refused before any work, so they run in the fast lane.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from autocompress.cli import app
from autocompress.hardware.profile import BUILTIN_DIR
from tests.helpers import user_config
from tests.test_bad_inputs import _config, _profile, _strategy, _text, refused

CPU_PROFILE = (BUILTIN_DIR / "cpu.yaml").read_text()
TINY = user_config().read_text()
APPLY = ["--config", str(user_config()), "--device", "cpu"]


def _file(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


CASES = {
    # a key given twice: the last one used to win in silence
    "config key twice": (lambda t: ["search", _text(t, TINY + "metric: accuracy\nmetric: accuracy\n")],
                         "key 'metric' is given twice"),
    "config nested key twice": (lambda t: ["search", _text(t, TINY.replace("trials: 3", "trials: 3\n  trials: 50"))],
                                "key 'trials' is given twice (lines 7 and 8)"),
    "profile key twice": (lambda t: ["search", "--device", _file(t, "twice.yaml", CPU_PROFILE.replace(
                          "name: cpu", "name: mine\nthreads: 1")), "--trials", "1"], "key 'threads' is given twice"),
    "strategy key twice": (lambda t: ["apply", _strategy(t, "seed: 1\nseed: 2\n"), *APPLY],
                           "key 'seed' is given twice (lines 1 and 2)"),
    # numeric search settings: a config file is range-checked as the flag is, before any work
    "config negative timeout": (lambda t: ["search", _config(t, search={"timeout": -5})],
                                "search.timeout: Input should be greater than 0"),
    "config zero timeout": (lambda t: ["search", _config(t, search={"timeout": 0})], "search.timeout"),
    "config negative timeout with a unit": (lambda t: ["search", _config(t, search={"timeout": "-2h"})],
                                            "search.timeout: Input should be greater than 0"),
    "negative timeout flag": (lambda t: ["search", str(user_config()), "--timeout", "-5"],
                              "search.timeout: Input should be greater than 0"),
    "zero timeout flag": (lambda t: ["search", str(user_config()), "--timeout", "0"], "search.timeout"),
    "config negative deadline margin": (lambda t: ["search", _config(t, search={"timeout": 60, "deadline_margin": -1})],
                                        "search.deadline_margin: Input should be greater than or equal to 0"),
    "config negative seed": (lambda t: ["search", _config(t, search={"seed": -1})], "search.seed"),
    "seed too large for a sampler": (lambda t: ["search", str(user_config()), "--seed", str(2**40)], "search.seed"),
    "config zero size bound": (lambda t: ["search", _config(t, search={"max_size_mb": 0})], "search.max_size_mb"),
    "config confirmation windows above 20": (lambda t: ["search", _config(t, search={"confirm_windows": 21})],
                                             "search.confirm_windows"),
    "config confirmation seconds zero": (lambda t: ["search", _config(t, search={"confirm_seconds": 0})],
                                         "search.confirm_seconds: Input should be greater than 0"),
    "config negative pause between windows": (lambda t: ["search", _config(t, search={"confirm_gap_seconds": -1})],
                                              "search.confirm_gap_seconds"),
    "config negative polish": (lambda t: ["search", _config(t, search={"polish_steps": -1})], "search.polish_steps"),
    # the accuracy bound
    "relative bound above 100%": (lambda t: ["search", "--drop-mode", "relative", "--max-drop", "1.5"],
                                  "search: max_drop 1.5 with drop_mode relative is above 100% of the baseline"),
    "config relative bound above 100%": (lambda t: ["search", _config(t, search={"drop_mode": "relative",
                                         "max_drop": 2})], "above 100% of the baseline metric"),
    "negative absolute bound": (lambda t: ["search", "--drop-mode", "absolute", "--max-drop", "-0.01"],
                                "search.max_drop: Input should be greater than or equal to 0"),
    # `space:` options: ranges checked before the model loads
    "space empty distillation steps": (lambda t: ["search", _config(t, space={"distill_steps": []})],
                                       "space option 'distill_steps': Tuple should have at least 1 item"),
    "space negative distillation steps": (lambda t: ["search", _config(t, space={"distill_steps": [0, -50]})],
                                          "space option 'distill_steps[1]': Input should be greater than or equal"),
    "space zero prune step": (lambda t: ["search", _config(t, space={"prune_step": 0})],
                              "space option 'prune_step': Input should be greater than 0"),
    "space negative prune step": (lambda t: ["search", _config(t, space={"prune_step": -0.125})],
                                  "space option 'prune_step': Input should be greater than 0"),
    "space prune ratio of 1": (lambda t: ["search", _config(t, space={"max_prune_ratio": 1.0})],
                               "space option 'max_prune_ratio': Input should be less than 1"),
    "space negative prune ratio": (lambda t: ["search", _config(t, space={"max_prune_ratio": -0.25})],
                                   "space option 'max_prune_ratio': Input should be greater than or equal to 0"),
    "space head ratio above 1": (lambda t: ["search", _config(t, space={"max_head_ratio": 1.5})],
                                 "space option 'max_head_ratio': Input should be less than 1"),
    "space no importance": (lambda t: ["search", _config(t, space={"importances": []})],
                            "space option 'importances': Tuple should have at least 1 item"),
    "space no calibration": (lambda t: ["search", _config(t, space={"calibrations": []})],
                             "space option 'calibrations': Tuple should have at least 1 item"),
    "space unknown calibration": (lambda t: ["search", _config(t, space={"calibrations": ["minmax", "magic"]})],
                                  "space option 'calibrations[1]': Input should be 'minmax', 'entropy'"),
    "space no distillation loss": (lambda t: ["search", _config(t, space={"distill_losses": []})],
                                   "space option 'distill_losses': Tuple should have at least 1 item"),
    "space temperature range reversed": (lambda t: ["search", _config(t, space={"temperature": [8.0, 1.0]})],
                                         "space option 'temperature': the low end 8 is above the high end 1"),
    "space alpha above 1": (lambda t: ["search", _config(t, space={"alpha": [0.0, 1.5]})],
                            "space option 'alpha[1]': Input should be less than or equal to 1"),
    "space zero learning rate": (lambda t: ["search", _config(t, space={"lr": [0.0, 0.01]})],
                                 "space option 'lr[0]': Input should be greater than 0"),
    "space example's options checked too": (lambda t: ["search", _config(t, model=None, data=None, metric=None,
                                            example="digits", space={"prune_step": 0})],
                                            "space option 'prune_step': Input should be greater than 0"),
    # strategies: a prune ratio is a fraction of the channels removed, 0 <= ratio < 1
    "strategy prunes everything": (lambda t: ["apply", _strategy(t, "prune: {ratios: {conv1: 1.0}}\n"), *APPLY],
                                   "prune.ratios.conv1: Input should be less than 1"),
    "strategy prunes more than everything": (lambda t: ["apply", _strategy(t, "prune: {ratios: {conv1: 1.5}}\n"),
                                             *APPLY], "prune.ratios.conv1: Input should be less than 1"),
    "strategy negative prune ratio": (lambda t: ["apply", _strategy(t, "prune: {ratios: {conv1: -0.25}}\n"), *APPLY],
                                      "prune.ratios.conv1: Input should be greater than or equal to 0"),
    # a profile passed by path may not reuse a built-in name or alias, as one in the home may not
    "profile file named cpu": (lambda t: ["search", "--device", _file(t, "cpu.yaml", CPU_PROFILE), "--trials", "1"],
                               "uses the name 'cpu', already taken by the built-in"),
    "profile file with a built-in alias": (lambda t: ["search", "--device", _file(t, "mine.yaml", CPU_PROFILE.replace(
                                           "name: cpu", "name: mine")), "--trials", "1"],
                                           "uses the name 'ort-cpu', already taken by the built-in"),
    "profile file with another built-in's name": (lambda t: ["search", "--device", _profile(t, name="openvino"),
                                                  "--trials", "1"], "uses the name 'openvino', already taken"),
    # an SSH port out of range is said as such, not as a malformed host
    "profile port out of range": (lambda t: ["search", "--device", _profile(t, host="ssh://u@h:70000")],
                                  "host: host 'ssh://u@h:70000': port 70000 out of range (1-65535)"),
    "profile port zero": (lambda t: ["search", "--device", _profile(t, host="ssh://pi@[fe80::1]:0")],
                          "port 0 out of range (1-65535)"),
    "profile port far out of range": (lambda t: ["search", "--device", _profile(t, host="ssh://u@h:7000000")],
                                      "port 7000000 out of range"),
    # TensorRT takes full-range int8 weights: reduce_range (7 bits, for CPUs) is refused
    "profile TensorRT with 7-bit weights": (lambda t: ["search", "--device", _profile(t, runtime_options={
                                            "providers": ["TensorrtExecutionProvider"]}, quantize={
                                            "activation_type": "int8", "activation_symmetric": True,
                                            "reduce_range": True}, precisions={"Conv": ["int8", "fp32"]})],
                                            "reduce_range quantizes weights to 7 bits"),
    # tracking URIs: not a URL, a store MLflow does not have, a server that does not answer
    "tracking URI not a URL": (lambda t: ["search", str(user_config()), "--tracking-uri", "not a uri"],
                               "tracking URI 'not a uri' is not a URL: use http(s)://host:port"),
    "tracking URI of no MLflow store": (lambda t: ["search", str(user_config()), "--tracking-uri", "ftp://x"],
                                        "tracking URI 'ftp://x': MLflow has no 'ftp' store"),
    "tracking URI without a host": (lambda t: ["search", str(user_config()), "--tracking-uri", "http://"],
                                    "tracking URI 'http://' is not a URL: no host"),
    "config tracking URI a plain word": (lambda t: ["search", _config(t, search={"tracking_uri": "mlruns"})],
                                         "tracking URI 'mlruns' is not a URL"),
    "tracking server down": (lambda t: ["search", str(user_config()), "--tracking-uri", "http://127.0.0.1:9"],
                             "MLflow tracking server http://127.0.0.1:9 is not reachable"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_broken_input_is_one_line_and_exit_2(case, tmp_path):
    make_args, message = CASES[case]
    result, args = refused(make_args, tmp_path, message)
    line = result.stderr.strip()
    assert line.startswith("error: "), line
    if "twice" in case:  # the file is named, not just the key
        assert any(arg in line for arg in args if arg.endswith(".yaml")), line


def test_the_strict_loader_keeps_what_yaml_allows():
    from autocompress import yamlio

    assert yamlio.load("base: &b {a: 1, b: 2}\nmine:\n  <<: *b\n  a: 3\n")["mine"] == {"a": 3, "b": 2}  # a merge
    with pytest.raises(yamlio.DuplicateKeyError, match=r"key 'x' is given twice \(line 1\)"):
        yamlio.load("{x: 1, x: 2}")
    assert yaml.YAMLError in yamlio.DuplicateKeyError.__mro__  # every reader's `except yaml.YAMLError` catches it


def test_a_prune_ratio_just_below_one_is_a_ratio():
    from autocompress.spaces.strategy import Strategy

    assert Strategy.from_yaml("prune: {ratios: {conv1: 0.99}}").prune.ratios == {"conv1": 0.99}


def test_pruning_that_removes_no_channel_is_said(caplog):
    """The output layer's width is fixed by the model: a strategy pruning it used to be left whole in silence."""
    import torch
    from torch import nn

    from autocompress.compress.prune import PruneSettings, prune

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 10)).eval()
    settings = PruneSettings(ratios={"0": 0.5, "3": 0.5}, importance="l2")
    with caplog.at_level("WARNING", logger="autocompress.compress.prune"):
        pruned = prune(model, torch.zeros(1, 1, 8, 8), settings)
    assert pruned[0].out_channels == 4 and pruned[3].out_features == 10
    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert len(warnings) == 1 and warnings[0].startswith("strategy prunes 3 at 0.5, but that removes none"), warnings


def test_a_built_in_profile_file_may_still_be_passed_by_path():
    from autocompress.hardware import get_profile

    assert get_profile(str(BUILTIN_DIR / "cpu.yaml")).name == "cpu"


def test_the_ssh_runner_reads_hosts_as_profiles_do():
    from autocompress.errors import DeviceError
    from autocompress.hardware.ssh import SshTarget, parse_host

    assert parse_host("ssh://pi@[fe80::1]:2222") == SshTarget("pi", "fe80::1", 2222)
    assert parse_host("ssh://pi@raspberrypi.local") == SshTarget("pi", "raspberrypi.local", 22)
    with pytest.raises(DeviceError, match="port 70000 out of range"):
        parse_host("ssh://u@h:70000")
    with pytest.raises(DeviceError, match="must be 'local' or ssh://user@host"):
        parse_host("pi@raspberry")


def test_a_tracking_server_that_is_down_is_refused_at_once_and_before_the_study(session_home):
    import time

    import optuna

    from autocompress.home import default_storage

    started = time.monotonic()
    result = CliRunner().invoke(app, ["search", str(user_config()), "--study", "tracking-down", "--tracking-uri",
                                      "http://127.0.0.1:9"])  # fmt: skip
    assert result.exit_code == 2 and "is not reachable" in result.stderr, result.stderr
    assert time.monotonic() - started < 20  # one attempt of 2 s at most, not MLflow's minutes of retries
    assert "tracking-down" not in optuna.get_all_study_names(default_storage())


def test_a_tracking_server_that_answers_is_accepted():
    """Up is up: an MLflow server answers /health; one behind authentication or a proxy may refuse it (401, 404)."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from autocompress.search.tracking import check_tracking_uri

    class Answer(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the standard library's name
            self.send_response(200 if self.path == "/health" else 401)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        check_tracking_uri(f"http://127.0.0.1:{server.server_port}")
        check_tracking_uri(f"http://127.0.0.1:{server.server_port}/behind/auth")
        check_tracking_uri("sqlite:///some/where/mlflow.db")
        check_tracking_uri("postgresql+psycopg://mlflow@dbhost/mlflow")
        check_tracking_uri(None)
    finally:
        server.shutdown()
