"""Self-backup inside Airflow (the ``ys1000_self_backup`` DAG's task) and self-restore (the
``ys1000 self-restore`` command on a fresh install).

Backup (a task; Airflow 3 blocks ORM access from tasks):
- the metadata DB location comes from the Airflow connection ``metadata_db_connection_id``
  (default ``ys1000_metadata_db``: conn type ``postgres`` with host/port/login/password/schema, or
  ``sqlite`` with host = the DB file), else from ``[database] sql_alchemy_conn`` when the task can
  read it (``dag.test()``, LocalExecutor without the ORM block);
- SQLite is copied with the online backup API, PostgreSQL dumped with ``pg_dump -Fc``;
- connections and variables: their ids are read from the dump (or the live PostgreSQL DB) and
  their decrypted values fetched through the Task SDK (``Connection.get``/``Variable.get``), then
  exported as JSON (the ``airflow connections export`` shape) — restorable on an install with
  another Fernet key;
- ``config/`` as tar.gz; every part encrypted with the repository key (see ``archive``).

Restore (the command runs as an Airflow admin process with DB access):
metadata DB (same kind: SQLite file or PostgreSQL database; then ``airflow db migrate``), config
directory, connections and variables re-imported (encrypted with this install's Fernet key).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import tempfile
from pathlib import Path
from typing import Any, Callable

from ys1000.selfbackup import archive

log = logging.getLogger(__name__)

BLOCKED = "airflow-db-not-allowed"
CONN_FIELDS = ("conn_type", "description", "host", "login", "password", "schema", "port", "extra")


def db_target_from_connection(conn) -> archive.DbTarget:
    ctype = (conn.conn_type or "").lower()
    if ctype == "sqlite":
        if not conn.host:
            raise archive.SelfBackupError(f"connection {conn.conn_id!r} (sqlite) needs host = the DB file path")
        return archive.DbTarget("sqlite", path=conn.host)
    if ctype in ("postgres", "postgresql"):
        netloc = conn.host or "localhost"
        if conn.login:
            netloc = f"{conn.login}@{netloc}"
        if conn.port:
            netloc += f":{conn.port}"
        return archive.DbTarget(
            "postgresql", url=f"postgresql://{netloc}/{conn.schema or 'airflow'}", password=conn.password or None
        )
    raise archive.SelfBackupError(
        f"connection {conn.conn_id!r}: conn type {conn.conn_type!r} is not a metadata DB (expected postgres or sqlite)"
    )


def metadata_db_for_task(conn_id: str) -> archive.DbTarget:
    """Where the metadata DB is, from inside a task."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        conn = None
    if conn is not None:
        from ys1000.airflow.connections import _mask

        if conn.password:
            _mask(conn.password)
        return db_target_from_connection(conn)
    from airflow.configuration import conf

    url = conf.get("database", "sql_alchemy_conn", fallback="") or ""
    if not url or url.startswith(BLOCKED):
        raise archive.SelfBackupError(
            f"the metadata DB is not reachable from this task: create the Airflow connection {conn_id!r} "
            "(conn type postgres with the metadata DB's host/port/login/password/schema, or sqlite with "
            "host = the DB file)"
        )
    return archive.DbTarget.from_sqlalchemy_url(url)


def export_connections(ids: list[str]) -> dict[str, dict[str, Any]]:
    from airflow.sdk import Connection

    from ys1000.airflow.connections import _mask

    out = {}
    for cid in sorted(set(ids)):
        c = Connection.get(cid)
        if c.password:
            _mask(c.password)
        out[cid] = {f: getattr(c, f, None) for f in CONN_FIELDS}
    return out


def export_variables(keys: list[str]) -> dict[str, str]:
    from airflow.sdk import Variable

    return {k: Variable.get(k) for k in sorted(set(keys))}


