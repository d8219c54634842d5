"""Issue 3 acceptance: resource backup and restore through the encrypted S3 repository.

One sample application is deployed and backed up once per module (the slow part); each test
then restores or inspects that backup in its own way.
"""

from __future__ import annotations

import base64
import uuid

import pytest

from ys1000.backup import BackupSpec, LimitExceeded, Limits, run_backup
from ys1000.kube import Discovery, Kube
from ys1000.kube.discovery import NAMESPACES
from ys1000.repository import ChecksumError, ObjectLocked
from ys1000.restore import RestoreOptions, RestoreSpec, run_restore
from ys1000_dev.sandbox import sampleapp
from ys1000.waiting import wait_until

from engine_helpers import normalize, repo_for
from volumes.volume_helpers import plant, pv_dir, tree_digest


def gone(kube: Kube, ns: str) -> bool:
    return kube.get_or_none(NAMESPACES.path(name=ns)) is None


@pytest.fixture(scope="module")
def app(source, sandbox_s3):
    """The sample app in a fresh namespace of `source`, and one backup of it."""
    kube = Kube.from_kubeconfig(source.kubeconfig, name="source")
    ns = f"wp-{uuid.uuid4().hex[:6]}"
    kube.create(NAMESPACES, {"metadata": {"name": ns, "labels": {"team": "blog"}}})
    sampleapp.deploy(kube, ns)
    pvcs = ("wp-content", "data-mysql-0")
    for pvc in pvcs:
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
        plant(pv_dir(kube, ns, pvc), big_mib=1)  # the database's and the web app's data
    digests = {pvc: tree_digest(pv_dir(kube, ns, pvc)) for pvc in pvcs}
    bucket = sandbox_s3.new_bucket(f"rt-{uuid.uuid4().hex[:8]}")
    repo = repo_for(sandbox_s3, bucket)
    result = run_backup(kube, repo, BackupSpec(backup_id=f"{ns}-1", plan="wp", namespaces=[ns], cluster_name="source"))
    originals = {}
    disc = Discovery.load(kube)
    for e in repo.read_index(result.manifest.backup_id):
        if e.restore and e.namespace == ns:
            rt = disc.by_kind(e.kind, e.group)
            originals[(e.kind, e.name)] = kube.get(rt.path(ns, e.name))
    yield {
        "kube": kube,
        "ns": ns,
        "repo": repo,
        "bucket": bucket,
        "backup": result.manifest.backup_id,
        "manifest": result.manifest,
        "originals": originals,
        "digests": digests,
    }


def test_backup_content(app):
    m = app["manifest"]
    assert m.status == "Completed" and m.namespaces == [app["ns"]]
    kinds = set(m.counts)
    for kind in (
        "Deployment",
        "StatefulSet",
        "PersistentVolumeClaim",
        "Service",
        "Ingress",
        "ConfigMap",
        "Secret",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "CronJob",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "Site",
        "CustomResourceDefinition",
        "PersistentVolume",
        "StorageClass",
        "Namespace",
    ):
        assert kind in kinds, f"{kind} missing from the backup: {sorted(kinds)}"
    index = list(app["repo"].read_index(app["backup"]))
    pods = [e for e in index if e.kind == "Pod"]
    assert pods and all(not e.restore and "re-created by" in e.reason for e in pods)
    assert all(not e.restore for e in index if e.kind in ("ReplicaSet", "EndpointSlice", "Endpoints"))
    assert app["repo"].verify(app["backup"]).ok


def test_secrets_are_not_readable_in_the_bucket(app, sandbox_s3):
    s3 = sandbox_s3.client()
    needles = [sampleapp.SECRET_VALUE.encode(), base64.b64encode(sampleapp.SECRET_VALUE.encode())]
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=app["bucket"])["Contents"]]
    assert any(k.endswith("resources.tar.gz.enc") for k in keys)
    for key in keys:
        raw = s3.get_object(Bucket=app["bucket"], Key=key)["Body"].read()
        for needle in needles:
            assert needle not in raw, f"secret value readable in {key}"
    # ... while the backup does hold it (decrypted through the repository)
    secret = app["repo"].get_resource(app["backup"], "secrets", app["ns"], "mysql-pass")
    assert base64.b64decode(secret["data"]["password"]).decode() == sampleapp.SECRET_VALUE


