"""Measure an artifact on a remote device over SSH, with the same device code that measures locally.

The device package (`autocompress/evaluators/device/`) is copied to `<workdir>/autocompress_device/`, the
artifact and the inputs are uploaded once per content hash, and `<python> -m autocompress_device.runner
request.json` runs there; its JSON line and outputs.npz come back as the DeviceResult a local run returns.
A per-device lock keeps two workers from timing on the same device at once: one on this machine (hardware/locks.py)
and one on the device itself, taken by the runner there, which workers on other machines share too.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shlex
import uuid
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import paramiko

from autocompress.errors import AutocompressError, DeviceError, MeasurementFailed
from autocompress.evaluators.device.latency import Interleaved
from autocompress.evaluators.device.runner import DeviceRequest, DeviceResult, packed_inputs, read_outputs
from autocompress.hardware.locks import timing_lock
from autocompress.hardware.profile import HardwareProfile, RemoteSettings
from autocompress.hardware.ssh import SshTarget, execute, parse_host, with_connection

PACKAGE = "autocompress_device"
DEVICE_DIR = Path(__file__).resolve().parent.parent / "evaluators" / "device"
KEEP_ARTIFACTS = 32  # most recently used artifacts kept on the device; older ones are deleted
transfers: Counter[str] = Counter()  # uploads by kind ("package", "artifact", "inputs"), to see what was re-sent


def _workdir(settings: RemoteSettings) -> str:
    """Relative paths are under the login's home for both SFTP and the shell, so `~/` is simply dropped."""
    return re.sub(r"^~(/|$)", "", settings.workdir).rstrip("/") or "."


def _python(settings: RemoteSettings) -> list[str]:
    """The device's Python as argv words, so `env OMP_NUM_THREADS=1 python3` works and each word is quoted."""
    return shlex.split(settings.python)


def _check_python(status: int, stderr: str, settings: RemoteSettings, target: SshTarget) -> None:
    """The device's Python or a package it needs is missing: say what to install, and where."""
    missing = re.search(r"ModuleNotFoundError: No module named '([^'.]+)", stderr)
    if missing and missing[1] != PACKAGE:
        raise DeviceError(f"{missing[1]} is not installed for {settings.python} on {target.host}: install it there")
    if status == 127:
        raise DeviceError(f"{settings.python} was not found on {target.host}: set remote.python in the profile")


def _put_atomic(sftp: paramiko.SFTPClient, data: bytes | Path, path: str) -> None:
    """Write beside the target, then rename: a reader never sees a half-written file."""
    partial = f"{path}.part-{uuid.uuid4().hex[:8]}"
    if isinstance(data, Path):
        sftp.put(str(data), partial)
    else:
        sftp.putfo(io.BytesIO(data), partial)
    sftp.posix_rename(partial, path)


def _exists(sftp: paramiko.SFTPClient, path: str) -> bool:
    try:
        sftp.stat(path)
        return True
    except FileNotFoundError:
        return False


def _makedirs(sftp: paramiko.SFTPClient, path: str) -> None:
    parts = path.split("/")
    for end in range(1, len(parts) + 1):
        folder = "/".join(parts[:end])
        if folder and not _exists(sftp, folder):
            sftp.mkdir(folder)


def _upload_package(sftp: paramiko.SFTPClient, workdir: str, session: Path) -> None:
    """The device-side code and the runtime's session file (a runtime defined outside autocompress included)."""
    files = sorted({*DEVICE_DIR.glob("*.py"), session}, key=lambda path: path.name)
    digest = hashlib.sha256(b"".join(f.name.encode() + b"\0" + f.read_bytes() for f in files)).hexdigest()
    marker = f"{workdir}/{PACKAGE}/.content-sha256"
    try:
        with sftp.open(marker) as handle:
            if handle.read().decode() == digest:
                return
    except FileNotFoundError:
        _makedirs(sftp, f"{workdir}/{PACKAGE}")
    for file in files:
        _put_atomic(sftp, file, f"{workdir}/{PACKAGE}/{file.name}")
    _put_atomic(sftp, digest.encode(), marker)
    transfers["package"] += 1


def artifact_files(artifact: Path) -> list[Path]:
    """The artifact and its siblings of the same stem (OpenVINO's model.bin, ONNX external data)."""
    return sorted({artifact, *artifact.parent.glob(f"{artifact.stem}.*")})


def _upload_artifact(sftp: paramiko.SFTPClient, workdir: str, artifact: Path) -> str:
    """Upload once per content hash; returns the artifact's path relative to the workdir."""
    files = artifact_files(artifact)
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.name.encode() + b"\0" + file.read_bytes())
    folder = f"artifacts/{digest.hexdigest()[:32]}"
    if _exists(sftp, f"{workdir}/{folder}/{artifact.name}"):
        sftp.utime(f"{workdir}/{folder}", None)  # most recently used: kept by the clean-up below
        return f"{folder}/{artifact.name}"
    partial = f"{workdir}/{folder}.part-{uuid.uuid4().hex[:8]}"
    sftp.mkdir(partial)
    for file in files:
        sftp.put(str(file), f"{partial}/{file.name}")
    try:
        sftp.posix_rename(partial, f"{workdir}/{folder}")
    except OSError:  # another controller uploaded the same artifact meanwhile
        _remove_folder(sftp, partial)
    transfers["artifact"] += 1
    _evict_old_artifacts(sftp, f"{workdir}/artifacts")
    return f"{folder}/{artifact.name}"


