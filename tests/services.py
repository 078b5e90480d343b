"""Real services the worker tests need, started on 127.0.0.1 and stopped after: a throwaway PostgreSQL cluster
(Debian's package, installed by .ci/run) and an `mlflow server` with proxied artifact storage."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

POSTGRES_BIN = sorted(Path("/usr/lib/postgresql").glob("*/bin"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _as_postgres(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: CI runs as root, so the cluster belongs to Debian's `postgres` user."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@contextmanager
def postgres_cluster() -> Iterator[str]:
    """A fresh cluster listening on 127.0.0.1 only, trust auth, removed after; yields its URL. Its folder is made
    directly under /tmp: the `postgres` user cannot enter pytest's root-only temporary folders."""
    if not POSTGRES_BIN:
        raise RuntimeError("PostgreSQL is not installed: apt-get install postgresql (.ci/run does)")
    binaries = POSTGRES_BIN[-1]
    folder = Path(tempfile.mkdtemp(prefix="autocompress-pg-"))
    data, sockets = folder / "pgdata", folder / "pgsocket"
    for path in (data, sockets):
        path.mkdir(parents=True)
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        for path in (folder, data, sockets):
            os.chown(path, user.pw_uid, user.pw_gid)
    initdb = [str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"]
    made = subprocess.run(_as_postgres(initdb), capture_output=True, text=True)
    if made.returncode != 0:
        raise RuntimeError(f"initdb failed: {made.stderr.strip()[-500:]}")
    port = free_port()
    options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off"
    pg_ctl = [str(binaries / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "postgres.log"), "-w"]
    subprocess.run(_as_postgres([*pg_ctl, "start"]), check=True, capture_output=True)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(_as_postgres([*pg_ctl, "-m", "fast", "stop"]), capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def _serving(name: str, command: list[str], url: str, ready_path: str, log_path: Path) -> Iterator[str]:
    """Start a web server, wait until `url + ready_path` answers 200, yield `url`; stop its process group after."""
    log = log_path.open("w")
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}{ready_path}", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start: {log_path.read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
        log.close()


@contextmanager
def mlflow_server(folder: Path) -> Iterator[str]:
    """`mlflow server` with a SQLite backend and proxied artifacts (clients upload through the server)."""
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}", "--artifacts-destination", str(folder / "store"),
    ]  # fmt: skip
    with _serving("mlflow server", command, f"http://127.0.0.1:{port}", "/health", folder / "server.log") as url:
        yield url


@contextmanager
def optuna_dashboard(storage: str, log_path: Path) -> Iterator[str]:
    """`optuna-dashboard` on a study storage, as the README shows it."""
    port = free_port()
    executable = str(Path(sys.executable).parent / "optuna-dashboard")
    command = [executable, storage, "--host", "127.0.0.1", "--port", str(port)]
    with _serving("optuna-dashboard", command, f"http://127.0.0.1:{port}", "/api/studies", log_path) as url:
        yield url


def chromium() -> str:
    """Debian's chromium (installed by .ci/run)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        raise RuntimeError("chromium is not installed: apt-get install chromium (.ci/run does)")
    return found
