"""Issue 5 acceptance: volume data with real restic in mover Jobs, CSI snapshots, export, restore."""

from __future__ import annotations

import os
import subprocess
import threading
import time
import uuid

import pytest

from ys1000.backup import BackupSpec
from ys1000.kube import Kube
from ys1000.kube.discovery import NAMESPACES, PODS
from ys1000.restore import RestoreOptions, RestoreSpec
from ys1000.volumes import VolumeOptions
from ys1000.volumes import restic as resticmod
from ys1000.kube.jobs import JOBS, SECRETS
from ys1000.volumes.snapshots import CLASSES, ensure_snapshot_class
from ys1000.waiting import wait_until
from ys1000.backup import run_backup
from ys1000.restore import run_restore

from volume_helpers import PLANTED, bound_pvc, plant, pv_dir, statefulset, tree_digest


@pytest.fixture(scope="module")
def app(source, sandbox_s3):
    """A StatefulSet with two PVCs full of planted files, in a fresh namespace of `source`."""
    kube = Kube.from_kubeconfig(source.kubeconfig, name="source")
    ns = f"vol-{uuid.uuid4().hex[:6]}"
    kube.create(NAMESPACES, {"metadata": {"name": ns}})
    source.apps.create_namespaced_stateful_set(ns, statefulset())
    for pvc in ("data-db-0", "logs-db-0"):
        wait_until(
            lambda pvc=pvc: (
                (kube.get_or_none(f"/api/v1/namespaces/{ns}/persistentvolumeclaims/{pvc}") or {})
                .get("status", {})
                .get("phase")
                == "Bound"
            ),
            timeout=60,
            what=f"{pvc} bound",
        )
    plant(pv_dir(kube, ns, "data-db-0"), big_mib=50)
    plant(pv_dir(kube, ns, "logs-db-0"), big_mib=1)
    wait_until(
        lambda: [p for p in kube.list(PODS, ns) if p.get("status", {}).get("phase") == "Running"],
        timeout=60,
        what="db-0 running",
    )
    digests = {pvc: tree_digest(pv_dir(kube, ns, pvc)) for pvc in ("data-db-0", "logs-db-0")}
    return {"kube": kube, "ns": ns, "digests": digests}


def test_filecopy_round_trip_same_cluster_and_into_target(app, target, volume_repo, sandbox_s3):
    repo, cfg, bucket = volume_repo
    kube, ns = app["kube"], app["ns"]
    result = run_backup(
        kube,
        repo,
        BackupSpec(backup_id="fc-1", plan="vol", namespaces=[ns], cluster_name="source"),
        volume_opts=VolumeOptions(run_id="t1"),
    )
    vols = {v["pvc"]: v for v in result.manifest.volumes}
    assert set(vols) == {"data-db-0", "logs-db-0"}
    assert vols["data-db-0"]["restic"]["total_bytes"] >= 50 << 20
    # no mover leftovers
    assert list(kube.list(JOBS, ns, label_selector="ys1000.io/component=mover")) == []
    assert list(kube.list(SECRETS, ns, label_selector="ys1000.io/component=mover")) == []
    # the bucket holds no plaintext of the planted content
    s3 = sandbox_s3.client()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for o in page.get("Contents", []):
            assert PLANTED not in s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read(), o["Key"]

    # into `target`, another StorageClass: every byte, mode and symlink identical
    tkube = Kube.from_kubeconfig(target.kubeconfig, name="target")
    new_ns = ns + "-t"
    report = run_restore(
        tkube,
        repo,
        RestoreSpec(
            backup_id="fc-1",
            options=RestoreOptions(
                namespace_mapping={ns: new_ns}, storage_class_mapping={"ys1000-local": "ys1000-local-alt"}
            ),
        ),
        same_cluster=False,
    )
    assert report.status == "Completed", report.failed
    for pvc, digest in app["digests"].items():
        d = pv_dir(tkube, new_ns, pvc)
        assert "volumes-alt" in str(d)
        assert tree_digest(d) == digest, f"{pvc} differs after restore into target"

    # same cluster, after the namespace is gone
    kube.delete(NAMESPACES, ns)
    wait_until(lambda: kube.get_or_none(NAMESPACES.path(name=ns)) is None, timeout=60, what="namespace gone")
    report = run_restore(kube, repo, RestoreSpec(backup_id="fc-1"), same_cluster=True)
    assert report.status == "Completed", report.failed
    for pvc, digest in app["digests"].items():
        assert tree_digest(pv_dir(kube, ns, pvc)) == digest
    # the StatefulSet came after its data: its pod runs on the restored PVCs
    wait_until(
        lambda: [p for p in kube.list(PODS, ns) if p.get("status", {}).get("phase") == "Running"],
        timeout=60,
        what="restored db-0 running",
    )


