"""Measure artifacts on this machine: outputs over the validation inputs, and interleaved latency of one sample.

Run by a local worker process (`python -m <pkg>.runner --serve`, one request per line), or on a remote device
as `python -m <pkg>.runner request.json`. A request names the artifacts (the first is the reference that the
others' speedups are paired with), which of them to score, the runtime's session file, its options, threads, an
.npz of input batches and a timing policy; the runner writes outputs.npz and answers one JSON line (timing,
versions, machine). It knows no runtime by name: each runtime's record names its session file.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import os
import platform
import signal
import sys
import time
from collections.abc import Callable, MutableMapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .latency import Interleaved, TimingPolicy, measure_interleaved


class Session(Protocol):
    """An artifact loaded in its runtime: `run` maps a batch to the first output; `timed_call` is one timed
    inference of a sample (a plain run on a CPU; inputs and outputs kept on the device on a GPU)."""

    def run(self, inputs: np.ndarray) -> np.ndarray: ...

    def timed_call(self, sample: np.ndarray) -> Callable[[], object]: ...


class SessionModule(Protocol):
    """A runtime's device-side file (stdlib, numpy and the runtime only): its Session class, process-wide set-up
    before any session exists, and the versions recorded with every measurement."""

    Session: Callable[[str, dict[str, Any], int], Session]

    def configure_process(self, threads: int) -> None: ...

    def versions(self) -> dict[str, str]: ...


@dataclass(frozen=True)
class DeviceRequest:
    """Artifacts to measure together: artifacts[0] is the reference; `score` lists those whose outputs return."""

    artifacts: list[str]
    session: str  # path of the runtime's session file (relative to the working folder on a remote device)
    options: dict[str, Any]
    threads: int
    policy: TimingPolicy = field(default_factory=TimingPolicy)
    score: list[int] = field(default_factory=lambda: [0])
    # per artifact, options over `options` (e.g. the same baseline under the runtime's default settings)
    artifact_options: list[dict[str, Any]] | None = None
    timed: bool = True  # False: score only
    # True: every artifact loaded anew, the reference too (each of the exported figure's windows then samples a new
    # session's memory layout: two sessions of one model differ by ~2%, which windows of one session never show)
    fresh_sessions: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def options_of(self, index: int) -> dict[str, Any]:
        """The runtime options artifact `index` is loaded with."""
        override = self.artifact_options[index] if self.artifact_options else None
        return self.options if override is None else override


@dataclass(frozen=True)
class DeviceResult:
    outputs: dict[int, list[np.ndarray]]  # artifact index -> outputs per validation batch
    timing: Interleaved | None  # None when the request was for scores only
    environment: dict[str, str]
    lock_wait_s: float = 0.0  # time spent waiting for the device's timing lock


_modules: dict[str, SessionModule] = {}


def session_module(path: str) -> SessionModule:
    """Load a runtime's session file by path (once per process): no package layout needed on the device."""
    resolved = str(Path(path).resolve())
    if resolved not in _modules:
        if not Path(resolved).is_file():
            raise RuntimeError(f"session file {path} does not exist")
        spec = importlib.util.spec_from_file_location(f"autocompress_session_{Path(path).stem}", resolved)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _modules[resolved] = module  # type: ignore[assignment]
    return _modules[resolved]


def open_session(artifact: str, session: str, options: dict[str, Any], threads: int) -> Session:
    return session_module(session).Session(artifact, options, threads)


def session_key(artifact: str, request: DeviceRequest, index: int = 0) -> tuple:
    """A loaded session is reused only for the very same file (size and mtime) under the same settings."""
    stat = Path(artifact).stat()
    return (str(Path(artifact).resolve()), stat.st_size, stat.st_mtime_ns, request.session,
            json.dumps(request.options_of(index), sort_keys=True), request.threads)  # fmt: skip


