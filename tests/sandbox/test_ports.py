"""A port chosen free can be taken before the server meant for it binds it. Every server the
sandbox, the demo and the tests start must then come up anyway, on another port.

Each test makes the race happen for sure: it holds the port the server would get (``free_port``
patched to hand that port out first, or the port passed in / stored in ports.json), and checks
that start-up still succeeds, on a different port, served by the server just started.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from ys1000_dev import ports
from ys1000_dev.sandbox import supervisor


def _hold(listen: bool = True) -> socket.socket:
    """A loopback port taken by this test process: listening (another server there), or only
    bound (no one answers, but binding it fails)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    if listen:
        s.listen()
    return s


@pytest.fixture
def held():
    socks: list[socket.socket] = []

    def hold(listen: bool = True) -> int:
        s = _hold(listen)
        socks.append(s)
        return s.getsockname()[1]

    yield hold
    for s in socks:
        s.close()


@pytest.fixture
def first_free_port_taken(monkeypatch, held):
    """``free_port()`` first returns a port this test holds (as if something took it between
    choosing and binding), then real free ports. Returns a function giving the held ports."""
    taken: list[int] = []
    real = ports.free_port

    def fake(listen: bool = True):
        def free_port() -> int:
            if not taken:
                taken.append(held(listen))
                return taken[0]
            return real()

        monkeypatch.setattr(ports, "free_port", free_port)
        return taken

    return fake


def _listener_is(port: int, pid: int) -> bool:
    import psutil

    tree = {pid, *(c.pid for c in psutil.Process(pid).children(recursive=True))}
    return bool(ports.listening_pids(port) & tree)


# -- the shared helper ---------------------------------------------------------------------------

SERVER = r"""
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
    s.listen()
except OSError as exc:
    print(f"cannot listen: {exc}", flush=True)
    sys.exit(1)
print("listening", flush=True)
time.sleep(120)
"""


@pytest.mark.parametrize("listen", [True, False], ids=["another-server-listens", "port-only-bound"])
def test_start_on_port_retries_on_a_fresh_port(tmp_path, held, caplog, listen):
    import sys

    taken = held(listen)
    log = tmp_path / "server.log"
    launched: list[int] = []

    def launch(port: int) -> subprocess.Popen:
        launched.append(port)
        with open(log, "ab") as fh:
            return subprocess.Popen([sys.executable, "-c", SERVER, str(port)], stdout=fh, stderr=subprocess.STDOUT)

    with caplog.at_level(logging.WARNING, logger="ys1000_dev.ports"):
        proc, port = ports.start_on_port(launch, log, "test server", port=taken, timeout=20)
    try:
        assert launched[0] == taken and port == launched[-1] != taken and len(launched) == 2
        assert _listener_is(port, proc.pid)
        assert f"port {taken} was taken" in caplog.text and "attempt 2 of 5" in caplog.text
    finally:
        ports.stop_process(proc)


def test_start_on_port_gives_up_after_bounded_attempts(tmp_path, monkeypatch, held):
    import sys

    monkeypatch.setattr(ports, "free_port", lambda: held())  # every port handed out is taken
    log = tmp_path / "server.log"
    launched: list[int] = []

    def launch(port: int) -> subprocess.Popen:
        launched.append(port)
        with open(log, "ab") as fh:
            return subprocess.Popen([sys.executable, "-c", SERVER, str(port)], stdout=fh, stderr=subprocess.STDOUT)

    with pytest.raises(ports.PortInUse):
        ports.start_on_port(launch, log, "test server", attempts=3, timeout=20)
    assert len(launched) == 3


def test_a_server_that_fails_otherwise_is_not_retried(tmp_path):
    import sys

    launched: list[int] = []

    def launch(port: int) -> subprocess.Popen:
        launched.append(port)
        return subprocess.Popen(
            [sys.executable, "-c", "import sys; print('bad config'); sys.exit(3)"],
            stdout=open(tmp_path / "x.log", "ab"),
            stderr=subprocess.STDOUT,
        )

    with pytest.raises(RuntimeError, match="exited with 3"):
        ports.start_on_port(launch, tmp_path / "x.log", "broken server", timeout=20)
    assert len(launched) == 1


# -- each server ---------------------------------------------------------------------------------


@pytest.mark.parametrize("listen", [True, False], ids=["another-server-listens", "port-only-bound"])
def test_s3_moves_to_another_port(tmp_path, first_free_port_taken, listen):
    from ys1000_dev.sandbox.s3 import start_s3

    taken = first_free_port_taken(listen)
    proc, url = start_s3(tmp_path / "s3.log", tmp_path / "s3-data")
    try:
        port = int(url.rsplit(":", 1)[1])
        assert taken and port != taken[0]
        assert _listener_is(port, proc.pid)
        urllib.request.urlopen(f"{url}/minio/health/live", timeout=5).read()
        if not listen:  # MinIO itself hit the taken port and said so
            assert "port is already in use" in (tmp_path / "s3.log").read_text().lower()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_mariadb_moves_to_another_port(tmp_path, first_free_port_taken):
    from ys1000_dev.sandbox import databases

    if not databases.available():
        pytest.skip("MariaDB is not installed")
    taken = first_free_port_taken(listen=False)
    db = databases.start_mariadb(tmp_path / "mariadb", user="u", password="pw")
    try:
        assert db.port != taken[0]
        assert _listener_is(db.port, db.proc.pid)
        assert "address already in use" in db.log.read_text().lower()
    finally:
        db.stop()