def test_restore_into_target_every_object_and_every_byte_equal(app, target):
    """The database + web app into the other cluster as it was: every namespaced object equal but
    server-set fields, every PVC byte equal (the restore fills PVCs before the workloads)."""
    kube = Kube.from_kubeconfig(target.kubeconfig, name="target")
    ns = app["ns"]
    report = run_restore(kube, app["repo"], RestoreSpec(backup_id=app["backup"]))
    assert report.status == "Completed", report.failed
    assert {(v["pvc"], v["status"]) for v in report.volumes} == {(p, "data") for p in app["digests"]}
    disc = Discovery.load(kube)
    for (kind, name), original in app["originals"].items():
        rt = disc.by_kind(kind, (original["apiVersion"].split("/")[0] if "/" in original["apiVersion"] else ""))
        assert normalize(kube.get(rt.path(ns, name))) == normalize(original), f"{kind}/{name} differs in target"
    for pvc, digest in app["digests"].items():
        assert tree_digest(pv_dir(kube, ns, pvc)) == digest, f"PVC {pvc} differs in target"
    kube.delete(NAMESPACES, ns)


def test_restore_into_target_with_new_namespace_and_storage_class(app, target):
    kube = Kube.from_kubeconfig(target.kubeconfig, name="target")
    new_ns = app["ns"] + "-dr"
    report = run_restore(
        kube,
        app["repo"],
        RestoreSpec(
            backup_id=app["backup"],
            options=RestoreOptions(
                namespace_mapping={app["ns"]: new_ns},
                storage_class_mapping={"ys1000-local": "ys1000-local-alt"},
                remove_node_constraints=True,
            ),
        ),
    )
    assert report.status == "Completed", report.failed
    disc = Discovery.load(kube)
    pvcs = list(kube.list(disc.by_kind("PersistentVolumeClaim"), new_ns))
    assert {p["metadata"]["name"] for p in pvcs} >= {"wp-content", "data-mysql-0"}
    wait_until(
        lambda: all(
            kube.get(disc.by_kind("PersistentVolumeClaim").path(new_ns, p["metadata"]["name"]))["status"].get("phase")
            == "Bound"
            for p in pvcs
        ),
        timeout=60,
        what="restored PVCs bound",
    )
    for pvc, digest in app["digests"].items():
        assert tree_digest(pv_dir(kube, new_ns, pvc)) == digest, f"PVC {pvc} differs under {new_ns}"
    for p in pvcs:
        assert p["spec"]["storageClassName"] == "ys1000-local-alt"
    sts = kube.get(disc.by_kind("StatefulSet").path(new_ns, "mysql"))
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"] == "ys1000-local-alt"
    dep = kube.get(disc.by_kind("Deployment").path(new_ns, "wordpress"))
    pod_spec = dep["spec"]["template"]["spec"]
    assert "nodeSelector" not in pod_spec and "affinity" not in pod_spec
    rb = kube.get(disc.by_kind("RoleBinding").path(new_ns, "wp-reader"))
    assert rb["subjects"][0]["namespace"] == new_ns
    assert (
        kube.get(disc.by_kind("Site", "demo.ys1000.io").path(new_ns, "blog"))["spec"]["url"]
        == "http://blog.example.com"
    )
    wait_until(
        lambda: (
            (kube.get(disc.by_kind("Deployment").path(new_ns, "wordpress")).get("status") or {}).get("readyReplicas")
            == 2
        ),
        timeout=60,
        what="the restored Deployment to be ready",
    )


