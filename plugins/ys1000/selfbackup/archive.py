"""Self-backup archive (no Airflow import at module level): dump and restore the metadata DB,
pack the config directory, and store/read encrypted parts under ``self-backups/``.

Encryption: every part is sealed with the repository's streaming AEAD (``encrypt_bytes``) under a
subkey derived from the repository's archive key by HKDF (label ``ys1000/self-backup/v1``) and
bound to the repository id, self-backup id and part name as associated data — a part moved to
another place does not decrypt. The manifest (written last) holds no secret: ids, sizes,
checksums of the ciphertexts, the DB kind and the Airflow version.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import shutil
import sqlite3
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from ys1000.repository.crypto import decrypt_bytes, encrypt_bytes, hkdf
from ys1000.repository.errors import ObjectNotFound
from ys1000.selfbackup import keys

INFO_SELF_BACKUP = b"ys1000/self-backup/v1"
FORMAT = "ys1000-self-backup"
PART_DB = "metadata-db"
PART_CONFIG = "config"
PART_CONNECTIONS = "connections"
PART_VARIABLES = "variables"


class SelfBackupError(RuntimeError):
    pass


# -- database ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DbTarget:
    """A metadata database: ``sqlite`` (a file) or ``postgresql`` (libpq URL for pg_dump/psql)."""

    kind: str
    path: str | None = None  # sqlite
    url: str | None = None  # postgresql, without the driver suffix
    password: str | None = None

    @classmethod
    def from_sqlalchemy_url(cls, url: str) -> "DbTarget":
        parts = urlsplit(url)
        scheme = parts.scheme.split("+", 1)[0]
        if scheme == "sqlite":
            path = unquote(url.split(":///", 1)[1]) if ":///" in url else ""
            path = path.split("?", 1)[0]
            if not path or path == ":memory:":
                raise SelfBackupError(f"the SQLite metadata DB URL {url!r} names no file")
            return cls("sqlite", path=path)
        if scheme in ("postgresql", "postgres"):
            password = unquote(parts.password) if parts.password else None
            netloc = parts.hostname or ""
            if parts.username:
                netloc = f"{unquote(parts.username)}@{netloc}"
            if parts.port:
                netloc += f":{parts.port}"
            return cls("postgresql", url=f"postgresql://{netloc}{parts.path}", password=password)
        raise SelfBackupError(f"metadata DB {scheme!r} is not supported by self-backup (supported: sqlite, postgresql)")

    def describe(self) -> str:
        return f"sqlite {self.path}" if self.kind == "sqlite" else f"postgresql {self.url}"

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.password:
            env["PGPASSWORD"] = self.password
        return env


def dump_database(db: DbTarget, dest: Path) -> Path:
    """A consistent copy of the metadata DB: the SQLite online backup API, or ``pg_dump``
    (custom format). Returns the dump file."""
    dest = Path(dest)
    if db.kind == "sqlite":
        assert db.path is not None  # a SQLite target has one
        if not Path(db.path).exists():
            raise SelfBackupError(f"the SQLite metadata DB {db.path} does not exist")
        src = sqlite3.connect(f"file:{db.path}?mode=ro", uri=True)
        try:
            out = sqlite3.connect(dest)
            with out:
                src.backup(out)
            out.close()
        finally:
            src.close()
        return dest
    cmd = ["pg_dump", "--format=custom", "--no-owner", "--no-privileges", f"--file={dest}", f"--dbname={db.url}"]
    _run(cmd, db, "pg_dump")
    return dest


def restore_database(db: DbTarget, dump: Path) -> None:
    """Replace the metadata DB's content with ``dump`` (same kind as ``db``)."""
    if db.kind == "sqlite":
        assert db.path is not None  # a SQLite target has one
        Path(db.path).parent.mkdir(parents=True, exist_ok=True)
        src = sqlite3.connect(f"file:{dump}?mode=ro", uri=True)
        try:
            out = sqlite3.connect(db.path)
            with out:
                src.backup(out)
            out.close()
        finally:
            src.close()
        return
    cmd = [
        "pg_restore",
        "--clean",
        "--if-exists",
        "--no-owner",
        "--no-privileges",
        "--single-transaction",
        f"--dbname={db.url}",
        str(dump),
    ]
    _run(cmd, db, "pg_restore")


def _run(cmd: list[str], db: DbTarget, what: str) -> None:
    if shutil.which(cmd[0]) is None:
        raise SelfBackupError(
            f"{what} is not installed (PostgreSQL client tools are needed for a PostgreSQL metadata DB)"
        )
    proc = subprocess.run(cmd, env=db._env(), capture_output=True, text=True)
    if proc.returncode != 0:
        err = proc.stderr.strip().replace(db.password or "\0", "***")
        raise SelfBackupError(f"{what} failed ({db.describe()}): {err[-800:]}")


def db_rows(db: DbTarget, dump: Path, sql: str) -> list[tuple]:
    """Rows of a query against the dump (SQLite) or the live DB (PostgreSQL, psycopg)."""
    if db.kind == "sqlite":
        con = sqlite3.connect(f"file:{dump}?mode=ro", uri=True)
        try:
            return list(con.execute(sql))
        finally:
            con.close()
    import psycopg

    assert db.url is not None  # a PostgreSQL target has one
    with psycopg.connect(db.url, password=db.password) if db.password else psycopg.connect(db.url) as pg:
        return list(pg.execute(sql))