def test_incremental_backup_uploads_only_changes(app, volume_repo):
    repo, cfg, _ = volume_repo
    kube, ns = app["kube"], app["ns"]
    spec = lambda bid: BackupSpec(backup_id=bid, plan="inc", namespaces=[ns], cluster_name="source")  # noqa: E731
    first = run_backup(kube, repo, spec("inc-1"), volume_opts=VolumeOptions(run_id="i1"))
    data = pv_dir(kube, ns, "data-db-0")
    total = sum(f.stat().st_size for f in data.rglob("*") if f.is_file() and not f.is_symlink())
    changed, rewritten = 0, 0
    for f in sorted((data / "many").iterdir()):  # rewrite files holding 1% of the volume's bytes
        if changed >= total // 100:
            break
        f.write_bytes(os.urandom(f.stat().st_size))
        changed += f.stat().st_size
        rewritten += 1
    second = run_backup(kube, repo, spec("inc-2"), volume_opts=VolumeOptions(run_id="i2"))
    v1 = {v["pvc"]: v for v in first.manifest.volumes}["data-db-0"]["restic"]
    v2 = {v["pvc"]: v for v in second.manifest.volumes}["data-db-0"]["restic"]
    print(f"first backup added {v1['bytes_added']} bytes, second {v2['bytes_added']} of {total}")
    assert v2["bytes_added"] <= 0.02 * total
    unchanged = {v["pvc"]: v for v in second.manifest.volumes}["logs-db-0"]["restic"]
    assert unchanged["bytes_added"] < 64 << 10  # (almost) nothing for an unchanged volume
    # each volume's parent is its own previous snapshot (both hold the same file names, so the
    # other volume's snapshot as parent would show files as changed)
    assert (unchanged["files_new"], unchanged["files_changed"]) == (0, 0)
    assert (v2["files_new"], v2["files_changed"]) == (0, rewritten)


def test_snapshot_class_made_conforming_and_snapshot_round_trip(source, target, make_namespace, volume_repo):
    repo, cfg, _ = volume_repo
    kube = Kube.from_kubeconfig(source.kubeconfig, name="source")
    original = kube.get(CLASSES.path(name="ys1000-snapclass"))
    assert original["deletionPolicy"] == "Delete"
    name = ensure_snapshot_class(kube, "local.csi.ys1000.io", "local.csi.ys1000.io")
    created = kube.get(CLASSES.path(name=name))
    assert created["deletionPolicy"] == "Retain" and created["metadata"]["labels"]["ys1000.io/snapshot-class"] == "true"
    assert created["metadata"]["annotations"]["ys1000.io/csi-provisioner"] == "local.csi.ys1000.io"
    assert kube.get(CLASSES.path(name="ys1000-snapclass"))["deletionPolicy"] == "Delete"  # untouched

    ns = make_namespace(source)
    bound_pvc(kube, ns, "data")
    plant(pv_dir(kube, ns, "data"), big_mib=2)
    digest = tree_digest(pv_dir(kube, ns, "data"))
    snap = run_backup(
        kube,
        repo,
        BackupSpec(backup_id="snap-1", plan="snap", namespaces=[ns], cluster_name="source"),
        volume_opts=VolumeOptions(method="snapshot"),
    )
    rec = snap.manifest.volumes[0]
    assert rec["method"] == "snapshot" and rec["csi"]["snapshot_class"] == name and "restic" not in rec
    export = run_backup(
        kube,
        repo,
        BackupSpec(backup_id="exp-1", plan="snap", namespaces=[ns], cluster_name="source"),
        volume_opts=VolumeOptions(method="snapshot_export", run_id="e1"),
    )
    assert export.manifest.volumes[0]["restic"]["total_bytes"] > 2 << 20
    assert [p for p in kube.list(PODS, ns) if "export" in p["metadata"]["name"]] == []
    assert [
        c
        for c in source.core.list_namespaced_persistent_volume_claim(ns).items
        if c.metadata.name.startswith("ys1000-export-")
    ] == []

    kube.delete(NAMESPACES, ns)
    wait_until(lambda: kube.get_or_none(NAMESPACES.path(name=ns)) is None, timeout=60, what="namespace gone")
    report = run_restore(kube, repo, RestoreSpec(backup_id="snap-1"), same_cluster=True)
    assert report.status == "Completed", report.failed
    restored = kube.get(f"/api/v1/namespaces/{ns}/persistentvolumeclaims/data")
    assert restored["spec"]["dataSource"]["kind"] == "VolumeSnapshot"
    wait_until(
        lambda: kube.get(f"/api/v1/namespaces/{ns}/persistentvolumeclaims/data")["status"].get("phase") == "Bound",
        timeout=30,
        what="restored PVC bound",
    )
    assert tree_digest(pv_dir(kube, ns, "data")) == digest

    # snapshot-only backups cannot cross clusters; the exported one can
    tkube = Kube.from_kubeconfig(target.kubeconfig, name="target")
    report = run_restore(
        tkube,
        repo,
        RestoreSpec(backup_id="exp-1", options=RestoreOptions(namespace_mapping={ns: ns + "-x"})),
        same_cluster=False,
    )
    assert report.status == "Completed", report.failed
    assert tree_digest(pv_dir(tkube, ns + "-x", "data")) == digest
    with pytest.raises(RuntimeError, match="only in the cluster that took it"):
        run_restore(
            tkube,
            repo,
            RestoreSpec(backup_id="snap-1", options=RestoreOptions(namespace_mapping={ns: ns + "-y"})),
            same_cluster=False,
        )


