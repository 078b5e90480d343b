"""SSH plumbing for remote devices: one reused, host-key-checked, key-authenticated connection per device.

Host keys come from the profile's known_hosts (default ~/.ssh/known_hosts) and unknown ones are refused, never
trusted on first use; only keys authenticate (the profile's identity file alone, else the agent and ~/.ssh keys).
A dropped connection is reopened and the step retried; every failure is one line naming host:port and why.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import paramiko

from autocompress.errors import DeviceError, MeasurementFailed
from autocompress.hardware.profile import RemoteSettings, ssh_host_parts

log = logging.getLogger(__name__)
T = TypeVar("T")
connections: Counter[str] = Counter()  # connections opened per device address (reuse shows as one)


@dataclass(frozen=True)
class SshTarget:
    """Who to log in as, where; `address` is host:port as OpenSSH's known_hosts and messages write it."""

    user: str
    host: str
    port: int = 22

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def display(self) -> str:
        return f"{self.user}@{self.address}"


def parse_host(url: str) -> SshTarget:
    """ssh://user@host[:port]; an IPv6 host goes in brackets (ssh://pi@[fe80::1]:2222)."""
    try:
        return SshTarget(*ssh_host_parts(url))
    except ValueError as error:
        raise DeviceError(str(error)) from None


class _UnknownHostKey(paramiko.SSHException):
    """Raised by the host key policy: a device that is not in known_hosts is never trusted on first use."""


class _RefuseUnknownHost(paramiko.MissingHostKeyPolicy):
    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        raise _UnknownHostKey(hostname)


class _Unreachable(Exception):
    """Connecting failed in a way worth retrying (refused, timed out, reset)."""


_clients: dict[tuple, paramiko.SSHClient] = {}
_clients_lock = threading.Lock()


def _known_hosts(settings: RemoteSettings) -> Path:
    return Path(settings.known_hosts or "~/.ssh/known_hosts").expanduser()


def _connect(target: SshTarget, settings: RemoteSettings) -> paramiko.SSHClient:
    """Key-based auth only: the profile's identity file alone, else the agent and ~/.ssh keys; no passwords."""
    known = _known_hosts(settings)
    identity = str(Path(settings.identity_file).expanduser()) if settings.identity_file else None
    if identity and not Path(identity).is_file():
        raise DeviceError(f"identity_file {identity} for {target.display} does not exist")
    client = paramiko.SSHClient()
    if known.is_file():
        client.load_system_host_keys(str(known))  # read-only: never written back
    client.set_missing_host_key_policy(_RefuseUnknownHost())
    timeout = settings.connect_timeout_s
    try:
        client.connect(
            target.host,
            port=target.port,
            username=target.user,
            key_filename=identity,
            allow_agent=identity is None,
            look_for_keys=identity is None,
            timeout=timeout,
            banner_timeout=timeout,
            auth_timeout=timeout,
            channel_timeout=timeout,
        )
        return client
    except _UnknownHostKey:
        client.close()
        port = f"-p {target.port} " if target.port != 22 else ""
        raise DeviceError(
            f"host key of {target.address} is not in {known}: check its fingerprint, then add it with "
            f"`ssh-keyscan {port}{target.host} >> {known}`"
        ) from None
    except paramiko.BadHostKeyException:
        client.close()
        raise DeviceError(
            f"host key of {target.address} does not match its entry in {known} (device reinstalled, or someone "
            "in between): verify it, then replace that entry"
        ) from None
    except paramiko.PasswordRequiredException:
        client.close()
        raise DeviceError(
            f"key {identity or 'in ~/.ssh'} for {target.display} is encrypted: add it to ssh-agent "
            "and leave remote.identity_file unset"
        ) from None
    except (OSError, EOFError, paramiko.SSHException) as error:
        transport = client.get_transport()
        rejected = isinstance(error, paramiko.AuthenticationException) or (
            isinstance(error, paramiko.SSHException)  # "No authentication methods available": no key to offer
            and transport is not None
            and transport.is_active()
            and not transport.is_authenticated()
        )
        client.close()
        if not rejected:
            raise _Unreachable(_reason(error, timeout)) from error
        keys = f"key {identity}" if identity else "the SSH agent and ~/.ssh/id_* keys"
        raise DeviceError(
            f"authentication failed for {target.display} with {keys}: add its public key to "
            f"~{target.user}/.ssh/authorized_keys on the device, or set remote.identity_file"
        ) from None


