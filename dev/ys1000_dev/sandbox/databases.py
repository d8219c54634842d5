"""A real MariaDB server on loopback (Debian's mariadb-server), standing in for an app's database.

The sandbox runs no database containers, so tests and the demo start the server themselves in a
directory of their own; hooks reach it at 127.0.0.1:port like they would reach a Service.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ys1000_dev.ports import start_on_port

MARIADBD = Path("/usr/sbin/mariadbd")
MARIADB_INSTALL_DB = shutil.which("mariadb-install-db") or "/usr/bin/mariadb-install-db"


@dataclass
class MariaDB:
    host: str
    port: int
    user: str
    password: str
    root: Path
    proc: subprocess.Popen

    @property
    def log(self) -> Path:
        return self.root / "mariadb.log"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def available() -> bool:
    return MARIADBD.exists() and Path(MARIADB_INSTALL_DB).exists()


def start_mariadb(root: Path, *, user: str, password: str, init_sql: str = "", timeout: float = 60) -> MariaDB:
    """Initialise a data dir under ``root`` and start mariadbd on a free loopback port with ``user``
    (all privileges, password login); ``init_sql`` runs at start-up (create databases, tables)."""
    if not available():
        raise RuntimeError("MariaDB is not installed (apt-get install mariadb-server; make setup does it)")
    root.mkdir(parents=True, exist_ok=True)
    datadir, log = root / "data", root / "mariadb.log"
    user_opt = ["--user=root"] if os.geteuid() == 0 else []
    if not datadir.exists():
        subprocess.run(
            [
                MARIADB_INSTALL_DB,
                "--no-defaults",
                f"--datadir={datadir}",
                "--skip-test-db",
                "--auth-root-authentication-method=normal",
                *user_opt,
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            timeout=180,
        )
    init = root / "init.sql"
    init.write_text(
        f"CREATE USER IF NOT EXISTS '{user}'@'%' IDENTIFIED BY '{password}';\n"
        f"CREATE USER IF NOT EXISTS '{user}'@'localhost' IDENTIFIED BY '{password}';\n"
        f"GRANT ALL PRIVILEGES ON *.* TO '{user}'@'%';\n"
        f"GRANT ALL PRIVILEGES ON *.* TO '{user}'@'localhost';\n" + init_sql
    )

    def launch(port: int) -> subprocess.Popen:
        with open(log, "ab") as fh:
            return subprocess.Popen(
                [
                    MARIADBD,
                    "--no-defaults",
                    f"--datadir={datadir}",
                    f"--socket={root / 'mysqld.sock'}",
                    f"--pid-file={root / 'mysqld.pid'}",
                    f"--port={port}",
                    "--bind-address=127.0.0.1",
                    "--skip-name-resolve",
                    "--skip-log-bin",
                    f"--init-file={init}",
                    "--innodb-buffer-pool-size=16M",
                    "--innodb-flush-log-at-trx-commit=2",
                    "--performance-schema=OFF",
                    *user_opt,
                ],
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    # a port taken before mariadbd binds it: mariadbd exits, and starts again on a fresh one
    proc, port = start_on_port(launch, log, "mariadbd", timeout=timeout)
    return MariaDB("127.0.0.1", port, user, password, root, proc)
