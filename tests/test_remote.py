"""Remote devices over SSH, against a real OpenSSH server on 127.0.0.1 (tests/sshd.py).

The "device" is this machine reached through sshd, so local and remote measure the same artifact with the
same Python, onnxruntime, CPU and threads: accuracy must be identical and latency equal within noise.
"""

from __future__ import annotations

import fcntl
import socket
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import yaml
from optuna.trial import TrialState

from autocompress.compress.pipeline import Artifact, build
from autocompress.config import load_config
from autocompress.errors import DeviceError
from autocompress.evaluators.device.latency import TimingPolicy
from autocompress.evaluators.device.runner import DeviceRequest, run_request
from autocompress.evaluators.measure import measure_artifact, timing_sample
from autocompress.hardware import HardwareProfile, get_profile, locks, remote, ssh
from autocompress.hardware.profile import BUILTIN_DIR
from autocompress.spaces.strategy import Strategy
from autocompress.task import Task
from autocompress.tasks import load_task
from tests.helpers import invoke_cli, load_study, user_config

if TYPE_CHECKING:
    from tests.sshd import SshServer

pytest_plugins = ["tests.sshd"]  # the sshd_server fixture
QUICK = TimingPolicy(warmup_runs=2, min_rounds=5, slot_s=0.005, time_cap_s=0.5)


@pytest.fixture(scope="module", autouse=True)
def _close_connections(sshd_server: SshServer) -> Iterator[None]:
    """Close this process's connections before sshd goes, so no session outlives the test module."""
    yield
    ssh.close_all()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The device's working folder: the device is this machine, so the test can look inside it."""
    return tmp_path_factory.mktemp("device-workdir")


@pytest.fixture(scope="module")
def tiny() -> Task:
    return load_task(load_config(user_config()))


@pytest.fixture(scope="module")
def artifact(tiny: Task, tmp_path_factory: pytest.TempPathFactory) -> Artifact:
    return build(tiny, Strategy(), get_profile("cpu"), tmp_path_factory.mktemp("artifact"))


def remote_settings(server: SshServer, workdir: Path, **overrides: object) -> dict:
    settings = {
        "python": sys.executable,
        "workdir": str(workdir),
        "identity_file": str(server.client_key),
        "known_hosts": str(server.known_hosts),
        "connect_timeout_s": 5.0,
        "retries": 1,
    }
    return settings | overrides


def remote_profile(server: SshServer, workdir: Path, host: str | None = None, **overrides: object) -> HardwareProfile:
    """The built-in cpu profile, measured through sshd: only `host` and `remote` differ."""
    raw = yaml.safe_load((BUILTIN_DIR / "cpu.yaml").read_text())
    raw |= {"name": "cpu-ssh", "host": host or server.url, "remote": remote_settings(server, workdir, **overrides)}
    return HardwareProfile(**raw)


def test_remote_gives_the_local_outputs_and_a_paired_speedup(sshd_server, workdir, tiny, artifact, tmp_path):
    local_profile, profile = get_profile("cpu"), remote_profile(sshd_server, workdir)
    assert remote.probe(profile) is None
    twin = build(tiny, Strategy(), local_profile, tmp_path / "twin").path  # the same model, another file
    batches = [inputs.numpy() for inputs, _ in tiny.data.validation]
    sample = timing_sample(tiny, profile)
    session = str(local_profile.record.session_file)
    request = DeviceRequest([str(artifact.path), str(twin)], session, local_profile.runtime_options, 2, QUICK,
                            score=[0, 1])  # fmt: skip
    here = run_request(request, batches, sample)
    there = remote.run_remote(request, profile, batches, sample)
    for index in (0, 1):  # the same arrays come back: same runtime, same artifact, same inputs
        assert len(there.outputs[index]) == len(here.outputs[index])
        for mine, theirs in zip(here.outputs[index], there.outputs[index], strict=True):
            np.testing.assert_array_equal(mine, theirs)
    assert there.environment["host"] == f"127.0.0.1:{sshd_server.port}"
    assert there.environment["onnxruntime"] == here.environment["onnxruntime"]
    # both artifacts were timed in the same rounds on the device: a paired ratio of one model with itself
    paired = there.timing.speedups[1]
    assert paired is not None and QUICK.min_rounds <= paired.rounds <= there.timing.rounds  # the settled ones
    assert 0.8 < paired.speedup < 1.25, paired
    assert there.timing.latencies[0].n > 0 and there.timing.latencies[1].n > 0
    # the timed loop runs inside the runner on both sides (SSH is outside it): same order of magnitude
    best_local, best_far = here.timing.latencies[0].median_ms, there.timing.latencies[0].median_ms
    assert best_far <= 3 * best_local and best_local <= 3 * best_far, (best_local, best_far)


def test_a_second_measurement_uploads_nothing_and_survives_a_dropped_connection(
    sshd_server, workdir, tiny, artifact, monkeypatch
):
    profile = remote_profile(sshd_server, workdir)
    first = measure_artifact(artifact.path, tiny, profile)
    address = f"127.0.0.1:{sshd_server.port}"
    uploads, opened = dict(remote.transfers), ssh.connections[address]
    second = measure_artifact(artifact.path, tiny, profile)
    assert dict(remote.transfers) == uploads  # package, artifact and inputs all reused
    assert ssh.connections[address] == opened  # and the connection too
    assert second.metric == first.metric
    folders = list((workdir / "artifacts").iterdir())  # one artifact, uploaded once, under its content hash
    assert len(folders) == 1 and [p.name for p in folders[0].iterdir()] == ["model.onnx"]
    assert not list((workdir / "runs").iterdir())  # each run's request and outputs are cleaned up

    # the connection drops while the runner runs: reconnect, retry, and still upload nothing
    calls = {"n": 0}
    real_execute = remote.execute

    def dropping_execute(client, command, timeout):
        calls["n"] += 1
        if calls["n"] == 1:
            client.get_transport().close()
            raise EOFError("simulated drop")
        return real_execute(client, command, timeout)

    monkeypatch.setattr(remote, "execute", dropping_execute)
    third = measure_artifact(artifact.path, tiny, profile)
    assert calls["n"] == 2 and third.metric == first.metric
    assert dict(remote.transfers) == uploads
    assert ssh.connections[address] == opened + 1


