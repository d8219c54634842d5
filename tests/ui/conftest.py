"""Fixtures of the UI tests: the metadata DB, a config with a local repository holding one backup,
the backup DAG synced to the DB with runs, and the ys1000 app behind Airflow's auth manager."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from ui_helpers import BACKUP_DAG, PLAN, REPO_KEY, make_config, make_run, sync_dags, write_backup, write_restore_report


@pytest.fixture(scope="session")
def airflow_db():
    from airflow.utils import db

    db.initdb()
    return True


@pytest.fixture(scope="module")
def ui_env(airflow_db, tmp_path_factory):
    """Config (``local`` repository with one backup of plan ui-plan), DAGs in the DB, and runs:
    a finished backup, a running one (with a ``progress`` XCom), a failed one, and a generic restore
    of the backup into ``target`` that failed for one object (its report in the repository)."""
    root = tmp_path_factory.mktemp("ui")
    repo_path = root / "repo"
    cdir = make_config(root / "config", repo_path)
    mp = pytest.MonkeyPatch()
    mp.setenv("YS1000_CONFIG_DIR", str(cdir))
    mp.setenv("AIRFLOW_VAR_YS1000_REPO_KEY", REPO_KEY)
    backup_id = f"{PLAN}-20250102030405"
    write_backup(repo_path, backup_id)
    sync_dags()
    done = "manual__2025-01-02T03:04:05+00:00"
    summary = {"backup_id": backup_id, "plan": PLAN, "status": "Completed", "objects": 4, "archive_bytes": 2048}
    make_run(
        BACKUP_DAG,
        done,
        state="success",
        tasks={t: "success" for t in ("preflight", "capture", "volumes", "verify", "commit", "retention")},
        xcoms={
            ("capture", "backup_id"): backup_id,
            ("commit", "return_value"): summary,
            ("verify", "return_value"): {"backup_id": backup_id, "ok": True},
        },
    )
    running = "manual__2025-01-03T00:00:00+00:00"
    make_run(
        BACKUP_DAG,
        running,
        state="running",
        tasks={"preflight": "success", "capture": "running"},
        xcoms={
            ("capture", "backup_id"): f"{PLAN}-20250103000000",
            ("capture", "progress"): {
                "phase": "resources",
                "objects_done": 40,
                "objects_total": 160,
                "bytes_done": 1024,
                "bytes_total": 4096,
            },
        },
    )
    failed = "manual__2025-01-01T00:00:00+00:00"
    make_run(BACKUP_DAG, failed, state="failed", tasks={"preflight": "failed"})
    restore = "manual__2025-01-04T00:00:00+00:00"
    restore_id = "restore-20250104000000-abcd"
    write_restore_report(repo_path, restore_id, backup_id)
    make_run(
        "ys1000_restore",
        restore,
        state="failed",
        tasks={"preflight": "success", "restore": "failed"},
        conf={"backup": backup_id, "repository": "local", "target_cluster": "target"},
        xcoms={("preflight", "backup_id"): backup_id, ("restore", "restore_id"): restore_id},
    )
    yield SimpleNamespace(
        config_dir=cdir,
        repo_path=repo_path,
        backup_id=backup_id,
        run_id=done,
        running_run_id=running,
        failed_run_id=failed,
        restore_run_id=restore,
        restore_id=restore_id,
    )
    mp.undo()


@pytest.fixture(scope="module")
def app(ui_env):
    """Airflow's auth manager (with its /auth app) and the ys1000 app mounted at /ys1000."""
    from fastapi import FastAPI

    from airflow.api_fastapi.app import init_auth_manager
    from ys1000.ui.plugin import LazyApp

    parent = FastAPI()
    init_auth_manager(parent)
    parent.mount("/ys1000", LazyApp("/ys1000"))
    return parent


@pytest.fixture
def client(app):
    from fastapi.testclient import TestClient

    with TestClient(app, follow_redirects=False) as c:
        yield c
