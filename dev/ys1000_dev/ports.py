"""Loopback ports for the local processes the sandbox, the demo and the tests start.

A port found free can be taken by anything else on the machine before the server meant for it
binds it. So servers are started through ``start_on_port`` / ``retry_on_port_conflict``: when the
server cannot have its port (it exits saying "address already in use", or another process turns
out to listen there), it is stopped and started again on a fresh port, a bounded number of
times, and the retry is logged. In-process servers bind port 0 instead and read the real port.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable, TypeVar

log = logging.getLogger("ys1000_dev.ports")

T = TypeVar("T")

ATTEMPTS = 5
_IN_USE = re.compile(rb"address already in use|port is already in use|EADDRINUSE|errno 98\b", re.IGNORECASE)


class PortInUse(OSError):
    """The server could not have its port: something else holds it."""

    def __init__(self, port: int, detail: str):
        super().__init__(errno.EADDRINUSE, f"port {port} is in use: {detail}")
        self.port = port


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def listening_pids(port: int) -> set[int]:
    """The processes with a TCP socket listening on ``port`` (0 stands for one whose owner this
    process may not see)."""
    import psutil

    return {
        c.pid or 0
        for c in psutil.net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
    }


def process_tree(pid: int) -> set[int]:
    """``pid`` and its descendants."""
    import psutil

    try:
        return {pid, *(c.pid for c in psutil.Process(pid).children(recursive=True))}
    except psutil.Error:
        return {pid}


def _log_size(log_file: Path | None) -> int:
    try:
        return log_file.stat().st_size if log_file else 0
    except OSError:
        return 0


def _log_since(log_file: Path | None, offset: int) -> bytes:
    if not log_file:
        return b""
    try:
        with open(log_file, "rb") as f:
            f.seek(offset)
            return f.read()
    except OSError:
        return b""


def wait_listening(
    proc: subprocess.Popen,
    port: int,
    log: Path,
    what: str,
    timeout: float = 60,
    *,
    log_offset: int = 0,
    owners: Callable[[], set[int]] | None = None,
) -> None:
    """Return once ``proc`` (or a process of ``owners()``, default ``proc`` and its descendants)
    listens on ``port``. Raise ``PortInUse`` if another process listens there, or ``proc`` exits
    and its log (from ``log_offset`` on) says the address is in use; ``RuntimeError`` with the
    log's tail if it exits otherwise or does not listen within ``timeout`` seconds."""
    owners = owners or (lambda: process_tree(proc.pid))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            said = _log_since(log, log_offset)
            if _IN_USE.search(said):
                raise PortInUse(
                    port, f"{what} exited with {proc.returncode}: {said.decode(errors='replace')[-500:].strip()}"
                )
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                pass
        except OSError as exc:
            said = _log_since(log, log_offset)
            if _IN_USE.search(said):  # e.g. a server's sub-process could not bind and gave up
                raise PortInUse(port, f"{what} says: {said.decode(errors='replace')[-500:].strip()}") from exc
            time.sleep(0.2)
            continue
        pids = listening_pids(port)
        if pids & owners():
            return
        if pids:
            raise PortInUse(port, f"{what} found pid(s) {sorted(pids)} listening there")
        time.sleep(0.1)  # the listener went away between connect and look-up: look again
    raise RuntimeError(
        f"{what} did not listen on {port} within {timeout:.0f} s:\n{log.read_text(errors='replace')[-3000:]}"
    )


def retry_on_port_conflict(
    start: Callable[[int], T], what: str, *, port: int | None = None, attempts: int = ATTEMPTS
) -> T:
    """``start(port)`` with ``port`` (else a free port); while it raises ``OSError`` EADDRINUSE
    (``PortInUse`` included), log it and call it again with a fresh port, at most ``attempts``
    times in all. ``start`` must clean up after itself when it raises."""
    for attempt in range(1, attempts + 1):
        p = port if (port and attempt == 1) else free_port()
        try:
            return start(p)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or attempt == attempts:
                raise
            log.warning(
                "%s: port %d was taken before it could bind it (%s); retrying on a new port (attempt %d of %d)",
                what,
                p,
                exc,
                attempt + 1,
                attempts,
            )
    raise AssertionError("unreachable")  # pragma: no cover


def stop_process(proc: subprocess.Popen, timeout: float = 10) -> None:
    """SIGKILL ``proc`` (its whole process group when it leads one) and reap it."""
    if proc.poll() is None:
        try:
            if os.getpgid(proc.pid) == proc.pid:
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                proc.kill()
        except (ProcessLookupError, PermissionError):
            pass
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:  # pragma: no cover - unkillable (D state)
        pass


def start_on_port(
    launch: Callable[[int], subprocess.Popen],
    log: Path,
    what: str,
    *,
    port: int | None = None,
    attempts: int = ATTEMPTS,
    timeout: float = 60,
    stop: Callable[[subprocess.Popen], None] = stop_process,
) -> tuple[subprocess.Popen, int]:
    """Start a server with ``launch(port)`` (which returns its process, writing to ``log``) and
    wait until it listens; when the port turns out to be taken, stop it and start it again on a
    fresh port (see ``retry_on_port_conflict``). Returns the process and its port."""

    def once(p: int) -> tuple[subprocess.Popen, int]:
        offset = _log_size(log)
        proc = launch(p)
        try:
            wait_listening(proc, p, log, what, timeout, log_offset=offset)
        except BaseException:
            stop(proc)
            raise
        return proc, p

    return retry_on_port_conflict(once, what, port=port, attempts=attempts)