def test_delete_namespace_restore_same_cluster_then_again_all_skipped(app):
    kube, ns = app["kube"], app["ns"]
    kube.delete(NAMESPACES, ns)
    wait_until(lambda: gone(kube, ns), timeout=60, what=f"namespace {ns} gone")
    report = run_restore(kube, app["repo"], RestoreSpec(backup_id=app["backup"]))
    assert report.status == "Completed", report.failed
    disc = Discovery.load(kube)
    for (kind, name), original in app["originals"].items():
        rt = disc.by_kind(kind, (original["apiVersion"].split("/")[0] if "/" in original["apiVersion"] else ""))
        restored = kube.get(rt.path(ns, name))
        assert normalize(restored) == normalize(original), f"{kind}/{name} differs after the round trip"
    for pvc, digest in app["digests"].items():
        assert tree_digest(pv_dir(kube, ns, pvc)) == digest, f"PVC {pvc} differs after the round trip"
    ns_obj = kube.get(NAMESPACES.path(name=ns))
    assert ns_obj["metadata"]["labels"]["team"] == "blog"
    # a second restore of the same backup changes nothing and says so
    again = run_restore(kube, app["repo"], RestoreSpec(backup_id=app["backup"]))
    assert again.status == "Completed"
    assert {i.action for i in again.items} == {"skipped"}, again.counts


def test_dry_run_writes_nothing(app, target):
    kube = Kube.from_kubeconfig(target.kubeconfig)
    new_ns = app["ns"] + "-dry"
    report = run_restore(
        kube,
        app["repo"],
        RestoreSpec(
            backup_id=app["backup"], dry_run=True, options=RestoreOptions(namespace_mapping={app["ns"]: new_ns})
        ),
    )
    assert report.counts.get("would-create", 0) >= 15
    assert gone(kube, new_ns)