def environment(session: str, threads: int) -> dict[str, str]:
    """Runtime versions, CPU model and thread count, recorded with every measurement."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = session_module(session).versions()
    return {"cpu": cpu, "threads": str(threads), "python": platform.python_version(), **versions}


def run_request(
    request: DeviceRequest,
    batches: list[np.ndarray],
    sample: np.ndarray,
    reference_cache: MutableMapping[tuple, Session] | None = None,
) -> DeviceResult:
    """Score the requested artifacts, then (unless `timed` is off) time all of them in interleaved rounds.

    `reference_cache` keeps the reference's session loaded between requests of one process (the baseline of a
    study stays loaded on the device while candidates come and go).
    """
    sessions = []
    for index, artifact in enumerate(request.artifacts):
        options = request.options_of(index)
        if index == 0 and reference_cache is not None and not request.fresh_sessions:
            key = session_key(artifact, request)
            if key not in reference_cache:
                reference_cache.clear()  # one reference at a time: a new study's baseline replaces the old
                reference_cache[key] = open_session(artifact, request.session, options, request.threads)
            sessions.append(reference_cache[key])
        else:
            sessions.append(open_session(artifact, request.session, options, request.threads))
    outputs = {index: [sessions[index].run(batch) for batch in batches] for index in request.score}
    timing = (measure_interleaved([session.timed_call(sample) for session in sessions], request.policy)
              if request.timed else None)  # fmt: skip
    return DeviceResult(outputs, timing, environment(request.session, request.threads))


def packed_inputs(batches: list[np.ndarray], sample: np.ndarray) -> tuple[str, dict[str, np.ndarray]]:
    """The inputs .npz's arrays as `handle` reads them, and a digest of their content (to send them only once;
    .npz bytes carry timestamps, so the file itself is not a stable name)."""
    arrays = {f"batch_{i:05d}": batch for i, batch in enumerate(batches)} | {"sample": sample}
    digest = hashlib.sha256()
    for name, array in arrays.items():
        digest.update(f"{name}{array.dtype.str}{array.shape}".encode() + np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:32], arrays


def handle(raw: dict[str, Any], reference_cache: MutableMapping[tuple, Session] | None = None) -> dict[str, Any]:
    """One request as JSON (paths of the inputs .npz and the outputs .npz to write) -> the report as JSON."""
    raw = dict(raw)
    inputs = np.load(raw.pop("inputs"))
    outputs_path = raw.pop("outputs")
    request = DeviceRequest(**{**raw, "policy": TimingPolicy(**raw["policy"])})
    batches = [inputs[key] for key in sorted(inputs.files) if key.startswith("batch_")]
    result = run_request(request, batches, inputs["sample"], reference_cache)
    arrays = {f"a{index}_batch_{i:05d}": out for index, outs in result.outputs.items() for i, out in enumerate(outs)}
    np.savez(outputs_path, **arrays)
    timing = None if result.timing is None else result.timing.as_dict()
    return {"timing": timing, "environment": result.environment}


def configure_process(session: str, threads: int) -> None:
    """Process-wide runtime settings, before any session exists (e.g. ONNX Runtime's shared thread pool)."""
    session_module(session).configure_process(threads)


def main(request_path: str) -> None:
    """Remote entry point, run in the device's work folder; its lock file there is shared by every controller."""
    raw = json.loads(Path(request_path).read_text())
    configure_process(raw["session"], raw["threads"])
    started = time.monotonic()
    with open("timing.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the process exits, however it exits
        waited = time.monotonic() - started
        report = handle(raw)
    print(json.dumps(report | {"lock_wait_s": waited}))


def serve() -> None:
    """Local device worker: one JSON request per line on stdin, one JSON reply per line on the original stdout.

    A separate process measures, not the one that builds: its runtime threads are its own (no spinning pools of
    PyTorch or of a quantizer's calibration sessions), and it keeps the reference session loaded between
    requests. Runtimes that print to stdout are sent to stderr, so replies stay one clean line each."""
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the controller's to handle; EOF ends the worker
    references: dict[tuple, Session] = {}
    configured: tuple[str, int] | None = None
    for line in sys.stdin:
        try:
            raw = json.loads(line)
            key = (raw["session"], int(raw["threads"]))
            if configured is None:
                configure_process(*key)
                configured = key
            elif key != configured:
                raise RuntimeError(f"this worker measures {configured}, not {key}")
            reply: dict[str, Any] = {"report": handle(raw, references)}
        except Exception as error:  # reported to the controller as one line; the worker lives on
            reply = {"error": f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error) else ''}"}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


def read_outputs(arrays: Any) -> dict[int, list[np.ndarray]]:
    """outputs.npz back into {artifact index: [outputs per batch]}."""
    outputs: dict[int, list[np.ndarray]] = {}
    for key in sorted(arrays.files):
        index = int(key.split("_", 1)[0][1:])
        outputs.setdefault(index, []).append(arrays[key])
    return outputs


if __name__ == "__main__":
    serve() if sys.argv[1] == "--serve" else main(sys.argv[1])