def _remove_folder(sftp: paramiko.SFTPClient, folder: str) -> None:
    for name in sftp.listdir(folder):
        sftp.remove(f"{folder}/{name}")
    sftp.rmdir(folder)


def _evict_old_artifacts(sftp: paramiko.SFTPClient, folder: str) -> None:
    entries = sorted(sftp.listdir_attr(folder), key=lambda entry: entry.st_mtime or 0, reverse=True)
    for entry in entries[KEEP_ARTIFACTS:]:
        _remove_folder(sftp, f"{folder}/{entry.filename}")


def _upload_inputs(sftp: paramiko.SFTPClient, workdir: str, batches: list[np.ndarray], sample: np.ndarray) -> str:
    """Uploaded once per content (the name is a digest of the arrays themselves)."""
    digest, arrays = packed_inputs(batches, sample)
    path = f"inputs/{digest}.npz"
    if not _exists(sftp, f"{workdir}/{path}"):
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        _put_atomic(sftp, buffer.getvalue(), f"{workdir}/{path}")
        transfers["inputs"] += 1
    return path


@dataclass(frozen=True)
class _Job:
    request: DeviceRequest  # with local artifact paths; replaced by their paths on the device
    profile: HardwareProfile
    batches: list[np.ndarray]
    sample: np.ndarray


def _measure(client: paramiko.SSHClient, job: _Job, target: SshTarget) -> DeviceResult:
    settings = job.profile.remote
    workdir = _workdir(settings)
    with client.open_sftp() as sftp:
        _makedirs(sftp, f"{workdir}/artifacts")
        _makedirs(sftp, f"{workdir}/inputs")
        _makedirs(sftp, f"{workdir}/runs")
        session = Path(job.request.session)
        _upload_package(sftp, workdir, session)
        run = f"runs/{uuid.uuid4().hex}"
        request = job.request.as_dict() | {
            "session": f"{PACKAGE}/{session.name}",
            "artifacts": [_upload_artifact(sftp, workdir, Path(path)) for path in job.request.artifacts],
            "inputs": _upload_inputs(sftp, workdir, job.batches, job.sample),
            "outputs": f"{run}/outputs.npz",
        }
        sftp.mkdir(f"{workdir}/{run}")
        sftp.putfo(io.BytesIO(json.dumps(request).encode()), f"{workdir}/{run}/request.json")
        argv = [*_python(settings), "-m", f"{PACKAGE}.runner", f"{run}/request.json"]
        command = f"cd {shlex.quote(workdir)} && exec {shlex.join(argv)}"
        try:
            status, stdout, stderr = execute(client, command, settings.command_timeout_s)
            _check_python(status, stderr, settings, target)
            if status != 0:
                last = [line for line in stderr.strip().splitlines() if line.strip()] or [f"exit status {status}"]
                raise MeasurementFailed(f"{job.profile.record.name} on {target.display}: {last[-1][:300]}")
            buffer = io.BytesIO()
            sftp.getfo(f"{workdir}/{run}/outputs.npz", buffer)  # prefetched: fast for large outputs
            outputs = read_outputs(np.load(io.BytesIO(buffer.getvalue())))
        finally:
            _remove_folder(sftp, f"{workdir}/{run}")
    lines = [line for line in stdout.splitlines() if line.startswith("{")]  # a login script may print too
    if not lines:
        raise MeasurementFailed(f"the runner on {target.display} printed no result: {stdout.strip()[-200:]!r}")
    report = json.loads(lines[-1])
    environment = {**report["environment"], "host": target.address}
    timing = None if report["timing"] is None else Interleaved.from_dict(report["timing"])
    return DeviceResult(outputs, timing, environment, float(report.get("lock_wait_s", 0.0)))


def lock_name(target: SshTarget) -> str:
    """This machine's lock for one SSH device (hardware/locks.py)."""
    return f"ssh-{target.host}-{target.port}"


def run_remote(
    request: DeviceRequest, profile: HardwareProfile, batches: list[np.ndarray], sample: np.ndarray
) -> DeviceResult:
    """What `run_request` returns, measured on the profile's SSH host under this machine's lock for that device
    (the runner also takes the device's own lock there, which controllers on other machines share)."""
    target = parse_host(profile.host)
    job = _Job(request, profile, batches, sample)
    with timing_lock(lock_name(target)) as waited:
        result = with_connection(target, profile.remote, lambda client: _measure(client, job, target))
    return replace(result, lock_wait_s=waited.seconds + result.lock_wait_s)


def probe(profile: HardwareProfile) -> str | None:
    """None when the SSH device can measure (reachable, numpy and the runtime import there), else the reason.

    Local profiles have nothing to probe over SSH (None); `availability.py` checks this machine for them.
    """
    if not profile.is_remote:
        return None
    module = profile.record.device_module
    settings = profile.remote
    try:
        target = parse_host(profile.host)
        command = shlex.join([*_python(settings), "-c", f"import numpy, {module}"])
        timeout = min(settings.command_timeout_s, 120.0)
        status, _, stderr = with_connection(target, settings, lambda client: execute(client, command, timeout))
        _check_python(status, stderr, settings, target)
        if status != 0:
            return f"{settings.python} on {target.host} failed: {(stderr.strip().splitlines() or ['?'])[-1][:200]}"
    except AutocompressError as error:
        return str(error)
    return None
