"""Issue 12: the backup DAG, the CLI and a migration sync make the same backup of a namespace.

They all run ``ys1000.backup.pipeline``; this compares what each wrote to the repository: the
manifest's fields, its counts per kind, the scope and status, and each PVC's volume record.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from af_helpers import copy_config, set_bucket, write_plan

YS1000 = str(Path(sys.executable).parent / "ys1000")


def shape(m: dict) -> dict:
    """What must agree between paths (ids, times, sizes and snapshot ids naturally differ)."""
    return {
        "fields": sorted(m),
        "status": m["status"],
        "scope": m["scope"],
        "namespaces": m["namespaces"],
        "counts": {
            k: v for k, v in m["counts"].items() if k not in ("Pod", "ReplicaSet", "EndpointSlice", "Endpoints")
        },
        "volumes": sorted(
            (
                v["namespace"],
                v["pvc"],
                v["method"],
                sorted(v),
                sorted(v.get("restic") or {}),
                (v.get("restic") or {}).get("total_files"),
                (v.get("restic") or {}).get("total_bytes"),
            )
            for v in m["volumes"]
        ),
        "warnings": len(m["warnings"]),
    }


@pytest.fixture
def app(source, make_namespace):
    from ys1000.kube import Kube
    from ys1000.kube.discovery import PVCS
    from ys1000.waiting import wait_until

    kube = Kube.from_kubeconfig(source.kubeconfig, name="source")
    ns = make_namespace(source)
    source.core.create_namespaced_config_map(ns, {"metadata": {"name": "cfg"}, "data": {"a": "1"}})
    source.core.create_namespaced_secret(ns, {"metadata": {"name": "pw"}, "data": {"p": "aHVudGVyMg=="}})
    kube.create(
        PVCS,
        {
            "metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        },
        ns,
    )
    pvc = wait_until(
        lambda: (c := kube.get(PVCS.path(ns, "data"))).get("status", {}).get("phase") == "Bound" and c,
        timeout=30,
        what="PVC bound",
    )
    pv = kube.get(f"/api/v1/persistentvolumes/{pvc['spec']['volumeName']}")
    root = Path(pv["spec"]["csi"]["volumeAttributes"]["path"])
    (root / "nested").mkdir()
    (root / "nested/a.txt").write_text("alpha\n")
    (root / "b.bin").write_bytes(os.urandom(300_000))
    return ns


def test_dag_cli_and_migration_write_the_same_manifest(
    app, sandbox, sandbox_s3, source, target, tmp_path, airflow_db, monkeypatch
):
    from airflow.utils.state import DagRunState

    from ys1000.airflow.bootstrap import ensure_pools
    from ys1000_dev.sandbox.connections import SANDBOX_REPO_KEY, sandbox_env
    from ys1000.airflow.dagfactory import build_dags
    from ys1000.config import load_config
    from ys1000.kube import Kube
    from ys1000.migration import MigrationSpec, sync
    from ys1000.repository import RepositoryConfig, open_repository

    ns = app
    bucket = sandbox_s3.new_bucket(f"shape-{uuid.uuid4().hex[:8]}")
    cfg = RepositoryConfig(
        type="s3",
        bucket=bucket,
        endpoint_url=sandbox_s3.endpoint_url,
        access_key=sandbox_s3.access_key,
        secret_key=sandbox_s3.secret_key,
        region=sandbox_s3.region,
    )

    # 1. the backup DAG (a plan of scope full, file copy)
    for key, value in sandbox_env(sandbox["dir"]).items():
        monkeypatch.setenv(key, value)
    cdir = copy_config(tmp_path / "config", plans=False)
    set_bucket(cdir, "sandbox-s3", bucket)
    write_plan(
        cdir,
        "shape.yaml",
        f"""
        kind: BackupPlan
        name: shape
        cluster: source
        repository: sandbox-s3
        namespaces: {{names: [{ns}]}}
        policy: {{scope: full, method: filecopy, schedule: {{type: on_demand}}, retention: 7d}}
        """,
    )
    monkeypatch.setenv("YS1000_CONFIG_DIR", str(cdir))
    ensure_pools(load_config(cdir))
    assert build_dags(cdir)["ys1000_backup__shape"].test().state == DagRunState.SUCCESS
    repo = open_repository(cfg, SANDBOX_REPO_KEY)
    (dag_entry,) = repo.list_backups("shape")
    by_dag = repo.manifest(dag_entry.backup_id).model_dump(mode="json")

    # 2. the CLI, into the same repository
    env = {**os.environ, **sandbox_s3.env(), "YS1000_REPO_KEY": SANDBOX_REPO_KEY}
    out = subprocess.run(
        [
            YS1000,
            "backup",
            "--kubeconfig",
            source.kubeconfig,
            "--repo",
            f"s3://{bucket}",
            "-n",
            ns,
            "--plan",
            "shape-cli",
            "--cluster-name",
            "source",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    by_cli = repo.manifest(json.loads(out.stdout)["backup_id"]).model_dump(mode="json")

    # 3. a migration's incremental sync
    result = sync(
        Kube.from_kubeconfig(source.kubeconfig, name="source"),
        Kube.from_kubeconfig(target.kubeconfig, name="target"),
        repo,
        cfg,
        MigrationSpec(
            plan="shape-mig",
            source_cluster="source",
            target_cluster="target",
            namespaces=[ns],
            namespace_mapping={ns: ns + "-m"},
        ),
        "shape-mig-1",
        run_id="shape",
    )
    by_migration = repo.manifest(result.backup_id).model_dump(mode="json")

    assert by_dag["volumes"] and by_dag["volumes"][0]["restic"]["total_bytes"] > 0
    assert shape(by_cli) == shape(by_dag)
    assert shape(by_migration) == shape(by_dag)
    target.core.delete_namespace(ns + "-m")
