"""A full Airflow (api-server, scheduler, dag-processor, triggerer; LocalExecutor + SQLite) started
by the test, driven only through REST API v2, against the sandbox.

- two plans on one cluster: the second job waits in the cluster's pool while the first one's
  per-PVC ``volumes`` tasks wait (deferred) for their movers, then both finish ``success`` with
  completed backups;
- "mark failed" on a deferred ``volumes`` task (one PVC) stops its mover: the trigger's
  ``on_kill`` deletes the mover Job and Secret; the backup is never ``Completed`` (committed
  ``PartiallyFailed`` naming that PVC, the run failed); the next run of the plan succeeds.

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

    return [
        f"{kind}/{o['metadata']['name']}"
        for kind, rt in (("Job", JOBS), ("Secret", SECRETS))
        for o in kube.list(rt, ns, label_selector=MOVERS)
    ]


def mapped(c, dag: str, run: str, task: str) -> list[dict]:
    """The instances of a mapped task (REST ``listMapped``), in map-index order."""
    data = c.get(f"/api/v2/dags/{dag}/dagRuns/{run}/taskInstances/{task}/listMapped")
    return sorted(data["task_instances"], key=lambda t: t["map_index"])


ACTIVE = {"scheduled", "queued", "running", "deferred", "up_for_retry", "up_for_reschedule", None}


def test_second_job_on_the_cluster_waits_in_the_pool(airflow, e2e_env, sandbox_s3):
    c = airflow.client()
    t0 = time.monotonic()
    first = c.trigger(SLOW)["dag_run_id"]
    wait_until(
        lambda: any(t["state"] == "deferred" for t in mapped(c, SLOW, first, "volumes")),
        timeout=180,
        what="a volumes task of the first job deferred (its mover running)",
    )
    second = c.trigger(QUICK)["dag_run_id"]

    # while the first job's volume tasks wait in the triggerer (holding their pool slots), the
    # second job's first task is scheduled but cannot get the whole pool it needs
    seen: list[tuple] = []
    waited = False
    while True:
        pre = c.task_instances(QUICK, second).get("preflight", {}).get("state")
        pool = c.pool(POOL)
        states = sorted({t["state"] for t in mapped(c, SLOW, first, "volumes")}, key=str)
        seen.append(
            (
                round(time.monotonic() - t0, 1),
                pre,
                states,
                pool["open_slots"],
                pool["deferred_slots"],
                pool["scheduled_slots"],
            )
        )
        if not set(states) & ACTIVE:
            break
        assert pre in (None, "scheduled", "queued"), f"second job ran while the first held the pool: {seen}"
        if pre == "scheduled" and "deferred" in states:
            assert pool["deferred_slots"] >= 1 and pool["running_slots"] == 0, pool  # no worker slot held
            assert pool["open_slots"] < pool["slots"] and pool["scheduled_slots"] >= 1, pool
            waited = True
            if len([s for s in seen if s[1] == "scheduled"]) >= 3:
                break  # seen waiting for a while: enough
        time.sleep(1)
    assert waited, f"the second job was never seen waiting in pool {POOL}: {seen}"

    r1 = c.wait_run(SLOW, first, timeout=240)
    r2 = c.wait_run(QUICK, second, timeout=240)
    print(f"both runs done in {time.monotonic() - t0:.1f} s; samples {seen}")
    assert (r1["state"], r2["state"]) == ("success", "success")
    # the second job's tasks started only after the first job's volume copies ended
    vol_end = max(t["end_date"] for t in mapped(c, SLOW, first, "volumes"))
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
    c = airflow.client()
    kube, ns = e2e_env.kube, e2e_env.namespace
    # fresh bytes the repository has never seen, so the bandwidth-limited upload really takes
    # ~16 s (data an earlier test uploaded would be deduplicated and the mover done at once)
    (pv_dir(kube, ns, "wp-content") / "cancel-test.bin").write_bytes(os.urandom(SLOW_DATA_MIB << 20))
    run = c.trigger(SLOW)["dag_run_id"]
    name = f"{ns}/wp-content"
    ti = wait_until(
        lambda: next(
            (
                t
                for t in mapped(c, SLOW, run, "volumes")
                if t["rendered_map_index"] == name and t["state"] == "deferred"
            ),
            None,
        ),
        timeout=180,
        what=f"the volumes task of {name} deferred",
    )
    wait_until(lambda: movers(kube, ns), timeout=60, what="the mover Job of the volumes task")
    time.sleep(2)  # its trigger is running in the triggerer
    bid = xcom(c, SLOW, run, "capture", "backup_id")
    t0 = time.monotonic()
    c.request(
        "PATCH",
        f"/api/v2/dags/{SLOW}/dagRuns/{run}/taskInstances/volumes/{ti['map_index']}",
        json={"new_state": "failed", "note": "cancelled by the e2e test"},
    )
    # the trigger's on_kill deletes the PVC's mover Job and Secret
    wait_until(
        lambda: not [m for m in movers(kube, ns) if "wp-content" in m],
        timeout=30,
        what="the cancelled PVC's mover Job/Secret to be deleted",
    )
    print(f"cancelled and cleaned up in {time.monotonic() - t0:.1f} s")

    assert c.wait_run(SLOW, run, timeout=180)["state"] == "failed"
    states = {t["rendered_map_index"]: t["state"] for t in mapped(c, SLOW, run, "volumes")}
    assert states[name] == "failed"
    tis = c.task_instances(SLOW, run)
    assert tis["commit"]["state"] == "failed"  # committed PartiallyFailed, the run red
    repo = open_repo(sandbox_s3, e2e_env.bucket)
    m = repo.manifest(bid)
    assert m.status == "PartiallyFailed", m.status
    assert [v["pvc"] for v in m.volumes if v.get("error")] == ["wp-content"]
    assert [b.status for b in repo.list_backups("slow-backup") if b.backup_id == bid] == ["PartiallyFailed"]

    again = c.trigger(SLOW)["dag_run_id"]
    assert c.wait_run(SLOW, again, timeout=240)["state"] == "success"
    new_bid = xcom(c, SLOW, again, "capture", "backup_id")
    assert new_bid != bid and repo.manifest(new_bid).status == "Completed" and repo.verify(new_bid).ok
    assert not movers(kube, ns)
