"""A full Airflow (api-server, scheduler, dag-processor, triggerer; LocalExecutor + SQLite) started
by the test, driven only through REST API v2, against the sandbox.

- two plans on one cluster: the second job waits in the cluster's pool while the first runs,
  then both finish ``success`` with completed backups;
- "mark failed" on a running ``volumes`` task stops its mover: no mover Job/Secret left, no
  manifest for the half backup; the next run of the plan succeeds.

The first plan is slow by construction, not by sleeping: its PVC holds incompressible data and
the cluster's bandwidth limit throttles the restic mover (``conftest.SLOW_*``).
"""

from __future__ import annotations

import os
import time

import pytest
from e2e_helpers import SLOW_DATA_MIB, create_pools, dump_logs, open_repo, pv_dir, xcom

from ys1000.waiting import wait_until

pytestmark = pytest.mark.slow

SLOW = "ys1000_backup__slow-backup"
QUICK = "ys1000_backup__quick-backup"
POOL = "ys1000_cluster_source"
MOVERS = "ys1000.io/component=mover"


@pytest.fixture(scope="module")
def airflow(e2e_env):
    from ys1000_dev.processes import AirflowStack

    stack = AirflowStack.standalone(e2e_env.base / "airflow", e2e_env.env)
    t0 = time.monotonic()
    stack.start(on_migrated=create_pools)
    try:
        print(f"Airflow healthy at {stack.url} in {time.monotonic() - t0:.1f} s")
        client = stack.client()
        client.wait_for_dag(SLOW)
        client.wait_for_dag(QUICK)
        assert client.import_errors() == []
        yield stack
    finally:
        if any(m.proc.poll() is not None for m in stack.procs.procs.values()):
            dump_logs(stack)
        stack.stop()
        assert stack.procs.remaining() == [], "processes of the stack survived stop()"


def movers(kube, ns: str) -> list[str]:
    from ys1000.kube.jobs import JOBS, SECRETS

    return [f"{kind}/{o['metadata']['name']}" for kind, rt in (("Job", JOBS), ("Secret", SECRETS))
            for o in kube.list(rt, ns, label_selector=MOVERS)]


def test_second_job_on_the_cluster_waits_in_the_pool(airflow, e2e_env, sandbox_s3):
    c = airflow.client()
    t0 = time.monotonic()
    first = c.trigger(SLOW)["dag_run_id"]
    c.wait_task(SLOW, first, "volumes", {"running"}, timeout=120)
    second = c.trigger(QUICK)["dag_run_id"]

    # while the first job copies its volume, the second one's first task is scheduled but cannot
    # get the cluster's only pool slot
    seen: list[tuple] = []
    waited = False
    while True:
        pre = c.task_instances(QUICK, second).get("preflight", {}).get("state")
        pool = c.pool(POOL)
        volumes = c.task_instance(SLOW, first, "volumes")["state"]
        seen.append((round(time.monotonic() - t0, 1), pre, volumes, pool["open_slots"], pool["scheduled_slots"]))
        if volumes != "running":
            break
        assert pre in (None, "scheduled", "queued"), f"second job ran while the first held the pool: {seen}"
        if pre == "scheduled":
            assert pool["open_slots"] == 0 and pool["running_slots"] == 1 and pool["scheduled_slots"] >= 1, pool
            waited = True
            if len([s for s in seen if s[1] == "scheduled"]) >= 3:
                break  # seen waiting for a while: enough
        time.sleep(1)
    assert waited, f"the second job was never seen waiting in pool {POOL}: {seen}"

    r1 = c.wait_run(SLOW, first, timeout=240)
    r2 = c.wait_run(QUICK, second, timeout=240)
    print(f"both runs done in {time.monotonic() - t0:.1f} s; samples {seen}")
    assert (r1["state"], r2["state"]) == ("success", "success")
    # the second job's tasks started only after the first job's volume copy ended
    vol_end = c.task_instance(SLOW, first, "volumes")["end_date"]
    assert c.task_instance(QUICK, second, "preflight")["start_date"] >= vol_end

    repo = open_repo(sandbox_s3, e2e_env.bucket)
    for plan, dag, run in (("slow-backup", SLOW, first), ("quick-backup", QUICK, second)):
        bid = xcom(c, dag, run, "capture", "backup_id")
        summary = xcom(c, dag, run, "commit")
        assert summary["backup_id"] == bid and summary["status"] == "Completed"
        m = repo.manifest(bid)
        assert m.plan == plan and e2e_env.namespace in m.namespaces and m.counts.get("Deployment") == 1
        assert repo.verify(bid).ok
    slow_m = repo.manifest(xcom(c, SLOW, first, "capture", "backup_id"))
    assert {v["pvc"] for v in slow_m.volumes} >= {"wp-content"}  # the slow part really copied data


def test_mark_failed_mid_copy_cleans_up_and_next_run_succeeds(airflow, e2e_env, sandbox_s3):
    from ys1000.repository import layout

    c = airflow.client()
    kube, ns = e2e_env.kube, e2e_env.namespace
    # fresh bytes the repository has never seen, so the bandwidth-limited upload really takes
    # ~16 s (data an earlier test uploaded would be deduplicated and the mover done at once)
    (pv_dir(kube, ns, "wp-content") / "cancel-test.bin").write_bytes(os.urandom(SLOW_DATA_MIB << 20))
    run = c.trigger(SLOW)["dag_run_id"]
    c.wait_task(SLOW, run, "volumes", {"running"}, timeout=180)
    wait_until(lambda: movers(kube, ns), timeout=60, what="the mover Job of the volumes task")
    bid = xcom(c, SLOW, run, "capture", "backup_id")
    t0 = time.monotonic()
    c.mark_task(SLOW, run, "volumes", "failed", note="cancelled by the e2e test")

    assert c.wait_run(SLOW, run, timeout=120)["state"] == "failed"
    # the task's on_kill deleted its mover Job and Secret (the run's only temporary objects)
    wait_until(lambda: not movers(kube, ns), timeout=60, what="mover Jobs/Secrets to be deleted")
    print(f"cancelled and cleaned up in {time.monotonic() - t0:.1f} s")
    tis = c.task_instances(SLOW, run)
    assert tis["volumes"]["state"] == "failed"
    assert {tis[t]["state"] for t in ("verify", "commit", "retention")} <= {"upstream_failed", None}
    log = c.task_log(SLOW, run, "volumes")
    # deleted by the cancel (on_kill), not by the mover finishing
    assert "cancel requested" in log and "deleted mover Job and Secret" in log, log[-3000:]

    repo = open_repo(sandbox_s3, e2e_env.bucket)
    assert not repo.store.exists(layout.manifest_key(bid))  # the half backup is not a backup
    assert bid not in [b.backup_id for b in repo.list_backups("slow-backup")]

    again = c.trigger(SLOW)["dag_run_id"]
    assert c.wait_run(SLOW, again, timeout=240)["state"] == "success"
    new_bid = xcom(c, SLOW, again, "capture", "backup_id")
    assert new_bid != bid and repo.manifest(new_bid).status == "Completed" and repo.verify(new_bid).ok
    assert not movers(kube, ns)
