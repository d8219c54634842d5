"""Issue 16, fault matrix — Airflow's own processes dying in the middle of a backup run.

Real Airflow (LocalExecutor, SQLite) against the sandbox, the plan ``slow-backup`` of the e2e
namespace (the sample application, two PVCs; the source cluster's movers limited to 256 KiB/s).
Each case kills a process with SIGKILL at a point the test observes, and checks what the issue
asks: the task retries, reattaches or redoes its work; no duplicate mover Job, no orphan Secret,
no duplicate or missing object; the committed manifest has the same objects and volumes as a
clean run's.

- a worker (the LocalExecutor worker process and its task process) killed mid-capture: the
  capture is slowed by a latency toxic on the cluster's API server (toxiproxy), killed once it has
  started uploading; the scheduler finds the task's heartbeat gone, the retry overwrites the
  partial upload;
- a worker killed mid-volume-copy: after its mover Job was created and before the task handed its
  wait to the triggerer (the API server's answer to the create is held back by a latency toxic,
  so that this moment lasts); the retry finds the mover still running and follows it — one mover
  pod for that PVC, start to end;
- in one run, the scheduler and then the triggerer killed while the volume waits are deferred and
  started again: the new triggerer takes the waits over (once the old one's heartbeat is stale)
  and the run completes, every task in one try.

The heartbeat timeout of task instances is lowered to 20 s (default 300 s) so that a dead worker
is noticed in the time of a test; retries then wait the product's retry delay (30 s).
"""

from __future__ import annotations

import os
import time
import uuid
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import pytest
import yaml
from e2e_helpers import (
    MOVERS,
    all_tis,
    create_pools,
    dump_logs,
    movers_in,
    open_repo,
    pv_dir,
    task_log,
    xcom,
    xcom_or_none,
)

from ys1000.airflow.bootstrap import connection_env, kubernetes_connection
from ys1000.waiting import wait_until
from ys1000_dev.toxiproxy import Toxiproxy

pytestmark = pytest.mark.slow

PLAN = "slow-backup"
DAG = f"ys1000_backup__{PLAN}"
HEARTBEAT_TIMEOUT = 20  # seconds without a task's heartbeat before the scheduler fails its try
KUBE_LATENCY_MS = 300  # per answer of the cluster's API server while a capture is to be killed
CREATE_ANSWER_DELAY_MS = 4000  # per answer while a volume task is to be killed after its Job's create


@pytest.fixture(scope="module")
def faults(e2e_env, source):
    """``(stack, kube_proxy)``: Airflow whose connection to the source cluster goes through
    toxiproxy (no toxics until a test adds them); the test's own client talks to it directly."""
    from ys1000_dev.processes import AirflowStack

    tp = Toxiproxy.start(e2e_env.base / "toxiproxy.log")
    try:
        kubeconfig = yaml.safe_load(Path(source.kubeconfig).read_text())
        kube_proxy = tp.proxy("faults-kube", urlsplit(kubeconfig["clusters"][0]["cluster"]["server"]).netloc)
        for c in kubeconfig["clusters"]:
            c["cluster"]["server"] = f"https://{kube_proxy.listen}"  # the serving cert is for 127.0.0.1
        path = e2e_env.base / "source-through-proxy.kubeconfig"
        path.write_text(yaml.safe_dump(kubeconfig))
        env = (
            e2e_env.env
            | connection_env([kubernetes_connection("ys1000_source", path)], {})
            | {
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT),
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
            }
        )
        stack = AirflowStack.standalone(e2e_env.base / "airflow-faults", env, parallelism=2)
        stack.start(on_migrated=create_pools)
        try:
            stack.client().wait_for_dag(DAG)
            yield stack, kube_proxy
        finally:
            if stack.procs.dead():
                dump_logs(stack)
            stack.stop()
    finally:
        tp.stop()


