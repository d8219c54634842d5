"""Helpers of the UI tests: a config with a local repository, a backup made by the engine, DAGs
synced to the metadata DB, runs with task states and XComs, and JWTs of the auth manager."""

from __future__ import annotations

import shutil
import textwrap
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
PLAN = "ui-plan"
BACKUP_DAG = f"ys1000_backup__{PLAN}"
REPO_KEY = "ys1000-ui-test-key"
SECRET_VALUE = "s3cr3t-Pa55word-UI"  # planted in the Secret; must never show up masked


def make_config(dest: Path, repo_path: Path) -> Path:
    """The example config with ``local`` pointing at ``repo_path`` and one backup plan on it."""
    shutil.copytree(REPO / "config", dest)
    shutil.rmtree(dest / "plans")
    (dest / "plans").mkdir()
    repos = yaml.safe_load((dest / "repositories.yaml").read_text())
    repos["local"] = {"type": "local", "path": str(repo_path), "key": {"variable": "ys1000_repo_key"}}
    (dest / "repositories.yaml").write_text(yaml.safe_dump(repos, sort_keys=False))
    (dest / "plans" / f"{PLAN}.yaml").write_text(
        textwrap.dedent(f"""\
        kind: BackupPlan
        name: {PLAN}
        cluster: source
        repository: local
        namespaces: {{names: [demo]}}
        policy: {{scope: resources, method: filecopy, schedule: {{type: on_demand}}, retention: 7d}}
        """)
    )
    return dest


def secret_doc() -> dict:
    import base64
    import json

    data = {"password": base64.b64encode(SECRET_VALUE.encode()).decode()}
    applied = json.dumps(
        {"apiVersion": "v1", "kind": "Secret", "data": data, "metadata": {"name": "db-pass", "namespace": "demo"}}
    )
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": "db-pass",
            "namespace": "demo",
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": applied},
        },
        "data": data,
        "stringData": {"plain": SECRET_VALUE},
    }


def write_backup(repo_path: Path, backup_id: str, plan: str = PLAN) -> None:
    """A complete backup (Namespace, ConfigMap, Secret, Deployment) made with the engine."""
    from ys1000.repository import RepositoryConfig, open_repository

    repo = open_repository(RepositoryConfig(type="local", path=str(repo_path)), REPO_KEY, create=True)
    with repo.begin_backup(backup_id, plan) as w:
        w.add(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "demo"}},
            group="",
            version="v1",
            resource="namespaces",
            kind="Namespace",
        )
        w.add(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "app-config", "namespace": "demo"},
                "data": {"greeting": "hello"},
            },
            group="",
            version="v1",
            resource="configmaps",
            kind="ConfigMap",
        )
        w.add(secret_doc(), group="", version="v1", resource="secrets", kind="Secret")
        w.add(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "web", "namespace": "demo"},
                "spec": {"replicas": 1},
            },
            group="apps",
            version="v1",
            resource="deployments",
            kind="Deployment",
        )
        w.commit(cluster_name="source", kubernetes_version="v1.33.0", namespaces=["demo"], scope="resources")


def write_restore_report(repo_path: Path, restore_id: str, backup_id: str) -> None:
    """The per-object report a restore leaves in the repository (one object failed)."""
    from ys1000.repository import RepositoryConfig, open_repository

    repo = open_repository(RepositoryConfig(type="local", path=str(repo_path)), REPO_KEY)
    items = [
        {"kind": "Namespace", "namespace": None, "name": "demo", "action": "created", "reason": ""},
        {"kind": "ConfigMap", "namespace": "demo", "name": "app-config", "action": "skipped", "reason": "exists"},
        {
            "kind": "Deployment",
            "namespace": "demo",
            "name": "web",
            "action": "failed",
            "reason": "admission webhook denied the request",
        },
    ]
    repo.save_restore_report(
        restore_id,
        {
            "restore_id": restore_id,
            "backup_id": backup_id,
            "dry_run": False,
            "status": "PartiallyFailed",
            "started": "2025-01-04T00:00:01+00:00",
            "finished": "2025-01-04T00:00:09+00:00",
            "counts": {"created": 1, "skipped": 1, "failed": 1},
            "items": items,
        },
    )


def sync_dags() -> None:
    """Parse dags/ (with the current YS1000_CONFIG_DIR) and write the DAGs to the metadata DB."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db
    from airflow.utils.session import create_session

    manager = DagBundlesManager()
    with create_session() as session:
        manager.sync_bundles_to_db(session=session)
    for bundle in manager.get_all_dag_bundles():
        if not bundle.is_initialized:
            bundle.initialize()
        bag = BundleDagBag(dag_folder=bundle.path, bundle_path=bundle.path, bundle_name=bundle.name)
        sync_bag_to_db(bag, bundle.name, bundle.version)


def make_run(
    dag_id: str,
    run_id: str,
    *,
    state: str,
    tasks: dict[str, str],
    xcoms: dict[tuple[str, str], Any] | None = None,
    conf: dict | None = None,
) -> None:
    """A run of ``dag_id`` with the given task states and XComs (replaced if it exists)."""
    from sqlalchemy import delete

    from airflow.models.dagrun import DagRun
    from airflow.models.serialized_dag import SerializedDagModel
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunTriggeredByType, DagRunType

    now = datetime.now(timezone.utc)
    with create_session() as session:
        session.execute(delete(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))
        dag = SerializedDagModel.get_dag(dag_id, session=session)
        assert dag is not None, f"{dag_id} is not in the metadata DB"
        dr = dag.create_dagrun(
            run_id=run_id,
            run_after=now,
            run_type=DagRunType.MANUAL,
            conf=conf or {},
            triggered_by=DagRunTriggeredByType.TEST,
            state=DagRunState(state),
            start_date=now,
            session=session,
        )
        if state in ("success", "failed"):
            dr.end_date = now
        for ti in dr.get_task_instances(session=session):
            if ti.task_id in tasks:
                ti.state = tasks[ti.task_id]
                ti.start_date, ti.end_date = now, (now if tasks[ti.task_id] in ("success", "failed") else None)
        session.flush()
        for (task_id, key), value in (xcoms or {}).items():
            XComModel.set(key=key, value=value, task_id=task_id, dag_id=dag_id, run_id=run_id, session=session)


def jwt_for(username: str, role: str) -> str:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return get_auth_manager().generate_jwt(SimpleAuthManagerUser(username=username, role=role))
