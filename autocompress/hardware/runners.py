"""Where a measurement runs: a worker process on this machine, or a device over SSH, behind one small interface.

Both run the same device-side code (`autocompress/evaluators/device/`) in a process of its own, never in the
process that builds: PyTorch's and the quantizers' thread pools stay out of the timing, and the runtime can be
set up per process (ONNX Runtime's shared thread pool). They differ in how requests get there and which lock
guards the timing: this machine's timing lock for a local device (no other autocompress process builds or times
while it measures), the device's lock for a remote one.
"""

from __future__ import annotations

import atexit
import json
import logging
import selectors
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import IO, Any, Protocol

import numpy as np

from autocompress.errors import MeasurementFailed
from autocompress.evaluators.device.latency import Interleaved
from autocompress.evaluators.device.runner import DeviceRequest, DeviceResult, packed_inputs, read_outputs
from autocompress.hardware.locks import timing_lock
from autocompress.hardware.profile import HardwareProfile

log = logging.getLogger(__name__)
WORKER_TIMEOUT_S = 1800.0  # a request that has not answered by then has hung: the worker is killed


class Runner(Protocol):
    """Runs one DeviceRequest on the profile's device and returns what the device measured."""

    def run(self, request: DeviceRequest, batches: list[np.ndarray], sample: np.ndarray) -> DeviceResult: ...


class _Worker:
    """One `python -m ...device.runner --serve` process per (runtime session, threads): it keeps the reference
    session (a study's baseline) loaded between requests, so the baseline is timed in the same state as every
    candidate paired with it."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="autocompress-worker-"))
        self.log_path = self.folder / "worker.log"
        self._log: IO[bytes] = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "autocompress.evaluators.device.runner", "--serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            start_new_session=True,  # a Ctrl-C in the terminal is the controller's to handle, not the worker's
        )
        self._inputs: dict[str, Path] = {}

    def alive(self) -> bool:
        return self.process.poll() is None

    def inputs(self, batches: list[np.ndarray], sample: np.ndarray) -> Path:
        digest, arrays = packed_inputs(batches, sample)
        if digest not in self._inputs:
            path = self.folder / f"inputs-{digest}.npz"
            np.savez(path, **arrays)
            self._inputs[digest] = path
        return self._inputs[digest]

    def ask(self, raw: dict[str, Any]) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        try:
            self.process.stdin.write(json.dumps(raw) + "\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            raise MeasurementFailed(f"the measuring process has exited: {self._last_log_line()}") from None
        selector = selectors.DefaultSelector()
        selector.register(self.process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout=WORKER_TIMEOUT_S):
            self.close()
            raise MeasurementFailed(f"the measuring process did not answer within {WORKER_TIMEOUT_S:g} s")
        line = self.process.stdout.readline()
        if not line:
            raise MeasurementFailed(f"the measuring process died: {self._last_log_line()}")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(reply["error"])  # what the device code raised, reported like a remote device's
        return reply["report"]

    def _last_log_line(self) -> str:
        self._log.flush()
        lines = [line for line in self.log_path.read_text(errors="replace").splitlines() if line.strip()]
        return lines[-1][:300] if lines else f"exit status {self.process.poll()}"

    def close(self) -> None:
        if self.alive():
            self.process.kill()
            self.process.wait()
        self._log.close()
        for path in self.folder.glob("*"):
            path.unlink(missing_ok=True)
        self.folder.rmdir()


class LocalRunner:
    """Measures on this machine in worker processes (one per runtime and thread count), under this machine's
    timing lock."""

    def __init__(self) -> None:
        self._workers: dict[tuple[str, int], _Worker] = {}
        self._lock = threading.Lock()

    def _worker(self, session: str, threads: int) -> _Worker:
        key = (session, threads)
        worker = self._workers.get(key)
        if worker is None or not worker.alive():
            if worker is not None:
                worker.close()
            worker = self._workers[key] = _Worker()
        return worker

    def run(self, request: DeviceRequest, batches: list[np.ndarray], sample: np.ndarray) -> DeviceResult:
        with self._lock, timing_lock() as waited:
            worker = self._worker(request.session, request.threads)
            outputs = worker.folder / f"outputs-{uuid.uuid4().hex[:8]}.npz"
            raw = request.as_dict() | {"inputs": str(worker.inputs(batches, sample)), "outputs": str(outputs)}
            started = time.monotonic()
            report = worker.ask(raw)
            log.debug("measured %d artifact(s) in %.1f s", len(request.artifacts), time.monotonic() - started)
        try:
            with np.load(outputs) as arrays:
                result_outputs = read_outputs(arrays)
        finally:
            outputs.unlink(missing_ok=True)
        timing = None if report["timing"] is None else Interleaved.from_dict(report["timing"])
        return DeviceResult(result_outputs, timing, report["environment"], waited.seconds)

    def close(self) -> None:
        for worker in self._workers.values():
            worker.close()
        self._workers.clear()


class SshRunner:
    """On the profile's SSH host: artifacts uploaded once by content hash, the runner started there."""

    def __init__(self, profile: HardwareProfile) -> None:
        self.profile = profile

    def run(self, request: DeviceRequest, batches: list[np.ndarray], sample: np.ndarray) -> DeviceResult:
        from autocompress.hardware.remote import run_remote  # imported on use: paramiko only for SSH devices

        return run_remote(request, self.profile, batches, sample)


_local = LocalRunner()
atexit.register(_local.close)


def runner_for(profile: HardwareProfile) -> Runner:
    """The runner of a profile; local devices share one per process (and so its workers and loaded baselines)."""
    return SshRunner(profile) if profile.is_remote else _local