def test_postgres_and_redis_move_to_another_port(tmp_path, held):
    from ys1000_dev import processes

    try:
        processes.postgres_bindir()
    except RuntimeError:
        pytest.skip("PostgreSQL is not installed")
    if not shutil.which("redis-server") and not Path("/usr/bin/redis-server").exists():
        pytest.skip("redis-server is not installed")
    procs = processes.ProcessSet(tmp_path / "logs", dict(os.environ))
    pg_taken, redis_taken = held(), held(listen=False)
    pg = processes.PostgresServer(procs, port=pg_taken)
    redis = processes.RedisServer(procs, port=redis_taken)
    try:
        pg.start()
        redis.start()
        assert pg.port != pg_taken and f"127.0.0.1:{pg.port}/" in pg.sqlalchemy_url
        assert _listener_is(pg.port, procs.procs["postgres"].proc.pid)
        assert redis.port != redis_taken and redis._ready()
        assert "address already in use" in (tmp_path / "logs" / "redis.log").read_text().lower()
    finally:
        procs.stop()
        pg.cleanup()
        redis.cleanup()


def test_airflow_stack_moves_its_ports(tmp_path, held):
    """The task-log server's port is taken (the hardest case: the scheduler serving it keeps
    running when its log server cannot bind): the stack starts again on fresh ports, and every
    component is told the ones it really got."""
    from ys1000_dev.processes import AirflowStack

    stack = AirflowStack.standalone(tmp_path / "airflow", {})
    first_api = stack.port
    log_taken = stack.worker_log_port = held()
    stack._refresh_env()
    try:
        stack.start(timeout=240)
        assert stack.port != first_api and stack.worker_log_port != log_taken
        env = stack.procs.env
        assert env["AIRFLOW__API__PORT"] == str(stack.port)
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == f"http://127.0.0.1:{stack.port}/execution/"
        assert env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] == str(stack.worker_log_port)
        assert _listener_is(stack.port, stack.procs.procs["api-server"].proc.pid)
        assert _listener_is(stack.worker_log_port, stack.procs.procs["scheduler"].proc.pid)
        assert stack.client().get("/api/v2/monitor/health")["scheduler"]["status"] == "healthy"
    finally:
        stack.stop()


def test_report_receivers_move_to_another_port(first_free_port_taken):
    import smtplib
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reports"))
    try:
        from receivers import Mailbox
    finally:
        sys.path.pop(0)
    taken = first_free_port_taken()
    with Mailbox() as mail:
        assert mail.port != taken[0]
        with smtplib.SMTP("127.0.0.1", mail.port, timeout=10) as smtp:
            smtp.sendmail("a@example.com", ["b@example.com"], "Subject: hi\r\n\r\nhello\r\n")
        assert mail.messages and mail.messages[0][0] == ["b@example.com"]


def test_node_log_server_binds_port_zero(tmp_path):
    from ys1000_dev.sandbox.logserver import LogServer

    srv = LogServer(tmp_path / "logs", tmp_path / "pki")
    srv.start()
    try:
        assert srv.port and os.getpid() in ports.listening_pids(srv.port)
    finally:
        srv.stop()


# -- the control plane ---------------------------------------------------------------------------


@pytest.mark.cluster
def test_controlplane_replaces_ports_held_by_others(tmp_path, held):
    """ports.json names ports that other processes hold now: the control plane comes up on
    fresh ones (the etcd client port, free, is reused) and records them; the apiserver's port is
    bound from choosing it until it serves (the Go tests in tools/controlplane cover etcd's
    retry when its port is taken in between)."""
    binary = supervisor.controlplane_binary()
    if not binary.exists():
        if os.environ.get("YS1000_REQUIRE_SANDBOX") == "1":
            pytest.fail(f"{binary} missing: run `make controlplane`")
        pytest.skip("control plane not built (make controlplane)")
    data = tmp_path / "cp"
    data.mkdir()
    free = ports.free_port()
    before = {"etcd_client": free, "etcd_peer": held(), "apiserver": held()}
    (data / "ports.json").write_text(json.dumps(before))
    log = tmp_path / "controlplane.log"
    with open(log, "ab") as fh:
        proc = subprocess.Popen(
            [
                str(binary),
                "--data-dir",
                str(data),
                "--kubeconfig",
                str(tmp_path / "kc"),
                "--name",
                "porttest",
                "--unsafe-no-fsync",
            ],
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        deadline = time.monotonic() + 120
        while not (data / "ready.json").exists():
            assert proc.poll() is None, f"control plane exited:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"control plane not ready:\n{log.read_text()[-3000:]}"
            time.sleep(0.3)
        ready = json.loads((data / "ready.json").read_text())
        after = json.loads((data / "ports.json").read_text())
        assert after["etcd_client"] == free
        assert after["etcd_peer"] != before["etcd_peer"] and after["apiserver"] != before["apiserver"]
        assert ready["server"] == f"https://127.0.0.1:{after['apiserver']}"
        assert ready["etcd_client_url"] == f"http://127.0.0.1:{free}"
        assert _listener_is(after["apiserver"], proc.pid) and _listener_is(free, proc.pid)
        from kubernetes import client, config

        api = config.new_client_from_config(config_file=str(tmp_path / "kc"))
        assert client.VersionApi(api).get_code().git_version.startswith("v1.")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