# -- config directory ------------------------------------------------------------------------------


def pack_dir(root: Path) -> bytes:
    """A tar.gz of ``root`` (files only, relative names; caches skipped)."""
    buf = io.BytesIO()
    root = Path(root)
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path in sorted(root.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                tar.add(path, arcname=str(path.relative_to(root)), recursive=False)
    return buf.getvalue()


def unpack_dir(data: bytes, dest: Path) -> list[str]:
    """Extract a ``pack_dir`` archive into ``dest`` (existing files are overwritten)."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    names = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        members = [m for m in tar.getmembers() if m.isfile()]
        tar.extractall(dest, members=members, filter="data")
        names = [m.name for m in members]
    return names


# -- the repository side -------------------------------------------------------------------------


@dataclass
class SelfBackup:
    backup_id: str
    created: dt.datetime
    parts: dict[str, dict[str, Any]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_manifest(cls, data: dict) -> "SelfBackup":
        return cls(
            data["id"],
            dt.datetime.fromisoformat(data["created"]),
            data.get("parts", {}),
            {k: v for k, v in data.items() if k not in ("id", "created", "parts")},
        )


def _key(repo) -> bytes:
    return hkdf(repo.key.archive_key, INFO_SELF_BACKUP)


def _aad(repo, backup_id: str, part: str) -> bytes:
    return f"ys1000-self-backup\0{repo.id}\0{backup_id}\0{part}".encode()


def new_backup_id(now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.timezone.utc)
    return f"self-{now.astimezone(dt.timezone.utc):%Y%m%d%H%M%S}"


def write_self_backup(
    repo,
    backup_id: str,
    parts: dict[str, bytes],
    meta: dict[str, Any] | None = None,
    *,
    created: dt.datetime | None = None,
) -> SelfBackup:
    """Encrypt and upload ``parts``, then the manifest (last: its presence means complete)."""
    created = created or dt.datetime.now(dt.timezone.utc)
    key = _key(repo)
    info: dict[str, dict[str, Any]] = {}
    for name, data in parts.items():
        sealed = encrypt_bytes(key, data, _aad(repo, backup_id, name))
        repo.store.put(keys.part_key(backup_id, name), sealed)
        info[name] = {"size": len(data), "stored": len(sealed), "sha256": hashlib.sha256(sealed).hexdigest()}
    manifest = {
        "format": FORMAT,
        "version": 1,
        "id": backup_id,
        "created": created.isoformat(),
        "parts": info,
        **(meta or {}),
    }
    repo.store.put(keys.manifest_key(backup_id), json.dumps(manifest, indent=2).encode())
    return SelfBackup.from_manifest(manifest)


def list_self_backups(repo) -> list[SelfBackup]:
    """Complete self-backups (with a manifest), oldest first."""
    out = []
    for obj in repo.store.list(keys.SELF_BACKUPS):
        if obj.key.endswith("/" + keys.MANIFEST_NAME):
            try:
                out.append(SelfBackup.from_manifest(json.loads(repo.store.get(obj.key))))
            except (ValueError, KeyError, ObjectNotFound):
                continue
    return sorted(out, key=lambda b: (b.created, b.backup_id))


def get_self_backup(repo, backup_id: str | None = None) -> SelfBackup:
    """``backup_id`` or the latest complete self-backup."""
    if backup_id and backup_id != "latest":
        try:
            return SelfBackup.from_manifest(json.loads(repo.store.get(keys.manifest_key(backup_id))))
        except ObjectNotFound:
            raise SelfBackupError(
                f"self-backup {backup_id!r} does not exist (or is incomplete) in {repo.store.describe()}"
            ) from None
    backups = list_self_backups(repo)
    if not backups:
        raise SelfBackupError(f"no self-backup in {repo.store.describe()} (under {keys.SELF_BACKUPS})")
    return backups[-1]


def read_part(repo, backup: SelfBackup, part: str) -> bytes:
    """Download, check and decrypt one part."""
    sealed = repo.store.get(keys.part_key(backup.backup_id, part))
    expected = (backup.parts.get(part) or {}).get("sha256")
    if expected and hashlib.sha256(sealed).hexdigest() != expected:
        raise SelfBackupError(f"self-backup {backup.backup_id} part {part}: checksum mismatch")
    return decrypt_bytes(_key(repo), sealed, _aad(repo, backup.backup_id, part), name=f"{backup.backup_id}/{part}")


def delete_self_backup(repo, backup_id: str) -> None:
    keys_ = [o.key for o in repo.store.list(keys.self_backup_prefix(backup_id))]
    # manifest first: a half-deleted backup is incomplete, never restored from
    for k in sorted(keys_, key=lambda k: 0 if k.endswith(keys.MANIFEST_NAME) else 1):
        repo.store.delete(k)


def prune_self_backups(repo, keep: int) -> list[str]:
    backups = list_self_backups(repo)
    gone = [b.backup_id for b in backups[:-keep]] if keep > 0 else []
    for bid in gone:
        delete_self_backup(repo, bid)
    return gone
