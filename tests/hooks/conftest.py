"""Real database servers for the hook tests: MariaDB and PostgreSQL from the Debian packages,
started once per session on loopback in a temp dir (unique ports), standing in for the app's
database Service. Tests that need one are skipped when the package is not installed, except under
``make test`` (YS1000_REQUIRE_SANDBOX=1), where that is an error.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from ys1000_dev.ports import start_on_port

PG_BIN = max(
    (p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/initdb")),
    key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    default=Path("/usr/lib/postgresql/15/bin"),
)

DB_USER = "app"
DB_PASSWORD = "app-secret-pw"


@dataclass
class DbServer:
    type: str
    host: str
    port: int
    user: str
    password: str
    datadir: Path
    log: Path

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def _missing(what: str) -> None:
    if os.environ.get("YS1000_REQUIRE_SANDBOX") == "1":
        pytest.fail(f"{what} is not installed (make test installs it)")
    pytest.skip(f"{what} is not installed")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def mariadb():
    """A MariaDB server on 127.0.0.1 with user ``app`` (all privileges) and database ``app``."""
    from ys1000_dev.sandbox import databases

    if not databases.available():
        _missing("MariaDB (mariadb-server)")
    root = Path(tempfile.mkdtemp(prefix="ys1000-mariadb-"))
    db = databases.start_mariadb(
        root, user=DB_USER, password=DB_PASSWORD, init_sql="CREATE DATABASE IF NOT EXISTS app;\n"
    )
    try:
        yield DbServer("mariadb", db.host, db.port, DB_USER, DB_PASSWORD, root / "data", db.log)
    finally:
        db.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres():
    """A PostgreSQL server (the newest installed, 15 on bookworm) on 127.0.0.1 (password auth) with superuser ``postgres``.

    PostgreSQL refuses to run as root: as root the server runs as the ``postgres`` system user
    (created by the package; created here when missing) through ``runuser``.
    """
    if not (PG_BIN / "initdb").exists():
        _missing("PostgreSQL (postgresql)")
    as_root = os.geteuid() == 0
    prefix: list[str] = []
    if as_root:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            subprocess.run(
                ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "postgres"], check=True
            )
        prefix = ["runuser", "-u", "postgres", "--"]
    root = Path(tempfile.mkdtemp(prefix="ys1000-pg-", dir="/tmp"))
    datadir, log = root / "data", root / "postgres.log"
    pwfile = root / "pw"
    pwfile.write_text(DB_PASSWORD + "\n")
    if as_root:
        pw = pwd.getpwnam("postgres")
        os.chmod(root, 0o700)
        for p in (root, pwfile):
            os.chown(p, pw.pw_uid, pw.pw_gid)
    subprocess.run(
        [
            *prefix,
            str(PG_BIN / "initdb"),
            "-D",
            str(datadir),
            "-U",
            "postgres",
            "-A",
            "scram-sha-256",
            f"--pwfile={pwfile}",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        timeout=180,
    )
    logfh = open(log, "wb")
    if as_root:
        os.chown(log, pwd.getpwnam("postgres").pw_uid, -1)

    def launch(port: int) -> subprocess.Popen:
        return subprocess.Popen(
            [
                *prefix,
                str(PG_BIN / "postgres"),
                "-D",
                str(datadir),
                "-p",
                str(port),
                "-k",
                str(root),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "shared_buffers=16MB",
                "-c",
                "max_connections=20",
            ],
            stdout=logfh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    proc = None
    try:
        # a port taken before postgres binds it: postgres exits, and starts again on a fresh one
        proc, port = start_on_port(launch, log, "postgres")
        yield DbServer("postgresql", "127.0.0.1", port, "postgres", DB_PASSWORD, datadir, log)
    finally:
        if proc is not None:
            _stop(proc)
        logfh.close()
        shutil.rmtree(root, ignore_errors=True)