def test_two_workers_never_time_on_one_device_at_once(sshd_server, workdir, tiny, artifact):
    """Another worker holds the device's lock file: this measurement waits for it, then runs."""
    profile = remote_profile(sshd_server, workdir)
    results: list = []
    with locks.timing_lock(remote.lock_name(ssh.parse_host(profile.host))):
        worker = threading.Thread(target=lambda: results.append(measure_artifact(artifact.path, tiny, profile)))
        worker.start()
        worker.join(timeout=1.5)
        assert worker.is_alive() and not results
    worker.join(timeout=60)
    assert len(results) == 1


def test_a_controller_on_another_machine_holds_the_device(sshd_server, workdir, tiny, artifact):
    """The runner takes the device's own lock (in its work folder), which every controller shares."""
    profile = remote_profile(sshd_server, workdir)
    measure_artifact(artifact.path, tiny, profile)  # the work folder exists
    results: list = []
    with (workdir / "timing.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        worker = threading.Thread(target=lambda: results.append(measure_artifact(artifact.path, tiny, profile)))
        worker.start()
        worker.join(timeout=2.0)
        assert worker.is_alive() and not results
        fcntl.flock(handle, fcntl.LOCK_UN)
    worker.join(timeout=60)
    assert len(results) == 1 and results[0].lock_wait_s >= 1.0  # it waited on the device


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _python_without_onnxruntime(folder: Path) -> str:
    """This Python, with an `onnxruntime` that fails to import exactly as a missing package does."""
    (folder / "site").mkdir(exist_ok=True)
    (folder / "site" / "onnxruntime.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'onnxruntime'\", name='onnxruntime')\n"
    )
    script = folder / "python-without-onnxruntime"
    script.write_text(f'#!/bin/sh\nPYTHONPATH={folder / "site"} exec {sys.executable} "$@"\n')
    script.chmod(0o755)
    return str(script)


CASES = ["unreachable", "wrong key", "no key", "unknown host key", "no runtime", "no python"]


@pytest.mark.parametrize("case", CASES)
def test_device_problems_are_one_line(sshd_server, workdir, tiny, artifact, tmp_path, monkeypatch, case):
    port = sshd_server.port
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ssh keys and no agent: only the profile's key can log in
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    cases = {
        "unreachable": (
            {"host": f"ssh://{sshd_server.user}@127.0.0.1:{(dead := _free_port())}"},
            [f"cannot reach 127.0.0.1:{dead}", "connection refused", "2 attempts"],
        ),
        "wrong key": (
            {"identity_file": str(sshd_server.other_key)},
            [f"authentication failed for {sshd_server.user}@127.0.0.1:{port}", str(sshd_server.other_key)],
        ),
        "no key": (
            {"identity_file": None},
            [f"authentication failed for {sshd_server.user}@127.0.0.1:{port} with the SSH agent and ~/.ssh/id_*"],
        ),
        "unknown host key": (
            {"known_hosts": str(empty)},
            [f"127.0.0.1:{port} is not in {empty}", f"ssh-keyscan -p {port} 127.0.0.1 >> {empty}"],
        ),
        "no runtime": (
            {"python": (fake := _python_without_onnxruntime(tmp_path))},
            [f"onnxruntime is not installed for {fake} on 127.0.0.1: install it there"],
        ),
        "no python": ({"python": "/nonexistent/python3"}, ["/nonexistent/python3 was not found on 127.0.0.1"]),
    }
    overrides, expected = cases[case]
    profile = remote_profile(sshd_server, workdir, **overrides)
    with pytest.raises(DeviceError) as raised:
        measure_artifact(artifact.path, tiny, profile)
    message = str(raised.value)
    assert "\n" not in message
    for part in expected:
        assert part in message, message
    assert remote.probe(profile) == message  # `autocompress devices` and the search's start-up check say the same


@pytest.mark.e2e
def test_a_search_on_a_remote_device_completes(sshd_server, tmp_path):
    device = tmp_path / "device"
    profile = yaml.safe_load((BUILTIN_DIR / "cpu.yaml").read_text())
    remote = remote_settings(sshd_server, device)
    profile |= {"name": "cpu-ssh", "aliases": [], "host": sshd_server.url, "remote": remote}  # not cpu's aliases
    profile_file = tmp_path / "cpu-ssh.yaml"
    profile_file.write_text(yaml.safe_dump(profile))
    study = f"tiny-remote-{uuid.uuid4().hex[:8]}"
    result = invoke_cli(
        "search",
        "--no-sensitivity",
        str(user_config()),
        "--device",
        str(profile_file),
        "--trials",
        "2",
        "--study",
        study,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    trials = load_study(study).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.COMPLETE]
    assert all(t.user_attrs["metrics"]["metric"] > 0.6 for t in trials)  # the tiny CNN: 0.665 fp32, 0.639 int8
    assert len(list((device / "artifacts").iterdir())) >= 2  # the baseline and the trials were measured there
    assert not list((device / "runs").iterdir())