def run_self_backup(config_dir: str | Path | None, *, now: dt.datetime | None = None) -> dict:
    """The task: dump, export, encrypt, upload; then keep the newest ``keep`` self-backups."""
    from ys1000.airflow.connections import open_repository_for
    from ys1000.config import default_config_dir, load_config
    from ys1000.selfbackup.config import SELF_BACKUP_FILE, load_self_backup_config

    cdir = Path(config_dir) if config_dir else default_config_dir()
    sb = load_self_backup_config(cdir)
    if sb is None:
        raise archive.SelfBackupError(
            f"{cdir / SELF_BACKUP_FILE} does not exist: it names the repository self-backups go to (repository: NAME)"
        )
    config = load_config(cdir)
    if sb.repository not in config.repositories:
        raise archive.SelfBackupError(
            f"{SELF_BACKUP_FILE}: repository {sb.repository!r} is not defined in "
            f"repositories.yaml; defined: {', '.join(sorted(config.repositories))}"
        )
    repo = open_repository_for(sb.repository, config.repositories[sb.repository], create=True)
    db = metadata_db_for_task(sb.metadata_db_connection_id)
    import airflow

    with tempfile.TemporaryDirectory(prefix="ys1000-self-backup-") as tmp:
        dump = archive.dump_database(db, Path(tmp) / "metadata.dump")
        conn_ids = [r[0] for r in archive.db_rows(db, dump, "SELECT conn_id FROM connection")]
        var_keys = [r[0] for r in archive.db_rows(db, dump, "SELECT key FROM variable")]
        runs = archive.db_rows(db, dump, "SELECT count(*) FROM dag_run")[0][0]
        parts = {
            archive.PART_DB: dump.read_bytes(),
            archive.PART_CONFIG: archive.pack_dir(cdir),
            archive.PART_CONNECTIONS: json.dumps(export_connections(conn_ids), indent=2).encode(),
            archive.PART_VARIABLES: json.dumps(export_variables(var_keys), indent=2).encode(),
        }
    bid = archive.new_backup_id(now)
    result = archive.write_self_backup(
        repo,
        bid,
        parts,
        {
            "db_kind": db.kind,
            "airflow_version": airflow.__version__,
            "connections": len(conn_ids),
            "variables": len(var_keys),
            "dag_runs": runs,
            "config_dir": str(cdir),
        },
    )
    pruned = archive.prune_self_backups(repo, sb.keep)
    summary = {
        "self_backup_id": bid,
        "repository": sb.repository,
        "db_kind": db.kind,
        "bytes": sum(p["stored"] for p in result.parts.values()),
        "connections": len(conn_ids),
        "variables": len(var_keys),
        "dag_runs": runs,
        "pruned": pruned,
    }
    log.info(
        "self-backup %s to repository %s: metadata DB (%s, %d DAG runs), config, %d connections, "
        "%d variables; pruned %s",
        bid,
        sb.repository,
        db.kind,
        runs,
        len(conn_ids),
        len(var_keys),
        ", ".join(pruned) or "none",
    )
    return summary


# -- restore (CLI side, direct DB access) ---------------------------------------------------------


def self_restore(
    repo,
    backup_id: str | None,
    *,
    config_dir: Path,
    restore_db: bool = True,
    restore_config: bool = True,
    restore_secrets: bool = True,
    out: Callable[[str], None] = print,
) -> dict:
    """Restore a self-backup onto this install (stop the scheduler, workers and api-server first)."""
    backup = archive.get_self_backup(repo, backup_id)
    out(
        f"self-backup {backup.backup_id} from {backup.created.isoformat()} "
        f"(Airflow {backup.meta.get('airflow_version', '?')}, {backup.meta.get('db_kind', '?')} metadata DB)"
    )
    done: dict[str, Any] = {"self_backup_id": backup.backup_id}
    if restore_db:
        from airflow import settings
        from airflow.configuration import conf

        target = archive.DbTarget.from_sqlalchemy_url(conf.get("database", "sql_alchemy_conn"))
        if backup.meta.get("db_kind") and backup.meta["db_kind"] != target.kind:
            raise archive.SelfBackupError(
                f"the self-backup holds a {backup.meta['db_kind']} metadata DB but this install uses "
                f"{target.kind}; restore onto an install with the same kind of DB (or skip it: --skip-db)"
            )
        with tempfile.TemporaryDirectory(prefix="ys1000-self-restore-") as tmp:
            dump = Path(tmp) / "metadata.dump"
            dump.write_bytes(archive.read_part(repo, backup, archive.PART_DB))
            engine = getattr(settings, "engine", None)
            if engine is not None:
                engine.dispose()
            archive.restore_database(target, dump)
        from airflow.utils.db import upgradedb

        upgradedb()
        out(f"  metadata DB restored into {target.describe()} and migrated")
        done["db"] = target.describe()
    if restore_config:
        names = archive.unpack_dir(archive.read_part(repo, backup, archive.PART_CONFIG), config_dir)
        out(f"  config: {len(names)} files into {config_dir}")
        done["config"] = names
    if restore_secrets:
        conns = json.loads(archive.read_part(repo, backup, archive.PART_CONNECTIONS))
        variables = json.loads(archive.read_part(repo, backup, archive.PART_VARIABLES))
        import_connections_and_variables(conns, variables)
        out(f"  connections: {', '.join(sorted(conns)) or 'none'}")
        out(f"  variables: {', '.join(sorted(variables)) or 'none'}")
        done["connections"], done["variables"] = sorted(conns), sorted(variables)
    return done


def import_connections_and_variables(conns: dict[str, dict], variables: dict[str, str]) -> None:
    """Replace connections and variables of the same ids (stored with this install's Fernet key)."""
    from airflow.models import Connection, Variable
    from airflow.utils.session import create_session

    with create_session() as session:
        for cid, fields in conns.items():
            session.query(Connection).filter(Connection.conn_id == cid).delete()
            session.flush()
            session.add(Connection(conn_id=cid, **{f: fields.get(f) for f in CONN_FIELDS}))
        for key, value in variables.items():
            session.query(Variable).filter(Variable.key == key).delete()
            session.flush()
            session.add(Variable(key=key, val=value))