@pytest.fixture(scope="module")
def clean_run(faults, e2e_env, sandbox_s3):
    """The manifest of a run nothing happened to: what every faulted run must equal."""
    stack, _ = faults
    c = stack.client()
    run = c.trigger(DAG)["dag_run_id"]
    assert c.wait_run(DAG, run, timeout=420)["state"] == "success", all_tis(c, DAG, run)
    assert {ti["try_number"] for ti in all_tis(c, DAG, run)} == {1}
    return shape(open_repo(sandbox_s3, e2e_env.bucket), xcom(c, DAG, run, "commit")["backup_id"])


CRON_SPAWN = "wp-cron-"  # the sample app's CronJob (*/30): its Jobs and Pods come and go between runs


def shape(repo, backup_id: str) -> dict:
    """What must not differ between two backups of the same namespace: the objects (identity and
    how many), the volumes and their data size, the status. The CronJob's runs are left out: a
    Job and its Pod started by the schedule between two runs are the namespace changing, not a
    duplicate."""
    m = repo.manifest(backup_id)
    objects, spawned = [], Counter()
    for e in repo.read_index(backup_id):
        if e.kind in ("Job", "Pod") and e.name.startswith(CRON_SPAWN):
            spawned[e.kind] += 1
        else:
            objects.append((e.group, e.kind, e.namespace, e.name))
    return {
        "status": m.status,
        "objects": sorted(objects),
        "distinct": len(set(objects)),
        "counts": {k: n - spawned[k] for k, n in m.counts.items() if n - spawned[k]},
        "volumes": sorted(
            (v["namespace"], v["pvc"], bool(v.get("restic", {}).get("snapshot_id")), v.get("error")) for v in m.volumes
        ),
    }


def fresh_bytes(e2e_env, pvc: str, mib: int) -> None:
    """Bytes no repository has seen (the mover uploads all of them at the cluster's 256 KiB/s)."""
    (pv_dir(e2e_env.kube, e2e_env.namespace, pvc) / f"fresh-{uuid.uuid4().hex[:6]}.bin").write_bytes(
        os.urandom(mib << 20)
    )


def ti_of(c, run: str, task_id: str, map_index: int = -1) -> dict:
    return next(ti for ti in all_tis(c, DAG, run) if ti["task_id"] == task_id and ti["map_index"] == map_index)


def kill_worker(stack, ti_id: str) -> list[int]:
    """SIGKILL the LocalExecutor worker running task instance ``ti_id`` and its task process (the
    task process is titled ``airflow worker -- <ti id>``, its parent is the worker)."""
    scheduler = psutil.Process(stack.procs.procs["scheduler"].proc.pid)
    title = f"airflow worker -- {ti_id}"

    def titled(p: psutil.Process) -> bool:
        try:
            return " ".join(p.cmdline()).startswith(title)
        except psutil.Error:  # ended meanwhile, or a zombie (an earlier task's, not yet reaped)
            return False

    (task,) = [p for p in scheduler.children(recursive=True) if titled(p)]
    victims = [task.parent(), task]
    for p in victims:
        p.kill()
    psutil.wait_procs(victims, timeout=10)
    return [p.pid for p in victims]


def tries(c, run: str, task_id: str, map_index: int = -1) -> list[tuple[int, str]]:
    path = f"/api/v2/dags/{DAG}/dagRuns/{run}/taskInstances/{task_id}/{map_index}/tries"
    if map_index < 0:
        path = f"/api/v2/dags/{DAG}/dagRuns/{run}/taskInstances/{task_id}/tries"
    return sorted((t["try_number"], t["state"]) for t in c.get(path)["task_instances"])


