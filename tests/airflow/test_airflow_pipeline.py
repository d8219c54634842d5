"""Backup and restore DAGs against the sandbox, error mapping and cancelling.

One namespace with the sample app per module, one fresh bucket; connections and the key
Variable come from ``AIRFLOW_CONN_*``/``AIRFLOW_VAR_*`` built from the sandbox (no DB writes).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest
from af_helpers import copy_config, set_bucket, write_plan

PLAN = "app-backup"


def plan_text(name: str, namespace: str, **limits: int) -> str:
    lim = ("limits: {" + ", ".join(f"{k}: {v}" for k, v in limits.items()) + "}\n") if limits else ""
    return (
        f"kind: BackupPlan\nname: {name}\ncluster: source\nrepository: sandbox-s3\n"
        f"namespaces: {{names: [{namespace}]}}\n"
        "policy: {scope: resources, method: filecopy, schedule: {type: on_demand}, retention: 7d}\n" + lim
    )


@pytest.fixture(scope="module")
def env(sandbox, sandbox_s3, source, tmp_path_factory, airflow_db):
    """Sandbox connections, a fresh bucket, a namespace with the sample app, a config dir."""
    from kubernetes import client

    from ys1000.airflow.bootstrap import ensure_pools
    from ys1000_dev.sandbox.connections import sandbox_env
    from ys1000.config import load_config
    from ys1000.kube import Kube
    from ys1000_dev.sandbox import sampleapp

    mp = pytest.MonkeyPatch()
    for key, value in sandbox_env(sandbox["dir"]).items():
        mp.setenv(key, value)
    bucket = sandbox_s3.new_bucket(f"af-{uuid.uuid4().hex[:10]}")
    cdir = copy_config(tmp_path_factory.mktemp("af") / "config", plans=False)
    set_bucket(cdir, "sandbox-s3", bucket)
    ns = f"af-{uuid.uuid4().hex[:8]}"
    source.core.create_namespace({"metadata": {"name": ns, "labels": {"ys1000.io/test": "true"}}})
    sampleapp.deploy(Kube.from_kubeconfig(source.kubeconfig, name="source"), ns)
    write_plan(cdir, f"{PLAN}.yaml", plan_text(PLAN, ns))
    write_plan(cdir, "tiny-limits.yaml", plan_text("tiny-limits", ns, max_pods=1))
    write_plan(
        cdir,
        "app-restore.yaml",
        f"""
        kind: RestorePlan
        name: app-restore
        backup: {{plan: {PLAN}, id: latest}}
        target_cluster: target
        repository: sandbox-s3
        namespace_mapping: {{{ns}: {ns}-dry}}
        dry_run: true
        """,
    )
    mp.setenv("YS1000_CONFIG_DIR", str(cdir))  # dag.test() re-parses dags/ with it
    ensure_pools(load_config(cdir))
    yield SimpleNamespace(config_dir=cdir, bucket=bucket, namespace=ns)
    mp.undo()
    try:
        source.core.delete_namespace(ns)
    except client.exceptions.ApiException:
        pass


def open_repo(env, sandbox_s3):
    from ys1000_dev.sandbox.connections import SANDBOX_REPO_KEY
    from ys1000.repository import RepositoryConfig, open_repository

    cfg = RepositoryConfig(
        type="s3",
        bucket=env.bucket,
        endpoint_url=sandbox_s3.endpoint_url,
        access_key=sandbox_s3.access_key,
        secret_key=sandbox_s3.secret_key,
        region=sandbox_s3.region,
    )
    return open_repository(cfg, SANDBOX_REPO_KEY)


def keys_of(repo, backup_id: str) -> list[str]:
    from ys1000.repository import layout

    return [o.key for o in repo.store.list(layout.backup_prefix(backup_id))]


class FakeTI:
    def __init__(self):
        self.xcom: dict = {}

    def xcom_push(self, key, value):
        self.xcom[key] = value

    def xcom_pull(self, task_ids=None, key="return_value", map_indexes=None):
        return None  # no upstream task ran: a backup without PVCs, as the tests' plans select none


def context(when: datetime | None = None, run_type: str = "scheduled", run_id: str | None = None) -> dict:
    when = when or datetime.now(timezone.utc).replace(microsecond=0)
    run_id = run_id or f"{run_type}__{when.isoformat()}"
    return {
        "logical_date": when,
        "ti": FakeTI(),
        "dag_run": SimpleNamespace(run_id=run_id, dag_id="test", run_after=when, run_type=run_type),
    }


def test_backup_dag_then_generic_restore(env, sandbox_s3, source, target):
    from airflow.utils.state import DagRunState

    from ys1000.airflow.dagfactory import build_dags

    dags = build_dags(env.config_dir)
    run = dags[f"ys1000_backup__{PLAN}"].test()
    assert run.state == DagRunState.SUCCESS

    repo = open_repo(env, sandbox_s3)
    backups = repo.list_backups(PLAN)
    assert len(backups) == 1 and backups[0].status == "Completed"
    bid = backups[0].backup_id
    assert bid.startswith(f"{PLAN}-")
    result = repo.verify(bid)  # a finalized, verified backup
    m = repo.manifest(bid)
    assert result.ok and result.objects == m.total and m.counts.get("Deployment") == 1
    assert env.namespace in m.namespaces

    new_ns = f"{env.namespace}-r"
    run = dags["ys1000_restore"].test(
        run_conf={
            "plan": PLAN,
            "repository": "sandbox-s3",
            "target_cluster": "target",
            "namespace_mapping": {env.namespace: new_ns},
            "remove_node_constraints": True,
        }
    )
    try:
        assert run.state == DagRunState.SUCCESS
        core = target.core
        src = source.core
        assert core.read_namespace(new_ns).metadata.labels["ys1000.io/backup"] == bid
        assert {d.metadata.name for d in target.apps.list_namespaced_deployment(new_ns).items} == {"wordpress"}
        assert {s.metadata.name for s in target.apps.list_namespaced_stateful_set(new_ns).items} == {"mysql"}
        secrets = {s.metadata.name for s in core.list_namespaced_secret(new_ns).items}
        assert "mysql-pass" in secrets
        assert (
            core.read_namespaced_config_map("wp-config", new_ns).data
            == src.read_namespaced_config_map("wp-config", env.namespace).data
        )
    finally:
        try:
            target.core.delete_namespace(new_ns)
        except Exception:
            pass


def test_limit_exceeded_fails_without_retry(env):
    from airflow.sdk.exceptions import AirflowFailException

    from ys1000.airflow.operators import BackupPreflightOperator

    op = BackupPreflightOperator(task_id="preflight", plan="tiny-limits", config_dir=str(env.config_dir))
    with pytest.raises(AirflowFailException, match="limit of 1"):
        op.execute(context())


def test_missing_connection_names_it(env, monkeypatch):
    from airflow.sdk.exceptions import AirflowFailException

    from ys1000.airflow.operators import BackupPreflightOperator

    monkeypatch.delenv("AIRFLOW_CONN_YS1000_SOURCE")
    op = BackupPreflightOperator(task_id="preflight", plan=PLAN, config_dir=str(env.config_dir))
    with pytest.raises(AirflowFailException, match="ys1000_source"):
        op.execute(context())


def test_transient_errors_are_retried():
    from airflow.sdk.exceptions import AirflowFailException

    from ys1000.airflow.errors import engine_errors, is_permanent
    from ys1000.backup import LimitExceeded
    from ys1000.kube import KubeError
    from ys1000.repository import ChecksumError, StorageError, WrongKeyError

    assert not is_permanent(KubeError(503, "ServiceUnavailable", "", "GET", "/api"))
    assert not is_permanent(KubeError(0, "Unreachable", "refused", "GET", "/api"))
    assert not is_permanent(StorageError("put", "down", kind="unreachable"))
    assert not is_permanent(TimeoutError())
    assert is_permanent(KubeError(403, "Forbidden", "", "GET", "/api"))
    assert is_permanent(StorageError("put", "denied", kind="access_denied"))
    assert is_permanent(WrongKeyError("wrong"))
    assert is_permanent(ChecksumError("k", "a", "b"))
    with pytest.raises(KubeError):
        with engine_errors("x"):
            raise KubeError(429, "TooManyRequests", "", "GET", "/api")
    with pytest.raises(AirflowFailException, match="x: too many pods"):
        with engine_errors("x"):
            raise LimitExceeded("too many pods")


class CancelMidway:
    """Mixin: on the first progress report, do what the UI's 'mark failed' does (on_kill)."""

    def _progress_logger(self, what, every=10.0):
        def report(info):
            if info.get("phase") == "resources":
                self.on_kill()

        return report


