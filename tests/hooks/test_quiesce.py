"""``python -m ys1000.hooks.quiesce`` as a plain process against real servers (and the MongoDB
fake): the lock is held while the process runs and released on signal, timeout or its death."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from fake_mongo import FakeMongo


def start_quiesce(
    db_type: str, host: str, port: int, user: str | None, password: str | None, *extra: str
) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("YS1000_DB_USER", None)
    env.pop("YS1000_DB_PASSWORD", None)
    if user:
        env["YS1000_DB_USER"] = user
    if password:
        env["YS1000_DB_PASSWORD"] = password
    return subprocess.Popen(
        [sys.executable, "-m", "ys1000.hooks.quiesce", "--type", db_type, "--host", host, "--port", str(port), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )


def read_until(proc: subprocess.Popen, kind: str, timeout: float = 30) -> dict:
    """The next protocol line of ``kind`` (lines before it are kept in ``proc.seen``)."""
    seen = proc.__dict__.setdefault("seen", [])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if line.startswith("{") and f'"ys1000":"{kind}"' in line:
            return json.loads(line)
    raise AssertionError(f"no {kind} line; output:\n{''.join(seen)}")


def mysql_conn(db, **kw):
    import pymysql

    return pymysql.connect(
        host=db.host, port=db.port, user=db.user, password=db.password, database="app", autocommit=True, **kw
    )


class Writer(threading.Thread):
    """One INSERT from another session, in the background; ``done`` is set when it returned."""

    def __init__(self, db, value: str):
        super().__init__(daemon=True)
        self.db, self.value, self.done, self.error = db, value, threading.Event(), None

    def run(self):
        try:
            with mysql_conn(self.db) as conn, conn.cursor() as cur:
                cur.execute("INSERT INTO t (v) VALUES (%s)", (self.value,))
        except Exception as exc:  # pragma: no cover - reported by the test
            self.error = exc
        finally:
            self.done.set()


@pytest.fixture
def mysql_table(mariadb):
    with mysql_conn(mariadb) as conn, conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS t")
        cur.execute("CREATE TABLE t (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(64)) ENGINE=InnoDB")
    return mariadb


def count(db, value: str) -> int:
    with mysql_conn(db) as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM t WHERE v = %s", (value,))
        return cur.fetchone()[0]


def test_mariadb_lock_blocks_writes_until_sigterm(mysql_table):
    db = mysql_table
    proc = start_quiesce("mariadb", db.host, db.port, db.user, db.password, "--max-lock", "60")
    try:
        q = read_until(proc, "quiesced")
        assert q["lock"] == "FLUSH TABLES WITH READ LOCK"
        w = Writer(db, "during-lock")
        w.start()
        assert not w.done.wait(1.5), "a write completed while the global read lock was held"
        os.killpg(proc.pid, signal.SIGTERM)
        result = read_until(proc, "result")
        assert result["ok"] is True and result["released_by"] == "signal"
        assert w.done.wait(10) and w.error is None
        assert count(db, "during-lock") == 1
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def test_mariadb_max_lock_releases_by_itself(mysql_table):
    db = mysql_table
    proc = start_quiesce("mysql", db.host, db.port, db.user, db.password, "--max-lock", "2")
    try:
        read_until(proc, "quiesced")
        w = Writer(db, "after-timeout")
        w.start()
        assert not w.done.wait(1.0)
        result = read_until(proc, "result", timeout=15)
        assert result["ok"] is True and result["released_by"] == "timeout"
        assert 1.9 <= result["held_seconds"] < 6
        assert w.done.wait(10) and w.error is None and count(db, "after-timeout") == 1
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def test_mariadb_killed_hook_releases_with_its_session(mysql_table):
    """SIGKILL (no chance to unlock): the server ends the lock with the session."""
    db = mysql_table
    proc = start_quiesce("mariadb", db.host, db.port, db.user, db.password, "--max-lock", "60")
    read_until(proc, "quiesced")
    w = Writer(db, "after-kill")
    w.start()
    assert not w.done.wait(1.0)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)
    assert w.done.wait(10) and w.error is None and count(db, "after-kill") == 1


def test_mariadb_bad_credentials_fail_cleanly(mariadb):
    proc = start_quiesce("mariadb", mariadb.host, mariadb.port, mariadb.user, "wrong", "--max-lock", "5")
    result = read_until(proc, "result")
    assert result["ok"] is False and "Access denied" in result["error"]
    assert "wrong" not in "".join(proc.seen)  # the password is never printed
    assert proc.wait(10) == 1


def pg_conn(db):
    import psycopg

    return psycopg.connect(
        host=db.host, port=db.port, user=db.user, password=db.password, dbname="postgres", autocommit=True
    )


def test_postgresql_backup_mode_in_one_session(postgres):
    db = postgres
    with pg_conn(db) as conn:
        before = conn.execute("SELECT checkpoint_lsn FROM pg_control_checkpoint()").fetchone()[0]
        conn.execute("CREATE TABLE IF NOT EXISTS t (v text)")
        conn.execute("INSERT INTO t VALUES ('x')")  # WAL after the last checkpoint
    proc = start_quiesce("postgresql", db.host, db.port, db.user, db.password, "--max-lock", "60")
    try:
        q = read_until(proc, "quiesced")
        assert q["checkpoint"] is True and q["function"] == "pg_backup_start"
        with pg_conn(db) as conn:
            moved = conn.execute(
                "SELECT checkpoint_lsn - %s::pg_lsn FROM pg_control_checkpoint()", (str(before),)
            ).fetchone()[0]
            assert moved > 0  # the checkpoint was taken
            # the backup belongs to the hook's session, which stays open while held
            row = conn.execute(
                "SELECT state FROM pg_stat_activity WHERE application_name = 'ys1000-quiesce'"
            ).fetchone()
            assert row is not None and row[0] == "idle"
            # backup mode does not block writes (WAL replay makes the copy consistent)
            conn.execute("INSERT INTO t VALUES ('during-backup')")
        os.killpg(proc.pid, signal.SIGTERM)
        result = read_until(proc, "result")
        assert result["ok"] is True and result["released_by"] == "signal"
        label = result["backup_label"]
        assert "LABEL: ys1000" in label and "START WAL LOCATION" in label and "CHECKPOINT LOCATION" in label
        assert proc.wait(10) == 0
        with pg_conn(db) as conn:
            assert (
                conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'ys1000-quiesce'"
                ).fetchone()[0]
                == 0
            )
            # backup mode is off again: a new backup can start and stop in this session
            conn.execute("SELECT pg_backup_start('probe', true)")
            conn.execute("SELECT pg_backup_stop(false)")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def test_postgresql_max_lock(postgres):
    db = postgres
    proc = start_quiesce("postgresql", db.host, db.port, db.user, db.password, "--max-lock", "1")
    result = read_until(proc, "result", timeout=20)
    assert result["ok"] is True and result["released_by"] == "timeout" and "LABEL: ys1000" in result["backup_label"]
    assert proc.wait(10) == 0


def test_mongodb_command_sequence_against_fake():
    """MongoDB: no server can be installed here (Debian bookworm ships none) — the command
    sequence is checked against ``fake_mongo.FakeMongo``."""
    with FakeMongo() as mongo:
        proc = start_quiesce("mongodb", "127.0.0.1", mongo.port, None, None, "--max-lock", "30")
        try:
            q = read_until(proc, "quiesced")
            assert q["lock"] == "fsyncLock" and q["lockCount"] == 1
            assert mongo.lock_count == 1
            os.killpg(proc.pid, signal.SIGTERM)
            result = read_until(proc, "result")
            assert result["ok"] is True and result["released_by"] == "signal" and result["lockCount"] == 0
            assert proc.wait(10) == 0
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        names = [n for n in mongo.names() if n.lower() not in ("endsessions",)]
        assert names[0] == "ping"
        locks = [(n, d) for n, d in mongo.commands if n in ("fsync", "fsyncUnlock")]
        assert [n for n, _ in locks] == ["fsync", "fsyncUnlock"]
        assert locks[0][1].get("lock") is True
        assert mongo.lock_count == 0 and mongo.max_lock_count == 1


def test_release_file(mysql_table, tmp_path):
    db = mysql_table
    flag = tmp_path / "release"
    proc = start_quiesce(
        "mariadb", db.host, db.port, db.user, db.password, "--max-lock", "60", "--release-file", str(flag)
    )
    try:
        read_until(proc, "quiesced")
        flag.touch()
        result = read_until(proc, "result", timeout=10)
        assert result["ok"] is True and result["released_by"] == "release-file"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
