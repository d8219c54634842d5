"""The production shape with real processes: CeleryExecutor, PostgreSQL metadata DB and Redis broker
(Debian packages, on loopback in temp dirs), one Celery worker; a backup DAG triggered through the
REST API runs to success on the worker — and a Secret planted in the namespace it backs up is then
in neither a ``pg_dump`` of the metadata DB, nor the stack's logs, nor the repository bucket."""

from __future__ import annotations

import base64
import subprocess
import time
import uuid

import pytest
from e2e_helpers import create_pools, dump_logs, open_repo, xcom

pytestmark = pytest.mark.slow

DAG = "ys1000_backup__quick-backup"
WORKER = "ys1000-celery-worker"


def test_backup_runs_on_the_celery_worker(e2e_env, sandbox_s3, source):
    from ys1000_dev.processes import AirflowStack

    # issue 16: a Secret in the backed-up namespace whose value must stay in the cluster and the
    # (encrypted) repository
    planted = f"planted-{uuid.uuid4().hex}"
    source.core.create_namespaced_secret(
        e2e_env.namespace,
        {
            "metadata": {"name": "planted"},
            "type": "Opaque",
            "data": {"token": base64.b64encode(planted.encode()).decode()},
        },
    )

    stack = AirflowStack.celery(e2e_env.base / "airflow-celery", e2e_env.env, worker_hostname=WORKER)
    t0 = time.monotonic()
    try:
        stack.start(on_migrated=create_pools)
        print(f"PostgreSQL + Redis + Airflow (CeleryExecutor) + worker ready in {time.monotonic() - t0:.1f} s")
        assert stack.sql_alchemy_conn.startswith("postgresql") and stack.celery_broker.startswith("redis://")
        c = stack.client()
        c.wait_for_dag(DAG)
        health = c.get("/api/v2/monitor/health")
        assert health["metadatabase"]["status"] == "healthy"
        run = c.trigger(DAG)["dag_run_id"]
        final = c.wait_run(DAG, run, timeout=300)
        print(f"run {run}: {final['state']} after {time.monotonic() - t0:.1f} s")
        if final["state"] != "success":
            dump_logs(stack)
        assert final["state"] == "success"

        # every task ran on the Celery worker (its hostname) from the default Celery queue
        tis = c.task_instances(DAG, run)
        assert set(tis) == {"preflight", "capture", "volumes", "verify", "commit", "retention"}
        # a plan of scope `resources` has no PVC to copy: its mapped `volumes` task expands to
        # nothing, which Airflow shows as skipped
        assert tis.pop("volumes")["state"] == "skipped"
        for task_id, ti in tis.items():
            assert ti["state"] == "success", (task_id, ti["state"])
            assert ti["hostname"] == WORKER, (task_id, ti["hostname"])
            assert ti["queue"] == "default", (task_id, ti["queue"])
        worker_log = stack.log_tail("celery-worker", 2000)
        assert f"celery@{WORKER}" in worker_log or WORKER in worker_log
        assert "execute_workload" in worker_log and "succeeded" in worker_log

        # and the backup it made is complete and verifies
        bid = xcom(c, DAG, run, "capture", "backup_id")
        repo = open_repo(sandbox_s3, e2e_env.bucket)
        assert repo.manifest(bid).status == "Completed" and repo.verify(bid).ok
        secret = repo.get_resource(bid, "secrets", e2e_env.namespace, "planted")  # in it, encrypted
        assert base64.b64decode(secret["data"]["token"]).decode() == planted

        # the planted value: not in the PostgreSQL metadata DB, the stack's files, the bucket
        from security.secret_scan import Blob, Bucket, Files, find

        dump = _pg_dump(stack)
        assert b"COPY public.xcom " in dump and bid.encode() in dump  # the dump has the runs' data
        places = [Blob("pg_dump", dump), Files(stack.home), Bucket(sandbox_s3.client(), e2e_env.bucket)]
        assert find(planted.encode(), places) == []
        # proven: once a run's note holds the value (stored in the DB on purpose), the dump has it
        c.request("PATCH", f"/api/v2/dags/{DAG}/dagRuns/{run}", json={"note": f"token {planted}"})
        assert find(planted.encode(), [Blob("pg_dump", _pg_dump(stack))]) == ["pg_dump"]
    finally:
        stack.stop()
        print(f"stopped after {time.monotonic() - t0:.1f} s")
    assert stack.procs.remaining() == []
    assert all(not s.dir.exists() for s in stack.extra)  # PostgreSQL/Redis temp dirs removed


def _pg_dump(stack) -> bytes:
    """A plain-SQL ``pg_dump`` of the stack's metadata DB (the PostgreSQL it started)."""
    from ys1000_dev.processes import PostgresServer, postgres_bindir

    [pg] = [s for s in stack.extra if isinstance(s, PostgresServer)]
    argv = [str(postgres_bindir() / "pg_dump"), "-h", "127.0.0.1", "-p", str(pg.port), "-U", "postgres", pg.database]
    return subprocess.run(argv, check=True, capture_output=True, timeout=120).stdout
