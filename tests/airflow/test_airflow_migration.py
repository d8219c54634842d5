"""The migration DAG against the sandbox: an incremental run, a cutover, and a failed cutover undone."""

from __future__ import annotations

import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
from af_helpers import copy_config, set_bucket, write_plan

from ys1000.waiting import wait_until


def _dep(ns: str, replicas: int, claim: str) -> dict:
    return {
        "metadata": {"name": "web"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [{"name": "c", "image": "nginx", "volumeMounts": [{"name": "d", "mountPath": "/d"}]}],
                    "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": claim}}],
                },
            },
        },
    }


def _pv_dir(core, ns: str, pvc: str) -> Path:
    c = core.read_namespaced_persistent_volume_claim(pvc, ns)
    return Path(core.read_persistent_volume(c.spec.volume_name).spec.csi.volume_attributes["path"])


@pytest.fixture
def mig(sandbox, sandbox_s3, source, target, tmp_path, airflow_db):
    from ys1000.airflow.bootstrap import ensure_pools
    from ys1000_dev.sandbox.connections import sandbox_env
    from ys1000.config import load_config

    mp = pytest.MonkeyPatch()
    for key, value in sandbox_env(sandbox["dir"]).items():
        mp.setenv(key, value)
    bucket = sandbox_s3.new_bucket(f"mg-{uuid.uuid4().hex[:10]}")
    cdir = copy_config(tmp_path / "config", plans=False)
    set_bucket(cdir, "sandbox-s3", bucket)
    ns = f"mg-{uuid.uuid4().hex[:8]}"
    source.core.create_namespace({"metadata": {"name": ns, "labels": {"ys1000.io/test": "true"}}})
    source.core.create_namespaced_persistent_volume_claim(
        ns,
        {
            "metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        },
    )
    wait_until(
        lambda: source.core.read_namespaced_persistent_volume_claim("data", ns).status.phase == "Bound",
        timeout=30,
        what="bound",
    )
    (_pv_dir(source.core, ns, "data") / "page.html").write_text("v1\n")
    source.apps.create_namespaced_deployment(ns, _dep(ns, 2, "data"))
    write_plan(
        cdir,
        "move.yaml",
        f"""
        kind: MigrationPlan
        name: move
        source_cluster: source
        target_cluster: target
        repository: sandbox-s3
        namespaces: {{names: [{ns}]}}
        namespace_mapping: {{{ns}: {ns}-moved}}
        storage_class_mapping: {{ys1000-local: ys1000-local-alt}}
        """,
    )
    mp.setenv("YS1000_CONFIG_DIR", str(cdir))
    ensure_pools(load_config(cdir))
    yield SimpleNamespace(config_dir=cdir, ns=ns, tns=f"{ns}-moved")
    mp.undo()


def _run(cdir, conf):
    from ys1000.airflow.dagfactory import build_dags

    return build_dags(cdir)["ys1000_migrate__move"].test(run_conf=conf)


def _states(run) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


def test_incremental_then_cutover(mig, source, target):
    from airflow.utils.state import DagRunState

    run = _run(mig.config_dir, {"mode": "incremental"})
    assert run.state == DagRunState.SUCCESS, _states(run)
    assert _states(run)["restore"] == "skipped" and _states(run)["undo"] == "skipped"
    assert (_pv_dir(target.core, mig.tns, "data") / "page.html").read_text() == "v1\n"
    assert target.apps.list_namespaced_deployment(mig.tns).items == []  # not started in the target

    (_pv_dir(source.core, mig.ns, "data") / "page.html").write_text("v2\n")
    run = _run(mig.config_dir, {"mode": "cutover"})
    assert run.state == DagRunState.SUCCESS, _states(run)
    assert (_pv_dir(target.core, mig.tns, "data") / "page.html").read_text() == "v2\n"
    assert source.apps.read_namespaced_deployment("web", mig.ns).spec.replicas == 0
    assert target.apps.read_namespaced_deployment("web", mig.tns).spec.replicas == 2
    assert _states(run)["undo"] == "skipped"


def test_failed_cutover_is_undone(mig, source, target, monkeypatch):
    from airflow.utils.state import DagRunState

    from ys1000 import migration
    from ys1000.restore import ConflictError

    def broken_restore(*args, **kwargs):
        raise ConflictError(["Service web (simulated failure during cutover)"])

    monkeypatch.setattr(migration, "restore_resources", broken_restore)
    run = _run(mig.config_dir, {"mode": "cutover"})
    assert run.state == DagRunState.FAILED
    states = _states(run)
    assert states["restore"] == "failed" and states["undo"] == "success" and states["failed"] == "failed", states
    assert source.apps.read_namespaced_deployment("web", mig.ns).spec.replicas == 2  # back up
    assert target.apps.list_namespaced_deployment(mig.tns).items == []  # no half-started app