def test_cancelled_capture_leaves_nothing_and_next_run_succeeds(env, sandbox_s3):
    from ys1000.airflow.errors import Cancelled
    from ys1000.airflow.operators import CaptureResourcesOperator
    from ys1000.repository import layout

    class Cancelling(CancelMidway, CaptureResourcesOperator):
        pass

    repo = open_repo(env, sandbox_s3)
    ctx = context(datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc))
    bid = f"{PLAN}-20300102030405"
    op = Cancelling(task_id="capture", plan=PLAN, config_dir=str(env.config_dir))
    with pytest.raises(Cancelled):
        op.execute(ctx)
    assert ctx["ti"].xcom["backup_id"] == bid
    assert keys_of(repo, bid) == []  # no manifest, no pending, no archive
    assert not repo.store.exists(layout.manifest_key(bid))
    assert bid not in [b.backup_id for b in repo.list_backups(PLAN)]

    # the retry of the same run reuses the id and succeeds
    op = CaptureResourcesOperator(task_id="capture", plan=PLAN, config_dir=str(env.config_dir))
    result = op.execute(ctx)
    assert result["backup_id"] == bid and result["objects"] > 10
    assert repo.store.exists(layout.pending_key(bid)) and not repo.store.exists(layout.manifest_key(bid))
    assert repo.verify(bid, pending=True).ok

    # a kill after execute unwound (execution timeout) removes the pending backup too
    op.on_kill()
    assert keys_of(repo, bid) == []


