"""Consistency protection through the sandbox: the quiesce hook runs as a Job (executed locally
by the sandbox) against real MariaDB/PostgreSQL servers standing in for the app's database."""

from __future__ import annotations

import base64
import time

import pytest

from test_quiesce import Writer, count, mysql_table  # noqa: F401  (fixture)
from ys1000.config import Consistency
from ys1000.hooks.consistency import ConsistencyError, ConsistencyRunner
from ys1000.hooks.jobs import JOBS
from ys1000.kube import Kube


def make_secret(cluster, ns: str, name: str, user: str, password: str) -> None:
    cluster.core.create_namespaced_secret(
        ns,
        {
            "metadata": {"name": name},
            "data": {
                "username": base64.b64encode(user.encode()).decode(),
                "password": base64.b64encode(password.encode()).decode(),
            },
        },
    )


def jobs_left(kube: Kube, ns: str) -> list[str]:
    return [j["metadata"]["name"] for j in kube.list(JOBS, ns, label_selector="ys1000.io/component=hook")]


@pytest.fixture
def kube(source):
    return Kube.from_kubeconfig(source.kubeconfig, name="source")


def test_mariadb_quiesce_job_blocks_writes_until_resume(source, kube, namespace, mysql_table):  # noqa: F811  (the fixture imported from test_quiesce)
    db = mysql_table
    make_secret(source, namespace, "db-credentials", db.user, db.password)
    spec = Consistency(
        type="mariadb",
        namespace=namespace,
        host=db.host,
        port=db.port,
        secret={"name": "db-credentials"},
        max_lock="5m",
    )
    runner = ConsistencyRunner(kube, "run-1/quiesce")
    handle = runner.quiesce(spec, timeout=60)
    try:
        assert handle.quiesced["lock"] == "FLUSH TABLES WITH READ LOCK"
        # the Job took its credentials from the Secret: nothing secret on its command line
        job = kube.get(JOBS.path(namespace, handle.job))
        c = job["spec"]["template"]["spec"]["containers"][0]
        assert db.password not in str(c["command"] + c["args"])
        assert {e["valueFrom"]["secretKeyRef"]["name"] for e in c["env"]} == {"db-credentials"}
        w = Writer(db, "job-lock")
        w.start()
        assert not w.done.wait(1.5), "a write completed while the quiesce Job held the lock"
    finally:
        result = runner.resume(handle)
    assert result["ok"] is True and result["released_by"] == "signal" and result["before_resume"] is False
    assert w.done.wait(10) and w.error is None and count(db, "job-lock") == 1
    assert jobs_left(kube, namespace) == []


def test_mariadb_orphaned_quiesce_releases_by_max_lock(source, kube, namespace, mysql_table):  # noqa: F811  (the fixture imported from test_quiesce)
    """The task holding the quiesce dies mid-capture (nobody resumes): the hook's hard maximum
    releases the lock by itself; a later resume (the all_done task) reports it."""
    db = mysql_table
    make_secret(source, namespace, "db-credentials", db.user, db.password)
    spec = Consistency(
        type="mysql", namespace=namespace, host=db.host, port=db.port, secret={"name": "db-credentials"}, max_lock="3s"
    )
    runner = ConsistencyRunner(kube, "run-2/quiesce")
    runner.quiesce(spec, timeout=60)
    w = Writer(db, "orphaned")
    w.start()
    assert not w.done.wait(1.0)
    assert w.done.wait(15), "the hard maximum lock time did not release the lock"
    assert w.error is None and count(db, "orphaned") == 1
    # a fresh runner (another process, e.g. the resume task) finds the run's Job by label
    results = ConsistencyRunner(kube, "run-2/quiesce").resume_run([namespace])
    assert len(results) == 1
    assert results[0]["released_by"] == "timeout" and results[0]["before_resume"] is True
    assert jobs_left(kube, namespace) == []


def test_quiesce_failure_is_clear_and_leaves_nothing(source, kube, namespace, mariadb):
    make_secret(source, namespace, "db-credentials", mariadb.user, "not-the-password")
    spec = Consistency(
        type="mariadb", namespace=namespace, host=mariadb.host, port=mariadb.port, secret={"name": "db-credentials"}
    )
    with pytest.raises(ConsistencyError, match="Access denied"):
        ConsistencyRunner(kube, "run-3/quiesce").quiesce(spec, timeout=60)
    assert jobs_left(kube, namespace) == []


def test_postgresql_quiesce_job(source, kube, namespace, postgres):
    import psycopg

    db = postgres
    make_secret(source, namespace, "pg", db.user, db.password)
    spec = Consistency(type="postgresql", namespace=namespace, host=db.host, port=db.port, secret={"name": "pg"})
    runner = ConsistencyRunner(kube, "run-4/quiesce")
    handle = runner.quiesce(spec, timeout=60)
    with psycopg.connect(
        host=db.host, port=db.port, user=db.user, password=db.password, dbname="postgres", autocommit=True
    ) as conn:
        n = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name='ys1000-quiesce'").fetchone()[0]
        assert n == 1  # backup mode lives in the hook's open session
        result = runner.resume(handle)
        assert result["ok"] is True and "LABEL: ys1000" in result["backup_label"]
        for _ in range(50):
            n = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name='ys1000-quiesce'"
            ).fetchone()[0]
            if n == 0:
                break
            time.sleep(0.1)
        assert n == 0
    assert handle.quiesced["checkpoint"] is True and handle.quiesced["function"] == "pg_backup_start"


def test_workload_target_resolves_pod_ip(source, kube, namespace):
    source.apps.create_namespaced_stateful_set(
        namespace,
        {
            "metadata": {"name": "db"},
            "spec": {
                "serviceName": "db",
                "replicas": 1,
                "selector": {"matchLabels": {"app": "db"}},
                "template": {
                    "metadata": {"labels": {"app": "db"}},
                    "spec": {"containers": [{"name": "db", "image": "mariadb:11"}]},
                },
            },
        },
    )
    spec = Consistency(type="mariadb", namespace=namespace, workload="statefulset/db", secret={"name": "x"})
    runner = ConsistencyRunner(kube, "run-5/quiesce")
    deadline = time.monotonic() + 30
    while True:
        try:
            host, port = runner.resolve(spec)
            break
        except ConsistencyError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    pod = source.core.read_namespaced_pod("db-0", namespace)
    assert (host, port) == (pod.status.pod_ip, 3306)
    with pytest.raises(ConsistencyError, match="Service .* does not exist"):
        runner.resolve(Consistency(type="mariadb", namespace=namespace, service="nope", secret={"name": "x"}))