def _reason(error: BaseException, timeout: float) -> str:
    if isinstance(error, paramiko.ssh_exception.NoValidConnectionsError):
        error = next(iter(error.errors.values()))
    if isinstance(error, TimeoutError):
        return f"no answer within {timeout:g}s"
    if isinstance(error, EOFError):
        return "the connection was closed by the device"
    text = error.strerror if isinstance(error, OSError) and error.strerror else str(error) or type(error).__name__
    return text.splitlines()[0].lower() if text else type(error).__name__


def _client(target: SshTarget, settings: RemoteSettings) -> paramiko.SSHClient:
    key = (os.getpid(), target, settings.identity_file, settings.known_hosts)
    with _clients_lock:
        client = _clients.get(key)
        transport = client.get_transport() if client else None
        if client is None or transport is None or not transport.is_active():
            if client is not None:
                client.close()
            client = _clients[key] = _connect(target, settings)
            connections[target.address] += 1
        return client


def _drop(target: SshTarget) -> None:
    with _clients_lock:
        for key in [key for key in _clients if key[0] == os.getpid() and key[1] == target]:
            _clients.pop(key).close()


@atexit.register
def close_all() -> None:
    """Close this process's connections (paramiko warns that unclosed clients can hang interpreter exit)."""
    with _clients_lock:
        for key in [key for key in _clients if key[0] == os.getpid()]:
            _clients.pop(key).close()


def with_connection(target: SshTarget, settings: RemoteSettings, work: Callable[[paramiko.SSHClient], T]) -> T:
    """Run `work`; when the connection drops (or cannot be opened) reconnect and retry, `retries` times."""
    reason = ""
    for attempt in range(settings.retries + 1):
        if attempt:
            time.sleep(min(0.5 * 2 ** (attempt - 1), 5.0))
        try:
            client = _client(target, settings)
        except _Unreachable as error:
            reason = f"cannot reach {target.address}: {error}"
            continue
        try:
            return work(client)
        except (OSError, EOFError, paramiko.SSHException) as error:
            why = _reason(error, settings.connect_timeout_s)
            transport = client.get_transport()
            if transport is not None and transport.is_active():  # the connection is fine: a real failure
                raise DeviceError(f"SSH to {target.display} failed: {why}") from None
            _drop(target)
            reason = f"lost the connection to {target.address}: {why}"
            log.warning("%s (attempt %d of %d)", reason, attempt + 1, settings.retries + 1)
    raise DeviceError(f"{reason} ({settings.retries + 1} attempts)")


def execute(client: paramiko.SSHClient, command: str, timeout: float) -> tuple[int, str, str]:
    """Exit status, stdout and stderr; both streams are drained as they come so neither can fill its window."""
    transport = client.get_transport()
    if transport is None:
        raise EOFError("no transport")
    channel = transport.open_session()  # opening waits at most the connect timeout
    channel.exec_command(command)
    deadline = time.monotonic() + timeout
    out, err = bytearray(), bytearray()
    # exit-status can arrive before the last output: done once the status and the end of output are both in
    while not (channel.exit_status_ready() and (channel.eof_received or channel.closed)):
        if time.monotonic() > deadline:
            channel.close()
            raise MeasurementFailed(
                f"the command on the device did not finish within {timeout:g}s (remote.command_timeout_s)"
            )
        if not _drain(channel, out, err):
            time.sleep(0.01)
    _drain(channel, out, err)
    status = channel.recv_exit_status()
    channel.close()
    if status == -1 and not transport.is_active():
        raise EOFError("the connection closed while the command ran")
    if status == -1:
        raise MeasurementFailed("the command was killed on the device by a signal (out of memory?)")
    return status, out.decode(errors="replace"), err.decode(errors="replace")


def _drain(channel: paramiko.Channel, out: bytearray, err: bytearray) -> bool:
    """Read what has arrived on both streams; True if anything did."""
    got = False
    while channel.recv_ready():
        out += channel.recv(1 << 16)
        got = True
    while channel.recv_stderr_ready():
        err += channel.recv_stderr(1 << 16)
        got = True
    return got
