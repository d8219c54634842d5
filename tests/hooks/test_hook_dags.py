"""DAG structure of plans with hooks and consistency targets (no cluster needed)."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest
from dag_helpers import chain_order

REPO = Path(__file__).resolve().parents[2]

BACKUP = """
kind: BackupPlan
name: shop-backup
cluster: source
repository: sandbox-s3
namespaces: {names: [shop]}
policy: resources-every-3h
hooks:
  - {phase: PreBackup, type: image, namespace: shop, image: busybox, command: [echo, pre]}
  - {phase: PostBackup, type: ansible, namespace: shop, playbook_file: wordpress/rewrite-url.yml}
consistency:
  - {type: mariadb, service: mysql, secret: {name: mysql-credentials}, max_lock: 5m}
"""

ONLY_CONSISTENCY = """
kind: BackupPlan
name: db-backup
cluster: source
repository: sandbox-s3
namespaces: {names: [db]}
policy: resources-every-3h
consistency:
  - {type: postgresql, host: 10.0.0.5, secret: {name: pg}}
"""

RESTORE = """
kind: RestorePlan
name: shop-restore
backup: {plan: shop-backup}
target_cluster: target
repository: sandbox-s3
hooks:
  - {name: wordpress-url, phase: PostRestore, type: ansible, namespace: shop, playbook_file: wordpress/rewrite-url.yml}
"""


@pytest.fixture
def bag(tmp_path, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    config = tmp_path / "config"
    shutil.copytree(REPO / "config", config)
    for name, text in (("shop-backup", BACKUP), ("db-backup", ONLY_CONSISTENCY), ("shop-restore", RESTORE)):
        (config / "plans" / f"{name}.yaml").write_text(textwrap.dedent(text).lstrip())
    monkeypatch.setenv("YS1000_CONFIG_DIR", str(config))
    dags = REPO / "dags"
    return DagBag(dag_folder=str(dags), bundle_path=dags)


def test_backup_dag_with_hooks_and_consistency(bag):
    assert bag.import_errors == {}
    dag = bag.dags["ys1000_backup__shop-backup"]
    assert chain_order(dag) == [
        "preflight",
        "pre_backup_hooks",
        "quiesce",
        "capture",
        "volumes",
        "resume",
        "post_backup_hooks",
        "verify",
        "commit",
        "retention",
    ]
    t = dag.task_dict
    assert t["resume"].trigger_rule == "all_done"  # always resumes
    # a failed capture still stops the run after the resume: post hooks need the copy too
    assert t["post_backup_hooks"].upstream_task_ids == {"resume", "volumes"}
    assert t["pre_backup_hooks"].phase == "PreBackup" and t["post_backup_hooks"].phase == "PostBackup"
    assert {task.pool for task in dag.tasks} == {"ys1000_cluster_source"}


def test_backup_dag_with_consistency_only(bag):
    dag = bag.dags["ys1000_backup__db-backup"]
    assert chain_order(dag) == ["preflight", "quiesce", "capture", "volumes", "resume", "verify", "commit", "retention"]
    assert dag.task_dict["verify"].upstream_task_ids == {"resume", "volumes"}


def test_restore_plan_dag_with_hooks(bag):
    dag = bag.dags["ys1000_restore__shop-restore"]
    assert chain_order(dag) == ["preflight", "restore", "volumes", "workloads", "post_restore_hooks"]
    assert {task.pool for task in dag.tasks} == {"ys1000_cluster_target"}


def test_plans_without_hooks_keep_their_tasks(bag):
    assert chain_order(bag.dags["ys1000_backup__wordpress-backup"]) == [
        "preflight",
        "capture",
        "volumes",
        "verify",
        "commit",
        "retention",
    ]
    assert chain_order(bag.dags["ys1000_restore__wordpress-restore"]) == [
        "preflight",
        "restore",
        "volumes",
        "workloads",
    ]
