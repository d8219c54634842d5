"""Acceptance of issue 13 with real Airflow processes (api-server, scheduler, dag-processor,
triggerer; LocalExecutor with parallelism 2, SQLite) against the sandbox, driven through REST API v2:

- a plan of a namespace with 6 PVCs: ``volumes`` is mapped into 6 instances named ``ns/pvc``; all 6
  wait deferred at once while their movers run, holding no executor slot (parallelism is 2, the
  cluster pool counts them as deferred, none is running);
- deleting one mover pod fails only that PVC's try; its retry succeeds; the other 5 ran one try
  and one mover each; the backup is Completed with 6 volume records whose restic data restores to
  the killed PVC's bytes;
- marking a deferred volume task failed deletes its mover Job and Secret within 30 s, and for a
  ``snapshot_export`` plan (2 PVCs) its temporary export PVC too — by the trigger's ``on_kill``:
  the other PVCs' movers still run then, so ``verify`` (which sweeps what cancelled volume tasks
  left behind) has not started; the try ends failed (no retry), the others succeed in one try.

Movers are slow by construction: every PVC holds fresh incompressible data and the cluster's mover
bandwidth is limited (``LIMIT_KIB``), so each runs ~40 s.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import yaml
from af_helpers import write_plan
from e2e_helpers import (
    MOVERS,
    all_tis,
    backup_plan,
    create_pools,
    dump_logs,
    limit_bandwidth,
    movers_in,
    open_repo,
    pv_dir,
    task_log,
    xcom,
    xcom_or_none,
)

from ys1000.waiting import WaitTimeout, wait_until

pytestmark = pytest.mark.slow

PLAN, EXPORT_PLAN = "six-volumes", "export-volume"
DAG, EXPORT_DAG = f"ys1000_backup__{PLAN}", f"ys1000_backup__{EXPORT_PLAN}"
POOL = "ys1000_cluster_source"
PVCS = [f"vol-{i}" for i in range(6)]
DATA_MIB = 5  # per PVC, fresh random bytes: restic uploads all of it
LIMIT_KIB = 128  # the movers' bandwidth: ~40 s per PVC
EXPORTS = "ys1000.io/component=export"  # temporary PVCs of snapshot_export


def set_cluster(config_dir: Path, cluster: str, **settings) -> None:
    path = config_dir / "clusters.yaml"
    data = yaml.safe_load(path.read_text())
    data[cluster].update(settings)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def make_pvcs(cluster, kube, ns: str, names: list[str]) -> None:
    cluster.core.create_namespace({"metadata": {"name": ns, "labels": {"ys1000.io/test": "true"}}})
    for name in names:
        cluster.core.create_namespaced_persistent_volume_claim(
            ns,
            {
                "metadata": {"name": name},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "storageClassName": "ys1000-local",
                    "resources": {"requests": {"storage": "64Mi"}},
                },
            },
        )
    for name in names:
        fresh_data(kube, ns, name, "data.bin")


def fresh_data(kube, ns: str, pvc: str, filename: str) -> None:
    """Bytes no repository has seen: the mover really uploads ``DATA_MIB`` at ``LIMIT_KIB``."""
    root = pv_dir(kube, ns, pvc)
    (root / filename).write_bytes(os.urandom(DATA_MIB << 20))
    (root / "name.txt").write_text(f"{ns}/{pvc}\n")


@pytest.fixture(scope="module")
def volumes_env(e2e_env, source):
    """Namespaces with data-filled PVCs (6 for the file copy plan, 1 for the snapshot_export
    plan), the two plans, and the source cluster at 6 concurrent movers with a slow bandwidth."""
    cdir, kube = e2e_env.config_dir, e2e_env.kube
    ns, ens = f"{e2e_env.namespace}-six", f"{e2e_env.namespace}-exp"
    limit_bandwidth(cdir, "source", LIMIT_KIB)
    set_cluster(cdir, "source", max_concurrent_movers=6)
    make_pvcs(source, kube, ns, PVCS)
    make_pvcs(source, kube, ens, ["exp-0", "exp-1"])
    write_plan(cdir, f"{PLAN}.yaml", backup_plan(PLAN, ns))
    write_plan(cdir, f"{EXPORT_PLAN}.yaml", backup_plan(EXPORT_PLAN, ens, method="snapshot_export"))
    try:
        yield ns, ens
    finally:
        for name in (ns, ens):
            try:
                source.core.delete_namespace(name)
            except Exception:
                pass


@pytest.fixture(scope="module")
def stack(e2e_env, volumes_env):
    from ys1000_dev.processes import AirflowStack

    s = AirflowStack.standalone(e2e_env.base / "airflow-mapped", e2e_env.env, parallelism=2)
    assert s.procs.env["AIRFLOW__CORE__PARALLELISM"] == "2" and s.executor == "LocalExecutor"
    t0 = time.monotonic()
    s.start(on_migrated=create_pools)
    try:
        print(f"Airflow healthy at {s.url} in {time.monotonic() - t0:.1f} s")
        c = s.client()
        for dag_id in (DAG, EXPORT_DAG):
            c.wait_for_dag(dag_id)
        assert c.import_errors() == []
        pool = c.pool(POOL)
        assert pool["slots"] == 6 and pool["include_deferred"] is True, pool
        yield s
    finally:
        if any(m.proc.poll() is not None for m in s.procs.procs.values()):
            dump_logs(s)
        s.stop()
        assert s.procs.remaining() == [], "processes of the stack survived stop()"


def mapped(c, dag_id: str, run_id: str, task_id: str = "volumes") -> list[dict]:
    """The mapped instances of ``task_id`` (the Grid's boxes), by map index."""
    data = c.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/listMapped", params={"limit": 100})
    return sorted(data["task_instances"], key=lambda ti: ti["map_index"])


def tries(c, dag_id: str, run_id: str, map_index: int, task_id: str = "volumes") -> list[dict]:
    data = c.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/{map_index}/tries")
    return sorted(data["task_instances"], key=lambda t: t["try_number"])


def mover_pods(cluster, ns: str) -> list:
    return cluster.core.list_namespaced_pod(ns, label_selector=MOVERS).items


def by_pvc(c, dag_id: str, run_id: str, ns: str) -> dict[str, dict]:
    """The mapped instances by PVC: map indexes follow preflight's list (its XCom)."""
    items = xcom(c, dag_id, run_id, "preflight")
    tis = {ti["map_index"]: ti for ti in mapped(c, dag_id, run_id)}
    assert [i["namespace"] for i in items] == [ns] * len(items), items
    return {item["pvc"]: tis[i] for i, item in enumerate(items)}


def restic_restore(sandbox_s3, bucket: str, record: dict) -> Path:
    """Restore a volume record's restic snapshot into a fresh directory."""
    from ys1000.repository import RepositoryConfig
    from ys1000.volumes import restic

    repo = open_repo(sandbox_s3, bucket)
    cfg = RepositoryConfig(
        type="s3",
        bucket=bucket,
        endpoint_url=sandbox_s3.endpoint_url,
        access_key=sandbox_s3.access_key,
        secret_key=sandbox_s3.secret_key,
        region=sandbox_s3.region,
    )
    env = restic.target_at(cfg, repo.restic_password(), record["restic"]["repository"]).environment()
    out = Path(tempfile.mkdtemp(prefix="restored-"))
    subprocess.run(
        [restic.binary(), "restore", record["restic"]["snapshot_id"], "--target", str(out)],
        env={**os.environ, **env},
        check=True,
        capture_output=True,
        timeout=120,
    )
    return out


def files_under(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_six_pvcs_wait_deferred_and_a_killed_mover_retries_alone(stack, e2e_env, volumes_env, source, sandbox_s3):
    c, kube = stack.client(), e2e_env.kube
    ns, _ = volumes_env
    t0 = time.monotonic()
    run = c.trigger(DAG)["dag_run_id"]

    # all six wait at once in the triggerer while their movers run: parallelism 2 could not run
    # them side by side, and neither the executor nor the pool counts them as running
    samples: list[tuple] = []

    def all_deferred():
        tis = all_tis(c, DAG, run)
        vols = [ti for ti in tis if ti["task_id"] == "volumes"]
        pool = c.pool(POOL)
        running = [f"{ti['task_id']}[{ti['map_index']}]" for ti in tis if ti["state"] in ("running", "queued")]
        pods = {p.metadata.labels.get("ys1000.io/pvc"): p.status.phase for p in mover_pods(source, ns)}
        samples.append(
            (
                round(time.monotonic() - t0, 1),
                sorted(str(ti["state"]) for ti in vols),
                running,
                pool["running_slots"],
                pool["deferred_slots"],
                pods,
            )
        )
        if (run_state := c.run(DAG, run)["state"]) in ("success", "failed"):
            raise AssertionError(f"the run ended ({run_state}) before its 6 volume tasks were seen deferred: {samples}")
        deferred = len(vols) == 6 and all(ti["state"] == "deferred" for ti in vols)
        return deferred and not running and pods == {p: "Running" for p in PVCS} and (tis, pool, pods)

    tis, pool, pods = wait_until(all_deferred, timeout=240, interval=1, what="all 6 volume tasks deferred at once")
    print(f"6 volume tasks deferred at {time.monotonic() - t0:.1f} s, pool {pool}; samples {samples[-8:]}")
    assert pool["running_slots"] == 0 and pool["deferred_slots"] == 6 and pool["open_slots"] == 0, pool
    assert not [ti for ti in tis if ti["state"] == "running"], tis

    # the Grid: 6 mapped instances, named by PVC
    boxes = mapped(c, DAG, run)
    assert [ti["map_index"] for ti in boxes] == list(range(6)), boxes
    named = by_pvc(c, DAG, run, ns)
    assert sorted(named) == PVCS

    # kill one mover pod while it runs
    victim = "vol-2"
    (pod,) = [p for p in mover_pods(source, ns) if p.metadata.labels.get("ys1000.io/pvc") == victim]
    uids = {p.metadata.labels["ys1000.io/pvc"]: {p.metadata.uid} for p in mover_pods(source, ns)}
    source.core.delete_namespaced_pod(pod.metadata.name, ns)
    t_kill = time.monotonic()

    # until the run ends: every mover pod seen, per PVC (a redone PVC would show a second pod)
    states: list[tuple] = []
    while (state := c.run(DAG, run)["state"]) not in ("success", "failed"):
        for p in mover_pods(source, ns):
            uids.setdefault(p.metadata.labels["ys1000.io/pvc"], set()).add(p.metadata.uid)
        states.append(
            (
                round(time.monotonic() - t0, 1),
                {pvc: (ti["state"], ti["try_number"]) for pvc, ti in by_pvc(c, DAG, run, ns).items()},
            )
        )
        assert time.monotonic() - t0 < 420, f"the run did not finish: {states[-5:]}"
        time.sleep(1)
    print(f"run {state} {time.monotonic() - t_kill:.1f} s after the kill; states {states[::10]}")
    final = by_pvc(c, DAG, run, ns)
    assert state == "success", (final, states[-5:])
    assert {pvc: (ti["state"], ti["try_number"]) for pvc, ti in final.items()} == {
        pvc: ("success", 2 if pvc == victim else 1) for pvc in PVCS
    }, states[-5:]
    # the killed PVC's first try failed (up for retry), its second succeeded; the others ran once
    killed = tries(c, DAG, run, final[victim]["map_index"])
    assert [t["try_number"] for t in killed] == [1, 2], killed
    assert killed[0]["state"] in ("failed", "up_for_retry") and killed[1]["state"] == "success", killed
    for pvc in PVCS:
        if pvc != victim:
            assert [t["try_number"] for t in tries(c, DAG, run, final[pvc]["map_index"])] == [1], pvc
    # one mover per PVC, two for the killed one (its retry started a new one); none left behind
    assert {pvc: len(u) for pvc, u in uids.items()} == {pvc: 2 if pvc == victim else 1 for pvc in PVCS}, uids
    assert not movers_in(source, (ns,))
    # the Grid names each instance by its PVC
    assert {ti["rendered_map_index"] for ti in mapped(c, DAG, run)} == {f"{ns}/{p}" for p in PVCS}

    summary = xcom(c, DAG, run, "commit")
    assert summary["status"] == "Completed" and summary["volumes"] == 6, summary
    repo = open_repo(sandbox_s3, e2e_env.bucket)
    m = repo.manifest(summary["backup_id"])
    assert m.status == "Completed" and repo.verify(m.backup_id).ok
    records = {v["pvc"]: v for v in m.volumes}
    assert sorted(records) == PVCS
    for rec in records.values():
        assert rec.get("restic", {}).get("snapshot_id") and not rec.get("error"), rec
        assert rec["restic"]["total_bytes"] >= DATA_MIB << 20, rec
    # the killed PVC's data restores byte for byte
    restored = files_under(restic_restore(sandbox_s3, e2e_env.bucket, records[victim]))
    assert restored == files_under(pv_dir(kube, ns, victim)), sorted(restored)


def settled_deferred(c, dag_id: str, run_id: str, map_index: int, ready) -> dict:
    """The instance once it is deferred on the wait ``ready()`` says has begun (sampled twice)."""

    def check():
        if not ready():
            return None
        ti = mapped(c, dag_id, run_id)[map_index]
        if ti["state"] != "deferred":
            return None
        time.sleep(1)
        again = mapped(c, dag_id, run_id)[map_index]
        return again["state"] == "deferred" and ready() and again

    return wait_until(check, timeout=240, interval=0.5, what=f"{dag_id}/{run_id} volumes[{map_index}] to defer")


def gone_within(seconds: float, left, what: str) -> None:
    """Until ``left()`` lists nothing; fails after ``seconds`` naming what is still there."""
    seen: list = []

    def gone():
        seen[:] = left()
        return not seen

    try:
        wait_until(gone, timeout=seconds, interval=0.5, what=f"{what} to be deleted")
    except WaitTimeout:
        raise AssertionError(f"{what}: still there {seconds:.0f} s after the cancel: {seen}") from None


def cancel(c, dag_id: str, run_id: str, map_index: int) -> None:
    """What "Mark as failed" on one mapped instance in the UI does."""
    c.request(
        "PATCH",
        f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/volumes/{map_index}",
        json={"new_state": "failed", "note": "cancelled from the e2e test"},
    )


def job_running(cluster, ns: str, name: str) -> bool:
    from kubernetes.client.exceptions import ApiException

    try:
        job = cluster.batch.read_namespaced_job(name, ns)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return not (job.status.succeeded or job.status.failed) and not job.metadata.deletion_timestamp


def not_started(c, dag_id: str, run_id: str, task_id: str) -> bool:
    return c.task_instance(dag_id, run_id, task_id)["start_date"] is None


def test_marking_a_deferred_volume_failed_deletes_its_job_and_secret(stack, e2e_env, volumes_env, source):
    c, kube = stack.client(), e2e_env.kube
    ns, _ = volumes_env
    victim = "vol-3"
    # new bytes everywhere: every mover runs ~40 s, so while the cancelled one is cleaned up the
    # others still run and ``verify`` (which sweeps what cancelled volume tasks left) has not started
    tag = uuid.uuid4().hex[:6]
    for pvc in PVCS:
        fresh_data(kube, ns, pvc, f"cancel-{tag}.bin")
    run = c.trigger(DAG)["dag_run_id"]
    wait_until(lambda: xcom_or_none(c, DAG, run, "preflight"), timeout=180, what="preflight's PVC list")
    index = [i["pvc"] for i in xcom(c, DAG, run, "preflight")].index(victim)

    def its_mover():
        return [
            p
            for p in mover_pods(source, ns)
            if p.metadata.labels.get("ys1000.io/pvc") == victim and p.status.phase == "Running"
        ]

    settled_deferred(c, DAG, run, index, its_mover)
    (pod,) = its_mover()
    job = pod.metadata.labels["job-name"]
    mine = [o for o in movers_in(source, (ns,)) if o.endswith(f"/{job}")]
    assert sorted(mine) == [f"Job/{ns}/{job}", f"Secret/{ns}/{job}"], movers_in(source, (ns,))
    assert job_running(source, ns, job)

    t0 = time.monotonic()
    cancel(c, DAG, run, index)
    gone_within(
        30,
        lambda: [o for o in movers_in(source, (ns,)) if o.endswith(f"/{job}")],
        f"the cancelled mover's Job and Secret {ns}/{job}",
    )
    print(f"mover Job and Secret of {ns}/{victim} gone {time.monotonic() - t0:.1f} s after the cancel")
    # its pod goes with the Job (the garbage collector deletes it in the background, the node stops
    # the mover): a moment later under load
    gone_within(
        30,
        lambda: [p.metadata.name for p in mover_pods(source, ns) if p.metadata.labels.get("ys1000.io/pvc") == victim],
        f"the cancelled mover's pod ({ns}/{victim})",
    )
    # removed by the cancel itself, not by the sweep of verify (which has not started)
    assert not_started(c, DAG, run, "verify")

    assert c.wait_run(DAG, run, timeout=300)["state"] == "failed"
    final = by_pvc(c, DAG, run, ns)
    assert {pvc: (ti["state"], ti["try_number"]) for pvc, ti in final.items()} == {
        pvc: ("failed" if pvc == victim else "success", 1) for pvc in PVCS
    }
    # the backup is committed without that PVC's data, naming it
    summary = xcom(c, DAG, run, "commit")
    assert summary["status"] == "PartiallyFailed", summary
    assert not movers_in(source, (ns,))
    log = task_log(c, DAG, run, "volumes", 1, index)
    assert f"cancelled: deleted Job {ns}/{job}" in log, log[-3000:]  # the trigger's on_kill


def test_cancelling_an_export_in_flight_deletes_its_job_secret_and_export_pvc(stack, e2e_env, volumes_env, source):
    c = stack.client()
    _, ens = volumes_env
    run = c.trigger(EXPORT_DAG)["dag_run_id"]
    wait_until(lambda: xcom_or_none(c, EXPORT_DAG, run, "preflight"), timeout=180, what="preflight's PVC list")
    index = [i["pvc"] for i in xcom(c, EXPORT_DAG, run, "preflight")].index("exp-0")

    def export_of(pvc: str):
        """The export mover of ``pvc`` (running) and its temporary PVC."""
        tmp = [
            p
            for p in source.core.list_namespaced_persistent_volume_claim(ens, label_selector=EXPORTS).items
            if p.spec.data_source and p.spec.data_source.name and snapshot_of(source, ens, p) == pvc
        ]
        names = {p.metadata.name for p in tmp}
        pods = [
            p
            for p in mover_pods(source, ens)
            if p.metadata.labels.get("ys1000.io/purpose") == "export"
            and p.status.phase == "Running"
            and p.metadata.labels.get("ys1000.io/pvc") in names
        ]
        return pods and tmp and (pods, tmp)

    settled_deferred(c, EXPORT_DAG, run, index, lambda: export_of("exp-0") and export_of("exp-1"))
    (pod,), (tmp,) = export_of("exp-0")
    job = pod.metadata.labels["job-name"]
    assert sorted(o for o in movers_in(source, (ens,)) if o.endswith(f"/{job}")) == [
        f"Job/{ens}/{job}",
        f"Secret/{ens}/{job}",
    ]
    assert pod.spec.volumes[0].persistent_volume_claim.claim_name == tmp.metadata.name  # reads the export PVC
    assert job_running(source, ens, job)

    t0 = time.monotonic()
    cancel(c, EXPORT_DAG, run, index)

    def leftovers():
        pvcs = source.core.list_namespaced_persistent_volume_claim(ens, label_selector=EXPORTS).items
        return [o for o in movers_in(source, (ens,)) if o.endswith(f"/{job}")] + [
            f"PVC/{ens}/{p.metadata.name}" for p in pvcs if p.metadata.name == tmp.metadata.name
        ]

    gone_within(30, leftovers, f"the export's Job, Secret and PVC {tmp.metadata.name} in {ens}")
    print(f"export Job, Secret and PVC {tmp.metadata.name} gone {time.monotonic() - t0:.1f} s after the cancel")
    # removed by the cancel itself: the other PVC still exports, verify has not started
    assert export_of("exp-1") and not_started(c, EXPORT_DAG, run, "verify")

    assert c.wait_run(EXPORT_DAG, run, timeout=300)["state"] == "failed"
    final = {ti["rendered_map_index"]: (ti["state"], ti["try_number"]) for ti in mapped(c, EXPORT_DAG, run)}
    assert final == {f"{ens}/exp-0": ("failed", 1), f"{ens}/exp-1": ("success", 1)}, final
    assert not leftovers() and not movers_in(source, (ens,))
    # the trigger's on_kill
    assert f"PVC {ens}/{tmp.metadata.name}" in task_log(c, EXPORT_DAG, run, "volumes", 1, index)
    # the source PVCs are untouched
    assert sorted(p.metadata.name for p in source.core.list_namespaced_persistent_volume_claim(ens).items) == [
        "exp-0",
        "exp-1",
    ]


def snapshot_of(cluster, ns: str, tmp) -> str | None:
    """The source PVC of an export PVC (through the VolumeSnapshot it is made from)."""
    from kubernetes.client.exceptions import ApiException

    try:
        vs = cluster.custom.get_namespaced_custom_object(
            "snapshot.storage.k8s.io", "v1", ns, "volumesnapshots", tmp.spec.data_source.name
        )
    except ApiException:
        return None
    return (vs.get("spec") or {}).get("source", {}).get("persistentVolumeClaimName")
