"""Hold a database quiesced for the duration of a capture: ``python -m ys1000.hooks.quiesce``.

Runs inside the protected cluster as the consistency hook Job (``ys1000.hooks.consistency``)::

    python -m ys1000.hooks.quiesce --type mysql|mariadb|postgresql|mongodb --host H --port P \\
        [--database DB] [--max-lock SECONDS] [--lock-timeout SECONDS] [--release-file PATH]

Credentials come from the environment (``YS1000_DB_USER``, ``YS1000_DB_PASSWORD``; the Job fills
them from the application's Secret with ``env.valueFrom.secretKeyRef``), never from the command
line. The process

1. connects and quiesces, in one session that it keeps open:

   - MySQL/MariaDB: ``FLUSH TABLES WITH READ LOCK`` — a global read lock owned by this session;
     writes from every other session wait until ``UNLOCK TABLES`` or until this session ends;
   - PostgreSQL: ``CHECKPOINT`` then ``pg_backup_start('ys1000', true)`` (``pg_start_backup``
     before PostgreSQL 15): non-exclusive backup mode, which belongs to this session;
   - MongoDB: ``fsync`` with ``lock: true`` (``db.fsyncLock()``);

2. prints ``{"ys1000": "quiesced", ...}`` once the lock is held;
3. holds it until SIGTERM/SIGINT/SIGHUP (the pod being deleted), the ``--release-file``
   appearing, or ``--max-lock`` seconds elapsing — the hard maximum: it releases by itself even
   when nobody ever resumes it;
4. resumes (``UNLOCK TABLES``; ``pg_backup_stop()`` in the same session; ``fsyncUnlock``) and
   prints ``{"ys1000": "result", "ok": true, "released_by": "signal|timeout|release-file", ...}``.

If this process dies without resuming, MySQL/MariaDB and PostgreSQL end the lock/backup mode with
the session; a MongoDB fsyncLock outlives the connection (only ``--max-lock`` while alive, or an
operator running ``db.fsyncUnlock()``, ends it). The session is pinged while held; losing it is
reported as ``"ok": false`` (the lock ended early, the copy may be inconsistent).

Exit code 0 when the lock was held and released cleanly, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from typing import Any

USER_ENV = "YS1000_DB_USER"
PASSWORD_ENV = "YS1000_DB_PASSWORD"
TYPES = ("mysql", "mariadb", "postgresql", "mongodb")
KEEPALIVE_EVERY = 5.0


class Interrupted(Exception):
    """A stop signal arrived before the lock was held."""


def emit(kind: str, **fields: Any) -> None:
    print(json.dumps({"ys1000": kind, **fields}, separators=(",", ":"), default=str), flush=True)


def note(message: str) -> None:
    print(f"quiesce: {message}", flush=True)


# -- drivers ------------------------------------------------------------------------------------


class Driver:
    """One database session that quiesces and resumes."""

    def __init__(
        self, host: str, port: int, user: str | None, password: str | None, database: str | None, lock_timeout: float
    ):
        self.host, self.port, self.user, self.password = host, port, user, password
        self.database, self.lock_timeout = database, lock_timeout

    def connect(self) -> None: ...
    def quiesce(self) -> dict:
        raise NotImplementedError

    def alive(self) -> bool:
        raise NotImplementedError

    def resume(self) -> dict:
        raise NotImplementedError

    def close(self) -> None: ...


class MySQL(Driver):
    """MySQL and MariaDB: a global read lock held by this session."""

    conn: Any = None  # the driver's connection once connect() ran

    def connect(self) -> None:
        import pymysql

        self.conn = pymysql.connect(
            host=self.host,
            port=self.port,
            user=self.user or "root",
            password=self.password or "",
            database=self.database,
            connect_timeout=10,
            autocommit=True,
        )

    def quiesce(self) -> dict:
        with self.conn.cursor() as cur:
            cur.execute("SET SESSION lock_wait_timeout = %s", (max(1, int(self.lock_timeout)),))
            cur.execute("FLUSH TABLES WITH READ LOCK")
            info: dict = {"lock": "FLUSH TABLES WITH READ LOCK"}
            try:
                cur.execute("SHOW MASTER STATUS")
                row = cur.fetchone()
                if row:
                    info["binlog"] = {"file": row[0], "position": row[1]}
            except Exception:  # binary log disabled or no privilege: only informational
                pass
            return info

    def alive(self) -> bool:
        try:
            self.conn.ping(reconnect=False)  # never reconnect: a new session would not hold the lock
            return True
        except Exception:
            return False

    def resume(self) -> dict:
        with self.conn.cursor() as cur:
            cur.execute("UNLOCK TABLES")
        return {"unlock": "UNLOCK TABLES"}

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:
                pass


class PostgreSQL(Driver):
    """PostgreSQL: checkpoint + non-exclusive backup mode, started and stopped in this session."""

    conn: Any = None  # the driver's connection once connect() ran
    legacy = False

    def connect(self) -> None:
        import psycopg

        self.conn = psycopg.connect(
            host=self.host,
            port=self.port,
            user=self.user or "postgres",
            password=self.password or None,
            dbname=self.database or "postgres",
            connect_timeout=10,
            autocommit=True,
            application_name="ys1000-quiesce",
        )

    def quiesce(self) -> dict:
        import psycopg

        self.legacy = self.conn.info.server_version < 150000
        info: dict = {"server_version": self.conn.info.server_version}
        self.conn.execute("SET statement_timeout = %s" % (max(1, int(self.lock_timeout)) * 1000))
        try:
            self.conn.execute("CHECKPOINT")
            info["checkpoint"] = True
        except psycopg.errors.InsufficientPrivilege:
            note(
                "no privilege for CHECKPOINT (needs pg_checkpoint or superuser); the fast "
                "backup start below checkpoints anyway"
            )
            info["checkpoint"] = "by backup start"
        fn = "pg_start_backup(%s, true, false)" if self.legacy else "pg_backup_start(%s, true)"
        row = self.conn.execute(f"SELECT {fn}::text", ("ys1000",)).fetchone()
        self.conn.execute("SET statement_timeout = 0")
        info["backup_start_lsn"] = row[0]
        info["function"] = fn.split("(")[0]
        return info

    def alive(self) -> bool:
        try:
            self.conn.execute("SELECT 1").fetchone()
            return True
        except Exception:
            return False

    def resume(self) -> dict:
        if self.legacy:
            row = self.conn.execute("SELECT lsn::text, labelfile FROM pg_stop_backup(false, true)").fetchone()
        else:
            row = self.conn.execute("SELECT lsn::text, labelfile FROM pg_backup_stop(true)").fetchone()
        # the backup_label belongs with the copied files when they are used for recovery
        return {"backup_stop_lsn": row[0], "backup_label": row[1]}

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:
                pass


class MongoDB(Driver):
    """MongoDB: ``fsync`` with ``lock: true`` / ``fsyncUnlock`` (the lock is server-wide)."""

    client: Any = None  # the MongoClient once connect() ran

    def connect(self) -> None:
        import pymongo

        kwargs: dict = {
            "host": self.host,
            "port": self.port,
            "directConnection": True,
            "serverSelectionTimeoutMS": 10000,
            "connectTimeoutMS": 10000,
            "appname": "ys1000-quiesce",
        }
        if self.user:
            kwargs.update(username=self.user, password=self.password or "", authSource=self.database or "admin")
        self.client = pymongo.MongoClient(**kwargs)
        self.client.admin.command("ping")

    def quiesce(self) -> dict:
        reply = self.client.admin.command("fsync", lock=True)
        return {"lock": "fsyncLock", "lockCount": reply.get("lockCount")}

    def alive(self) -> bool:
        try:
            self.client.admin.command("ping")
            return True
        except Exception:
            return False

    def resume(self) -> dict:
        last: Exception | None = None
        for _ in range(5):  # the lock outlives the connection: try hard to unlock
            try:
                reply = self.client.admin.command("fsyncUnlock")
                return {"unlock": "fsyncUnlock", "lockCount": reply.get("lockCount")}
            except Exception as exc:
                last = exc
                time.sleep(1)
        raise last  # type: ignore[misc]

    def close(self) -> None:
        if self.client is not None:
            self.client.close()


DRIVERS: dict[str, type[Driver]] = {"mysql": MySQL, "mariadb": MySQL, "postgresql": PostgreSQL, "mongodb": MongoDB}


# -- main ---------------------------------------------------------------------------------------


def hold(
    driver: Driver,
    *,
    kind: str,
    max_lock: float,
    release_file: str | None,
    stop: threading.Event,
    stop_reason: list[str],
    state: dict,
) -> int:
    """Quiesce, hold, resume; print the protocol lines; return the exit code."""
    started = time.monotonic()
    try:
        driver.connect()
        info = driver.quiesce()
    except Interrupted:
        driver.close()  # the server drops a half-taken lock with the session
        emit("result", ok=False, released_by="signal", error="stopped before the lock was held")
        return 1
    except Exception as exc:
        driver.close()
        emit(
            "result",
            ok=False,
            error=f"cannot quiesce {kind} at {driver.host}:{driver.port}: {type(exc).__name__}: {exc}",
        )
        return 1
    state["held"] = True
    locked_at = time.monotonic()
    emit(
        "quiesced",
        type=kind,
        host=driver.host,
        port=driver.port,
        max_lock=max_lock,
        seconds=round(locked_at - started, 3),
        **info,
    )
    deadline = locked_at + max_lock
    released_by, lost = "", False
    next_ping = locked_at + KEEPALIVE_EVERY
    while True:
        now = time.monotonic()
        if stop.is_set():
            released_by = stop_reason[0] if stop_reason else "signal"
            break
        if release_file and os.path.exists(release_file):
            released_by = "release-file"
            break
        if now >= deadline:
            released_by = "timeout"
            break
        if now >= next_ping:
            next_ping = now + KEEPALIVE_EVERY
            if not driver.alive():
                lost = True
                released_by = "connection-lost"
                break
        stop.wait(min(0.2, max(0.0, deadline - now)))
    held = round(time.monotonic() - locked_at, 3)
    if lost and kind != "mongodb":
        driver.close()
        emit(
            "result",
            ok=False,
            released_by=released_by,
            held_seconds=held,
            error="the database session ended while the lock was held: the lock ended early, "
            "so the copy may not be consistent",
        )
        return 1
    try:
        done = driver.resume()
    except Exception as exc:
        driver.close()
        emit(
            "result",
            ok=False,
            released_by=released_by,
            held_seconds=held,
            error=f"resume failed: {type(exc).__name__}: {exc}"
            + (
                " (closing the session ends the lock)"
                if kind != "mongodb"
                else " — the MongoDB fsyncLock may still be held: run db.fsyncUnlock()"
            ),
        )
        return 1
    driver.close()
    emit("result", ok=True, released_by=released_by, held_seconds=held, **done)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ys1000.hooks.quiesce", description=__doc__.split("\n")[0])
    ap.add_argument("--type", required=True, choices=TYPES)
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", required=True, type=int)
    ap.add_argument(
        "--database",
        default=None,
        help="database to connect to (PostgreSQL: postgres; MongoDB: the auth source, admin)",
    )
    ap.add_argument(
        "--max-lock",
        type=float,
        default=600.0,
        help="hard maximum seconds to hold the lock; released by itself after it",
    )
    ap.add_argument(
        "--lock-timeout",
        type=float,
        default=60.0,
        help="seconds to wait for the lock itself (e.g. behind a long write)",
    )
    ap.add_argument("--release-file", default=None, help="release as soon as this path exists")
    args = ap.parse_args(argv)

    stop = threading.Event()
    reason: list[str] = []
    state = {"held": False}

    def on_signal(signum, frame):
        reason.append("signal")
        note(f"received {signal.Signals(signum).name}")
        stop.set()
        if not state["held"]:
            raise Interrupted()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    driver = DRIVERS[args.type](
        args.host,
        args.port,
        os.environ.get(USER_ENV) or None,
        os.environ.get(PASSWORD_ENV) or None,
        args.database,
        args.lock_timeout,
    )
    try:
        return hold(
            driver,
            kind=args.type,
            max_lock=args.max_lock,
            release_file=args.release_file,
            stop=stop,
            stop_reason=reason,
            state=state,
        )
    except Interrupted:  # a signal between connect and the first protocol line
        driver.close()
        emit("result", ok=False, released_by="signal", error="stopped before the lock was held")
        return 1


if __name__ == "__main__":
    sys.exit(main())