def test_killed_mover_fails_cleanly_and_cancel_removes_job_and_secret(source, make_namespace, volume_repo):
    repo, cfg, bucket = volume_repo
    kube = Kube.from_kubeconfig(source.kubeconfig, name="source")
    ns = make_namespace(source)
    bound_pvc(kube, ns, "data")
    plant(pv_dir(kube, ns, "data"), big_mib=200)
    opts = VolumeOptions(run_id="kill", limit_upload_kib=20 << 10)  # slow enough to be caught mid-run

    def kill_mover_pod():
        pod = wait_until(
            lambda: [
                p
                for p in kube.list(PODS, ns, label_selector="ys1000.io/component=mover")
                if p.get("status", {}).get("phase") == "Running"
            ],
            timeout=60,
            what="mover running",
        )[0]
        time.sleep(1)
        kube.delete(PODS, pod["metadata"]["name"], ns)

    t = threading.Thread(target=kill_mover_pod)
    t.start()
    result = run_backup(kube, repo, BackupSpec(backup_id="killed", plan="k", namespaces=[ns]), volume_opts=opts)
    t.join()
    # committed with its resources, but never as Completed: the PVC and why are named
    m = result.manifest
    assert m.status == "PartiallyFailed"
    assert [v["pvc"] for v in m.volumes if v.get("error")] == ["data"]
    assert "mover backup of" in m.volumes[0]["error"] and "restic" not in m.volumes[0]
    assert any(w.startswith(f"PVC {ns}/data: ") and "NOT in this backup" in w for w in m.warnings), m.warnings
    assert [(e.backup_id, e.status) for e in repo.list_backups("k")] == [("killed", "PartiallyFailed")]
    from ys1000.config.specs import BackupNotResolved, resolve_backup

    with pytest.raises(BackupNotResolved, match="no completed backup of plan 'k'"):
        resolve_backup(repo, "latest", "k")  # `latest` never picks a backup lacking data
    assert list(kube.list(JOBS, ns, label_selector="ys1000.io/component=mover")) == []
    target = resticmod.target_for(cfg, repo.restic_password(), "source", ns)
    check = subprocess.run(
        [resticmod.binary(), "check"], env={**os.environ, **target.environment()}, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stderr

    # cancel while a mover runs: its Job and Secret are deleted
    from ys1000.volumes.steps import Driver

    driver = Driver(kube, 1)

    def cancel_when_running():
        wait_until(
            lambda: list(kube.list(JOBS, ns, label_selector="ys1000.io/component=mover")), timeout=60, what="mover job"
        )
        time.sleep(1)
        driver.cancel_all()

    t = threading.Thread(target=cancel_when_running)
    t.start()
    from ys1000.volumes.backup import backup_volumes

    pvc = kube.get(f"/api/v1/namespaces/{ns}/persistentvolumeclaims/data")
    with pytest.raises(InterruptedError):
        backup_volumes(
            kube,
            cfg,
            repo.restic_password(),
            [pvc],
            {},
            "cancelled",
            "k",
            VolumeOptions(run_id="cancel", limit_upload_kib=20 << 10),
            driver=driver,
        )
    t.join()
    assert list(kube.list(JOBS, ns, label_selector="ys1000.io/component=mover")) == []
    assert list(kube.list(SECRETS, ns, label_selector="ys1000.io/component=mover")) == []


def test_retention_forgets_only_the_expired_backups_data(source, make_namespace, volume_repo):
    from datetime import timedelta

    from ys1000.volumes.retention import expire_backups

    repo, cfg, _ = volume_repo
    kube = Kube.from_kubeconfig(source.kubeconfig, name="source")
    ns = make_namespace(source)
    bound_pvc(kube, ns, "data")
    d = pv_dir(kube, ns, "data")
    plant(d, big_mib=3)
    spec = lambda bid: BackupSpec(backup_id=bid, plan="ret", namespaces=[ns], cluster_name="source")  # noqa: E731
    old = run_backup(kube, repo, spec("ret-old"), volume_opts=VolumeOptions(run_id="r1"))
    (d / "new.txt").write_text("only in the newer backup\n")
    run_backup(kube, repo, spec("ret-new"), volume_opts=VolumeOptions(run_id="r2"))
    digest = tree_digest(d)
    # expire what is older than the newer backup: only ret-old goes
    newer = repo.manifest("ret-new").created
    now = newer + timedelta(seconds=1)
    report, cleanup = expire_backups(repo, cfg, "ret", now - newer + timedelta(milliseconds=1), now=now)
    assert report.deleted == ["ret-old"]
    target = resticmod.target_for(cfg, repo.restic_password(), "source", ns)
    remaining = {s["id"] for s in resticmod.snapshots(target.environment())}
    assert old.manifest.volumes[0]["restic"]["snapshot_id"] not in remaining
    assert list(cleanup.forgotten.values()) == [[old.manifest.volumes[0]["restic"]["snapshot_id"]]]
    check = subprocess.run(
        [resticmod.binary(), "check", "--read-data"],
        env={**os.environ, **target.environment()},
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr
    # the newer backup, which shares most blocks with the expired one, restores in full
    kube.delete(NAMESPACES, ns)
    wait_until(lambda: kube.get_or_none(NAMESPACES.path(name=ns)) is None, timeout=60, what="namespace gone")
    r = run_restore(kube, repo, RestoreSpec(backup_id="ret-new"), same_cluster=True)
    assert r.status == "Completed", r.failed
    assert tree_digest(pv_dir(kube, ns, "data")) == digest


def test_empty_volume_backs_up_and_restores_empty(source, target, make_namespace, volume_repo):
    repo, cfg, _ = volume_repo
    kube = Kube.from_kubeconfig(source.kubeconfig, name="source")
    ns = make_namespace(source)
    bound_pvc(kube, ns, "empty")
    r = run_backup(
        kube,
        repo,
        BackupSpec(backup_id="empty-1", plan="e", namespaces=[ns], cluster_name="source"),
        volume_opts=VolumeOptions(run_id="e1"),
    )
    rec = r.manifest.volumes[0]
    assert rec["restic"]["snapshot_id"] is None and rec["restic"]["total_bytes"] == 0
    tkube = Kube.from_kubeconfig(target.kubeconfig, name="target")
    report = run_restore(
        tkube,
        repo,
        RestoreSpec(backup_id="empty-1", options=RestoreOptions(namespace_mapping={ns: ns + "-e"})),
        same_cluster=False,
    )
    assert report.status == "Completed", report.failed
    wait_until(
        lambda: target.core.read_namespaced_persistent_volume_claim("empty", ns + "-e").status.phase == "Bound",
        timeout=30,
        what="restored PVC bound",
    )
    assert list(pv_dir(tkube, ns + "-e", "empty").iterdir()) == []
