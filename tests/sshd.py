"""A real OpenSSH server on 127.0.0.1 for remote-device tests: keys made at test time, torn down after.

A real sshd (not a paramiko test server) so the tests exercise what a user's device runs: host key
checking, public-key auth, a login shell running the command, and the SFTP subsystem.
"""

from __future__ import annotations

import os
import pwd
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

SSHD = Path("/usr/sbin/sshd")
SFTP_SERVERS = (Path("/usr/lib/openssh/sftp-server"), Path("/usr/libexec/openssh/sftp-server"))


@dataclass(frozen=True)
class SshServer:
    """Where the server listens and the files a client needs to reach it."""

    host: str
    port: int
    user: str
    client_key: Path
    other_key: Path
    known_hosts: Path
    log: Path

    @property
    def url(self) -> str:
        return f"ssh://{self.user}@{self.host}:{self.port}"


def _keygen(path: Path, comment: str) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], check=True, timeout=30
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_banner(port: int, process: subprocess.Popen, log: Path, timeout_s: float = 15.0) -> None:
    """sshd is ready once it greets with its SSH-2.0 banner."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sshd exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                if sock.recv(64).startswith(b"SSH-"):
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"sshd did not answer on port {port}: {log.read_text()[-2000:]}")


def _config(folder: Path, port: int, user: str, host_key: Path, authorized: Path) -> Path:
    sftp = next((str(path) for path in SFTP_SERVERS if path.exists()), "internal-sftp")
    lines = [
        "ListenAddress 127.0.0.1",
        f"Port {port}",
        f"HostKey {host_key}",
        f"PidFile {folder / 'sshd.pid'}",
        f"AuthorizedKeysFile {authorized}",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PermitRootLogin prohibit-password",
        f"AllowUsers {user}",
        "StrictModes no",
        "UsePAM no",
        "LogLevel VERBOSE",
        f"Subsystem sftp {sftp}",
    ]
    config = folder / "sshd_config"
    config.write_text("\n".join(lines) + "\n")
    return config


@contextmanager
def running_sshd(folder: Path) -> Iterator[SshServer]:
    """`sshd -D -e` for the current user on a free port, its keys and config in `folder`; stopped on exit."""
    user = pwd.getpwuid(os.geteuid()).pw_name
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation directory sshd requires as root
    for name in ("host_key", "client_key", "other_key"):
        _keygen(folder / name, f"autocompress-test-{name}")
    authorized = folder / "authorized_keys"
    authorized.write_text((folder / "client_key.pub").read_text())
    port = _free_port()
    host_public = (folder / "host_key.pub").read_text().split()
    known_hosts = folder / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_public[0]} {host_public[1]}\n")
    config = _config(folder, port, user, folder / "host_key", authorized)
    log = folder / "sshd.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)], stdout=log_file, stderr=log_file)
    try:
        _wait_for_banner(port, process, log)
        yield SshServer("127.0.0.1", port, user, folder / "client_key", folder / "other_key", known_hosts, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="module")
def sshd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    """A real sshd on 127.0.0.1 for the module; skip only where OpenSSH's server is absent."""
    if not SSHD.exists():
        pytest.skip("needs OpenSSH's server at /usr/sbin/sshd: install it (apt-get install -y openssh-server)")
    with running_sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server