def test_flipped_byte_fails_verify_and_restore_and_writes_nothing(app, sandbox_s3, target):
    s3 = sandbox_s3.client()
    bucket = app["bucket"]
    repo = app["repo"]
    m = repo.manifest(app["backup"])
    key = f"t/{m.archive.key}"
    data = bytearray(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    copy_id = app["backup"] + "-flip"
    # a separate copy of the backup, so the other tests keep a good one
    for suffix in ("manifest.json", "index.jsonl.gz", "index-map.json", "resources.tar.gz.enc"):
        body = s3.get_object(Bucket=bucket, Key=f"t/backups/{app['backup']}/{suffix}")["Body"].read()
        if suffix == "manifest.json":
            body = body.replace(app["backup"].encode(), copy_id.encode())
        if suffix == "resources.tar.gz.enc":
            data[len(data) // 2] ^= 0x01
            body = bytes(data)
        s3.put_object(Bucket=bucket, Key=f"t/backups/{copy_id}/{suffix}", Body=body)
    with pytest.raises(ChecksumError):
        repo.verify(copy_id)
    kube = Kube.from_kubeconfig(target.kubeconfig)
    with pytest.raises(ChecksumError):
        run_restore(
            kube,
            repo,
            RestoreSpec(backup_id=copy_id, options=RestoreOptions(namespace_mapping={app["ns"]: app["ns"] + "-flip"})),
        )
    assert gone(kube, app["ns"] + "-flip")


def test_limits_and_hostpath_refused_before_writing(source, make_namespace, sandbox_s3):
    kube = Kube.from_kubeconfig(source.kubeconfig)
    bucket = sandbox_s3.new_bucket(f"lim-{uuid.uuid4().hex[:8]}")
    repo = repo_for(sandbox_s3, bucket)
    ns1, ns2 = make_namespace(source), make_namespace(source)
    with pytest.raises(LimitExceeded, match=r"2 namespaces, more than the limit of 1"):
        run_backup(
            kube, repo, BackupSpec(backup_id="b1", plan="p", namespaces=[ns1, ns2], limits=Limits(max_namespaces=1))
        )
    core = source.core
    for i in range(3):
        core.create_namespaced_persistent_volume_claim(
            ns1,
            {
                "metadata": {"name": f"c{i}"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
            },
        )
    with pytest.raises(LimitExceeded, match=r"3 PVCs, more than the limit of 2"):
        run_backup(kube, repo, BackupSpec(backup_id="b2", plan="p", namespaces=[ns1], limits=Limits(max_pvcs=2)))
    core.create_namespaced_pod(
        ns2,
        {
            "metadata": {"name": "logger"},
            "spec": {
                "containers": [{"name": "c", "image": "busybox"}],
                "volumes": [{"name": "varlog", "hostPath": {"path": "/var/log"}}, {"name": "tmp", "emptyDir": {}}],
            },
        },
    )
    core.create_namespaced_pod(
        ns2, {"metadata": {"name": "other"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    )
    with pytest.raises(LimitExceeded, match=r"2 pods, more than the limit of 1"):
        run_backup(kube, repo, BackupSpec(backup_id="b3", plan="p", namespaces=[ns2], limits=Limits(max_pods=1)))
    # a PVC bound to a hostPath PV: its data lives on one node, outside what the product copies
    pv = f"hostpath-{ns1}"
    core.create_persistent_volume(
        {
            "metadata": {"name": pv},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "",
                "persistentVolumeReclaimPolicy": "Retain",
                "hostPath": {"path": "/srv/node-data"},
                "claimRef": {"namespace": ns1, "name": "node-data"},
            },
        }
    )
    try:
        core.create_namespaced_persistent_volume_claim(
            ns1,
            {
                "metadata": {"name": "node-data"},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "storageClassName": "",
                    "volumeName": pv,
                    "resources": {"requests": {"storage": "1Gi"}},
                },
            },
        )
        with pytest.raises(LimitExceeded, match=rf"PVC {ns1}/node-data \(PV {pv}, hostPath /srv/node-data\)"):
            run_backup(kube, repo, BackupSpec(backup_id="b4", plan="p", namespaces=[ns1]))
        keys = [o["Key"] for o in sandbox_s3.client().list_objects_v2(Bucket=bucket).get("Contents", [])]
        assert not [k for k in keys if "/backups/" in k or "/catalog/" in k], keys
        # resources-only scope takes the namespace with the hostPath-backed claim
        r = run_backup(kube, repo, BackupSpec(backup_id="b5", plan="p", namespaces=[ns1], scope="resources"))
        assert r.manifest.counts.get("PersistentVolumeClaim") == 4
    finally:
        core.delete_persistent_volume(pv)
    # inline hostPath volumes of pods are node-local mounts like emptyDir: skipped and said so
    r = run_backup(kube, repo, BackupSpec(backup_id="b6", plan="p", namespaces=[ns2]))
    assert r.manifest.status == "Completed"
    assert any(f"pod {ns2}/logger volume varlog (hostPath /var/log)" in w for w in r.manifest.warnings), (
        r.manifest.warnings
    )
    assert any(f"pod {ns2}/logger volume tmp (emptyDir)" in w for w in r.manifest.warnings), r.manifest.warnings


def test_object_lock_retention(source, make_namespace, sandbox_s3):
    kube = Kube.from_kubeconfig(source.kubeconfig)
    bucket = sandbox_s3.new_bucket(f"lock-{uuid.uuid4().hex[:8]}", object_lock=True)
    repo = repo_for(sandbox_s3, bucket)
    ns = make_namespace(source)
    source.core.create_namespaced_config_map(ns, {"metadata": {"name": "c"}, "data": {"k": "v"}})
    r = run_backup(kube, repo, BackupSpec(backup_id="locked-1", plan="p", namespaces=[ns], retention_days=1))
    s3 = sandbox_s3.client()
    head = s3.head_object(Bucket=bucket, Key=f"t/{r.manifest.archive.key}")
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert head["ObjectLockRetainUntilDate"] > r.manifest.created
    versions = s3.list_object_versions(Bucket=bucket, Prefix=f"t/{r.manifest.archive.key}")["Versions"]
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError, match="AccessDenied|WORM protected"):  # AWS's answer | MinIO's
        s3.delete_object(Bucket=bucket, Key=versions[0]["Key"], VersionId=versions[0]["VersionId"])
    with pytest.raises(ObjectLocked):
        repo.delete_backup("locked-1")
    assert repo.verify("locked-1").ok