def test_capture_retry_after_commit_is_a_no_op(env, sandbox_s3):
    from ys1000.airflow.operators import CaptureResourcesOperator, CommitBackupOperator

    ctx = context(datetime(2030, 2, 3, 4, 5, 6, tzinfo=timezone.utc))
    kw = {"plan": PLAN, "config_dir": str(env.config_dir)}
    first = CaptureResourcesOperator(task_id="capture", **kw).execute(ctx)
    summary = CommitBackupOperator(task_id="commit", volumes_tasks=[], backup_id=first["backup_id"], **kw).execute(ctx)
    assert summary["status"] == "Completed" and summary["objects"] == first["objects"]
    again = CaptureResourcesOperator(task_id="capture", **kw).execute(ctx)
    assert again["complete"] is True and again["backup_id"] == first["backup_id"]
    repo = open_repo(env, sandbox_s3)
    assert [b.backup_id for b in repo.list_backups(PLAN)].count(first["backup_id"]) == 1
    repo.delete_backup(first["backup_id"])


def test_two_runs_in_one_second_make_two_backups(env, sandbox_s3):
    """Two API-triggered runs of one plan within one second (a burst of 200 triggers had such a
    pair) each make their own backup; a run whose id is taken by another run's committed backup
    fails instead of reporting that backup as its own."""
    from airflow.sdk.exceptions import AirflowFailException

    from ys1000.airflow.operators import CaptureResourcesOperator, CommitBackupOperator

    kw = {"plan": PLAN, "config_dir": str(env.config_dir)}
    repo = open_repo(env, sandbox_s3)

    def backup(ctx: dict) -> str:
        bid = CaptureResourcesOperator(task_id="capture", **kw).execute(ctx)["backup_id"]
        CommitBackupOperator(task_id="commit", volumes_tasks=[], backup_id=bid, **kw).execute(ctx)
        return bid

    when = datetime(2030, 3, 4, 5, 6, 7, tzinfo=timezone.utc)
    first = backup(context(when, "manual", "manual__a"))
    second = backup(context(when, "manual", "manual__b"))
    assert first != second and first.startswith(f"{PLAN}-20300304050607-")
    assert repo.manifest(first).made_by == "test/manual__a"
    assert repo.manifest(second).made_by == "test/manual__b"
    listed = [b.backup_id for b in repo.list_backups(PLAN)]
    assert first in listed and second in listed

    # ids that do collide (two runs with one logical date: never made by Airflow itself)
    taken = backup(context(when, "scheduled", "scheduled__x"))
    assert taken == f"{PLAN}-20300304050607"
    with pytest.raises(AirflowFailException, match=r"made by run test/scheduled__x; this run \(test/scheduled__y\)"):
        CaptureResourcesOperator(task_id="capture", **kw).execute(context(when, "scheduled", "scheduled__y"))
    assert repo.manifest(taken).made_by == "test/scheduled__x"  # untouched
    for bid in (first, second, taken):
        repo.delete_backup(bid)


def test_restore_plan_dag_dry_run(env, sandbox_s3, target):
    from airflow.utils.state import DagRunState

    from ys1000.airflow.dagfactory import build_dags
    from ys1000.airflow.operators import CaptureResourcesOperator, CommitBackupOperator

    repo = open_repo(env, sandbox_s3)
    if not repo.list_backups(PLAN):
        ctx = context()
        kw = {"plan": PLAN, "config_dir": str(env.config_dir)}
        bid = CaptureResourcesOperator(task_id="capture", **kw).execute(ctx)["backup_id"]
        CommitBackupOperator(task_id="commit", volumes_tasks=[], backup_id=bid, **kw).execute(ctx)
    run = build_dags(env.config_dir)["ys1000_restore__app-restore"].test()
    assert run.state == DagRunState.SUCCESS
    names = {n.metadata.name for n in target.core.list_namespace().items}
    assert f"{env.namespace}-dry" not in names  # a dry run writes nothing
