"""Self-backup (F29): the ys1000_self_backup DAG in one Airflow install, then ``ys1000
self-restore`` into a fresh AIRFLOW_HOME: DAGs, connections (working) and job history are back.
Each install is a subprocess with its own AIRFLOW_HOME (SQLite), so the session's Airflow is
untouched."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("sb_script.py")
KEY = "self-backup-test-key"


def _env(home: Path, config: Path) -> dict[str, str]:
    """An install of its own; each with its own Fernet key (restored secrets are re-encrypted)."""
    from cryptography.fernet import Fernet

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "YS1000_", "AWS_"))}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "YS1000_CONFIG_DIR": str(config),
        }
    )
    return env


def _run(cmd: list[str], env: dict, timeout: int = 240) -> str:
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    return proc.stdout


def _lines(out: str, tag: str) -> list[str]:
    return [line[len(tag) + 1 :] for line in out.splitlines() if line.startswith(tag + " ")]


@pytest.mark.timeout(600)
def test_self_backup_then_self_restore_on_fresh_install(tmp_path, s3, bucket):
    import yaml

    config = tmp_path / "config-a"
    shutil.copytree(REPO / "config", config)
    repos = yaml.safe_load((config / "repositories.yaml").read_text())
    repos["sandbox-s3"]["bucket"] = bucket
    (config / "repositories.yaml").write_text(yaml.safe_dump(repos, sort_keys=False))
    (config / "reports.yaml").unlink()  # no channels: the report run only adds history
    (config / "self_backup.yaml").write_text("repository: sandbox-s3\nkeep: 2\n")
    (config / "plans" / "marker.txt").write_text("restored config marker\n")

    # install A: history + self-backup (twice: retention keeps 2)
    env_a = _env(tmp_path / "home-a", config)
    s3_info = {
        "endpoint_url": s3.endpoint_url,
        "access_key": s3.access_key,
        "secret_key": s3.secret_key,
        "region": s3.region,
        "key": KEY,
    }
    out = _run([sys.executable, str(SCRIPT), "backup", json.dumps(s3_info)], env_a)
    assert _lines(out, "RUN") == ["success", "success"], out
    dags_a = set(json.loads(_lines(out, "DAGS")[0]))
    assert {"ys1000_report", "ys1000_self_backup", "ys1000_backup__wordpress-backup"} <= dags_a

    # what is in the bucket: encrypted parts, no plaintext secret
    from ys1000.repository import RepositoryConfig, open_repository
    from ys1000.selfbackup import archive, keys

    repo = open_repository(
        RepositoryConfig(
            type="s3",
            bucket=bucket,
            endpoint_url=s3.endpoint_url,
            access_key=s3.access_key,
            secret_key=s3.secret_key,
            region=s3.region,
        ),
        KEY,
    )
    [sb] = archive.list_self_backups(repo)
    assert set(sb.parts) == {"metadata-db", "config", "connections", "variables"}
    assert sb.meta["db_kind"] == "sqlite" and sb.meta["connections"] == 2 and sb.meta["dag_runs"] >= 2
    for obj in repo.store.list(keys.SELF_BACKUPS):
        raw = repo.store.get(obj.key)
        assert b"planted-conn-pw" not in raw and s3.secret_key.encode() not in raw and b"SQLite format" not in raw
    conns = json.loads(archive.read_part(repo, sb, "connections"))
    assert conns["ys1000_extra_http"]["password"] == "planted-conn-pw"

    # install B: fresh home, empty config dir; self-restore by URL (no connection exists yet)
    config_b = tmp_path / "config-b"
    env_b = _env(tmp_path / "home-b", config_b)
    _run([sys.executable, "-m", "airflow", "db", "migrate"], env_b)
    env_r = {
        **env_b,
        "YS1000_REPO_KEY": KEY,
        "AWS_ACCESS_KEY_ID": s3.access_key,
        "AWS_SECRET_ACCESS_KEY": s3.secret_key,
    }
    restore_cmd = (
        "import sys, argparse; from ys1000.cli import self_backup as m; p = argparse.ArgumentParser(); "
        "m.register(p.add_subparsers(dest='c')); a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a))"
    )
    out = _run(
        [
            sys.executable,
            "-c",
            restore_cmd,
            "self-restore",
            "--repository",
            f"s3://{bucket}",
            "--endpoint-url",
            s3.endpoint_url,
            "--config-dir",
            str(config_b),
        ],
        env_r,
    )
    assert f"self-backup {sb.backup_id}" in out and "connections: ys1000_extra_http, ys1000_s3" in out, out
    assert (config_b / "plans" / "marker.txt").read_text() == "restored config marker\n"
    assert (config_b / "self_backup.yaml").exists() and (config_b / "repositories.yaml").exists()

    out = _run([sys.executable, str(SCRIPT), "check"], env_b)
    assert dags_a <= set(json.loads(_lines(out, "DAGS")[0]))  # the DAGs are back
    runs = json.loads(_lines(out, "RUNS")[0])  # the job history is back
    assert "ys1000_report/success" in runs and any(r.startswith("ys1000_self_backup/") for r in runs)
    assert _lines(out, "CONN") == ["example.internal planted-conn-pw"]
    assert _lines(out, "VAR") == ["42"]
    assert _lines(out, "RUN") == ["success"], out  # the restored S3 connection and key Variable work
    assert [b.backup_id for b in archive.list_self_backups(repo)][0] == sb.backup_id
    assert len(archive.list_self_backups(repo)) == 2


def test_self_backup_parts_are_bound_to_their_place(tmp_path):
    from ys1000.repository import DecryptionError, RepositoryConfig, open_repository
    from ys1000.selfbackup import archive, keys

    repo = open_repository(RepositoryConfig(type="local", path=str(tmp_path / "r")), KEY, create=True)
    t0 = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
    for i in range(3):
        archive.write_self_backup(
            repo,
            f"self-2025010100000{i}",
            {"config": b"abc", "variables": b"{}"},
            {"db_kind": "sqlite"},
            created=t0 + dt.timedelta(hours=i),
        )
    assert [b.backup_id for b in archive.list_self_backups(repo)][-1] == "self-20250101000002"
    assert archive.prune_self_backups(repo, 2) == ["self-20250101000000"]
    latest = archive.get_self_backup(repo)
    assert archive.read_part(repo, latest, "config") == b"abc"
    # a part copied over another one fails authentication
    repo.store.put(
        keys.part_key(latest.backup_id, "variables"), repo.store.get(keys.part_key(latest.backup_id, "config"))
    )
    latest.parts["variables"].pop("sha256")
    with pytest.raises(DecryptionError):
        archive.read_part(repo, latest, "variables")
    with pytest.raises(archive.SelfBackupError, match="does not exist"):
        archive.get_self_backup(repo, "self-19990101000000")


def test_db_url_detection():
    from ys1000.selfbackup.archive import DbTarget, SelfBackupError

    assert DbTarget.from_sqlalchemy_url("sqlite:////opt/airflow/airflow.db").path == "/opt/airflow/airflow.db"
    pg = DbTarget.from_sqlalchemy_url("postgresql+psycopg2://airflow:p%40ss@db:5432/airflow")
    assert (pg.kind, pg.url, pg.password) == ("postgresql", "postgresql://airflow@db:5432/airflow", "p@ss")
    with pytest.raises(SelfBackupError, match="not supported"):
        DbTarget.from_sqlalchemy_url("mysql://x@y/z")