def mover_pod_uids(source, ns: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for p in source.core.list_namespaced_pod(ns, label_selector=MOVERS).items:
        out.setdefault(p.metadata.labels.get("ys1000.io/pvc"), set()).add(p.metadata.uid)
    return out


def watch_run(
    c, source, run: str, ns: str, seen: dict[str, set[str]] | None = None, timeout: float = 600
) -> tuple[dict, dict[str, set[str]]]:
    """Until the run ends: its final state and every mover pod seen per PVC, added to ``seen`` (a
    second pod for a PVC would be a second mover)."""
    seen = {} if seen is None else seen
    deadline = time.monotonic() + timeout
    while (state := c.run(DAG, run))["state"] not in ("success", "failed"):
        for pvc, uids in mover_pod_uids(source, ns).items():
            seen.setdefault(pvc, set()).update(uids)
        assert time.monotonic() < deadline, f"run {run} did not end in {timeout:.0f} s: {all_tis(c, DAG, run)}"
        time.sleep(0.5)
    return state, seen


def check_clean_result(c, run: str, repo, clean: dict, e2e_env, source) -> None:
    summary = xcom(c, DAG, run, "commit")
    assert summary["status"] == "Completed", summary
    got = shape(repo, summary["backup_id"])
    extra, missing = set(got["objects"]) - set(clean["objects"]), set(clean["objects"]) - set(got["objects"])
    assert not extra and not missing, f"objects not in the clean run: {sorted(extra)}; missing: {sorted(missing)}"
    assert got == clean
    # one backup for the run (a retry overwrote its own pending upload), nothing pending left
    bids = [b.backup_id for b in repo.list_backups(PLAN)]
    assert bids.count(summary["backup_id"]) == 1, bids
    # no mover Job or Secret (repository credentials) left behind
    assert not movers_in(source, (e2e_env.namespace,))


def test_worker_killed_mid_capture(faults, clean_run, e2e_env, source, sandbox_s3):
    stack, kube_proxy = faults
    c = stack.client()
    kube_proxy.latency(KUBE_LATENCY_MS)
    try:
        run = c.trigger(DAG)["dag_run_id"]
        # the capture has started uploading: its backup id is pushed before the first object
        ti = wait_until(
            lambda: (
                (t := ti_of(c, run, "capture"))["state"] == "running"
                and xcom_or_none(c, DAG, run, "capture", "backup_id")
                and t
            ),
            timeout=300,
            interval=0.3,
            what="the capture to run",
        )
        # at once: at this latency the capture's calls to the API server (preflight, discovery,
        # the lists) take seconds, and its first try's log shows it never finished (below)
        assert ti_of(c, run, "capture")["state"] == "running", "the capture ended before it could be killed"
        killed = kill_worker(stack, ti["id"])
    finally:
        kube_proxy.clear()
    print(f"killed worker and task {killed} mid-capture")
    state, movers = watch_run(c, source, run, e2e_env.namespace)
    assert state["state"] == "success", all_tis(c, DAG, run)
    assert tries(c, run, "capture") == [(1, "failed"), (2, "success")]
    first = task_log(c, DAG, run, "capture", 1)
    assert "captured backup" not in first, first[-2000:]  # killed before the capture ended
    assert {pvc: len(u) for pvc, u in movers.items()} == {"wp-content": 1, "data-mysql-0": 1}
    check_clean_result(c, run, open_repo(sandbox_s3, e2e_env.bucket), clean_run, e2e_env, source)


def test_worker_killed_mid_volume_copy(faults, clean_run, e2e_env, source, sandbox_s3):
    """Killed after its mover Job was created and before it deferred: the API server's answer to
    the Job's create is held back by a latency toxic (the Job exists, the task waits for the
    answer). The retry (≈ 55 s later: heartbeat timeout + retry delay) finds the mover still
    copying (24 MiB at 256 KiB/s ≈ 96 s) and follows it."""
    stack, kube_proxy = faults
    c, ns = stack.client(), e2e_env.namespace
    fresh_bytes(e2e_env, "wp-content", 24)
    run = c.trigger(DAG)["dag_run_id"]
    wait_until(lambda: ti_of(c, run, "capture")["state"] == "success", timeout=300, what="the capture")
    index = [v["pvc"] for v in xcom(c, DAG, run, "preflight")].index("wp-content")
    kube_proxy.latency(CREATE_ANSWER_DELAY_MS)
    try:
        job = wait_until(
            lambda: [
                j
                for j in source.batch.list_namespaced_job(ns, label_selector=MOVERS).items
                if (j.metadata.labels or {}).get("ys1000.io/pvc") == "wp-content"
            ],
            timeout=300,
            interval=0.1,
            what="the wp-content mover Job",
        )[0]
        ti = ti_of(c, run, "volumes", index)
        assert ti["state"] == "running", f"the volume task is {ti['state']}, not waiting for its Job's create"
        killed = kill_worker(stack, ti["id"])
    finally:
        kube_proxy.clear()
    print(f"killed worker and task {killed} after it created Job {job.metadata.name}")
    state, movers = watch_run(c, source, run, ns)
    assert state["state"] == "success", all_tis(c, DAG, run)
    assert tries(c, run, "volumes", index) == [(1, "failed"), (2, "success")]
    # the retry followed the running mover: one pod for that PVC from start to end
    assert {pvc: len(u) for pvc, u in movers.items()} == {"wp-content": 1, "data-mysql-0": 1}, movers
    assert "still running (an earlier try): following it" in task_log(c, DAG, run, "volumes", 2, index)
    check_clean_result(c, run, open_repo(sandbox_s3, e2e_env.bucket), clean_run, e2e_env, source)


def _deferred_with_mover_running(c, source, run: str, ns: str, seen: dict[str, set[str]]) -> None:
    """The wp-content wait is deferred while its mover copies, and no other volume task is in a
    worker: a task running when the scheduler (and its LocalExecutor workers) dies is a lost try,
    not what this case is about — so the other PVC's copy must have ended first. Every mover pod
    seen meanwhile is added to ``seen``."""

    def check():
        vols = [ti for ti in all_tis(c, DAG, run) if ti["task_id"] == "volumes"]
        items = source.core.list_namespaced_pod(ns, label_selector=MOVERS).items
        pods = {p.metadata.labels.get("ys1000.io/pvc"): p.status.phase for p in items}
        for p in items:
            seen.setdefault(p.metadata.labels.get("ys1000.io/pvc"), set()).add(p.metadata.uid)
        wp = [ti for ti in vols if ti["rendered_map_index"] == f"{ns}/wp-content"]
        others = [ti for ti in vols if ti not in wp]
        return (
            wp
            and wp[0]["state"] == "deferred"
            and pods.get("wp-content") == "Running"
            and others
            and all(ti["state"] == "success" for ti in others)
        )

    wait_until(check, timeout=300, interval=0.5, what="the wp-content volume task deferred while its mover copies")


def test_scheduler_then_triggerer_restarted_while_waits_are_deferred(faults, clean_run, e2e_env, source, sandbox_s3):
    """One run, two faults: the scheduler killed (its LocalExecutor workers with it) and started
    again while the wp-content wait is deferred; then, the wait still deferred, the triggerer
    killed and started again — the new one takes the wait over once the old one's heartbeat is
    stale (30 s). The mover copies 24 MiB at 256 KiB/s (≈ 96 s) meanwhile."""
    stack, _ = faults
    c, ns = stack.client(), e2e_env.namespace
    fresh_bytes(e2e_env, "wp-content", 24)
    run = c.trigger(DAG)["dag_run_id"]
    movers: dict[str, set[str]] = {}
    _deferred_with_mover_running(c, source, run, ns, movers)
    for component in ("scheduler", "triggerer"):
        stack.procs.kill([component])
        stack.procs.start(component, [stack.airflow(), component])
        print(f"{component} killed and started again while the wp-content wait was deferred")
        _deferred_with_mover_running(c, source, run, ns, movers)  # still waiting, the same mover
    state, movers = watch_run(c, source, run, ns, movers)
    assert state["state"] == "success", all_tis(c, DAG, run)
    # nothing was redone: every task in one try, one mover per PVC
    assert {(ti["task_id"], ti["try_number"]) for ti in all_tis(c, DAG, run)} == {
        (t, 1) for t in ("preflight", "capture", "volumes", "verify", "commit", "retention")
    }
    assert {pvc: len(u) for pvc, u in movers.items()} == {"wp-content": 1, "data-mysql-0": 1}, movers
    check_clean_result(c, run, open_repo(sandbox_s3, e2e_env.bucket), clean_run, e2e_env, source)
    stack.wait_healthy(120)  # both restarted components report healthy
