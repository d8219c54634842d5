"""Issue 6 acceptance (migration): preflight, three incremental syncs, cutover, undo."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from ys1000.kube import Discovery, Kube
from ys1000.kube.discovery import NAMESPACES, PODS
from ys1000.migration import (
    REPLICAS_ANNOTATION,
    MigrationConflict,
    MigrationSpec,
    restore_resources,
    start_target,
    stop_source,
    sync,
    undo,
)
from ys1000.repository import open_repository
from ys1000_dev.sandbox import sampleapp
from ys1000.waiting import wait_until

DEPLOY = "/apis/apps/v1/namespaces/{ns}/deployments/{name}"
STS = "/apis/apps/v1/namespaces/{ns}/statefulsets/{name}"
CRON = "/apis/batch/v1/namespaces/{ns}/cronjobs/{name}"
JOB = "/apis/batch/v1/namespaces/{ns}/jobs/{name}"
DS = "/apis/apps/v1/namespaces/{ns}/daemonsets/{name}"


def pv_dir(kube: Kube, ns: str, pvc: str) -> Path:
    c = kube.get(f"/api/v1/namespaces/{ns}/persistentvolumeclaims/{pvc}")
    pv = kube.get(f"/api/v1/persistentvolumes/{c['spec']['volumeName']}")
    return Path(pv["spec"]["csi"]["volumeAttributes"]["path"])


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def world(source, target, sandbox_s3):
    src = Kube.from_kubeconfig(source.kubeconfig, name="source")
    tgt = Kube.from_kubeconfig(target.kubeconfig, name="target")
    ns = f"mig-{uuid.uuid4().hex[:6]}"
    src.create(NAMESPACES, {"metadata": {"name": ns}})
    sampleapp.deploy(src, ns)
    wait_until(
        lambda: (
            (src.get_or_none(f"/api/v1/namespaces/{ns}/persistentvolumeclaims/data-mysql-0") or {})
            .get("status", {})
            .get("phase")
            == "Bound"
        ),
        timeout=60,
        what="mysql PVC bound",
    )
    for pvc, size in (("wp-content", 3), ("data-mysql-0", 5)):
        d = pv_dir(src, ns, pvc)
        for i in range(size):
            (d / f"blob-{i}.bin").write_bytes(os.urandom(1 << 20))
        (d / "index.html").write_text(f"{pvc} v1\n")
    bucket = sandbox_s3.new_bucket(f"mig-{uuid.uuid4().hex[:8]}")
    cfg = sandbox_s3.repository_config(bucket, "m")
    repo = open_repository(cfg, "migration-key", create=True)
    spec = MigrationSpec(
        plan="wp-move",
        source_cluster="source",
        target_cluster="target",
        namespaces=[ns],
        namespace_mapping={ns: ns + "-new"},
        storage_class_mapping={"ys1000-local": "ys1000-local-alt"},
    )
    return {
        "src": src,
        "tgt": tgt,
        "ns": ns,
        "tns": ns + "-new",
        "repo": repo,
        "cfg": cfg,
        "spec": spec,
        "bucket": bucket,
    }


def test_preflight_refuses_existing_namespace_before_writing(world, target, sandbox_s3):
    spec = MigrationSpec(
        **{**world["spec"].__dict__, "plan": "other", "namespace_mapping": {world["ns"]: world["ns"] + "-taken"}}
    )
    target.core.create_namespace({"metadata": {"name": world["ns"] + "-taken"}})
    with pytest.raises(MigrationConflict, match=f"Namespace {world['ns']}-taken"):
        sync(world["src"], world["tgt"], world["repo"], world["cfg"], spec, "never")
    assert world["repo"].list_backups("other") == []
    keys = [o["Key"] for o in sandbox_s3.client().list_objects_v2(Bucket=world["bucket"]).get("Contents", [])]
    assert not [k for k in keys if "never" in k]


def test_three_incremental_syncs_then_cutover(world):
    src, tgt, ns, tns, spec = world["src"], world["tgt"], world["ns"], world["tns"], world["spec"]
    results = []
    for i in range(3):
        if i:  # change some data between syncs: a new 256 KiB file and an edited one
            d = pv_dir(src, ns, "wp-content")
            (d / f"upload-{i}.jpg").write_bytes(os.urandom(256 << 10))
            (d / "index.html").write_text(f"wp-content v{i + 1}\n")
        r = sync(src, tgt, world["repo"], world["cfg"], spec, f"wp-move-sync-{i}", run_id=f"sync{i}")
        results.append(r)
        for pvc in ("wp-content", "data-mysql-0"):
            assert tree(pv_dir(tgt, tns, pvc)) == tree(pv_dir(src, ns, pvc)), f"sync {i}: {pvc} differs"
        # the app is not started in the target during syncs
        disc = Discovery.load(tgt)
        assert list(tgt.list(disc.by_kind("Deployment", "apps"), tns)) == []
    sent = [r.bytes_sent for r in results]
    print(f"bytes sent per sync: {sent}")
    assert sent[0] >= 8 << 20
    assert all(s < 2 << 20 for s in sent[1:]), sent  # only the changes (~256 KiB + metadata)
    assert set(results[0].created_pvcs) == {f"{tns}/wp-content", f"{tns}/data-mysql-0"}
    assert results[1].created_pvcs == [] and results[2].created_pvcs == []  # created once, kept
    assert "volumes-alt" in str(pv_dir(tgt, tns, "wp-content"))

    # cutover
    recorded = stop_source(src, [ns])
    assert recorded == {f"{ns}/Deployment/wordpress": 2, f"{ns}/StatefulSet/mysql": 1, f"{ns}/CronJob/wp-cron": False}
    assert src.get(DEPLOY.format(ns=ns, name="wordpress"))["spec"]["replicas"] == 0
    assert src.get(CRON.format(ns=ns, name="wp-cron"))["spec"]["suspend"] is True
    final = sync(src, tgt, world["repo"], world["cfg"], spec, "wp-move-final", run_id="final")
    report = restore_resources(tgt, world["repo"], spec, final.backup_id, "wp-move-cutover")
    assert report.status == "Completed", report.failed
    started = start_target(tgt, spec, recorded)
    assert len(started) == 3
    assert tgt.get(CRON.format(ns=tns, name="wp-cron"))["spec"]["suspend"] is False
    assert tgt.get(DEPLOY.format(ns=tns, name="wordpress"))["spec"]["replicas"] == 2
    assert tgt.get(STS.format(ns=tns, name="mysql"))["spec"]["replicas"] == 1
    assert REPLICAS_ANNOTATION not in (
        tgt.get(DEPLOY.format(ns=tns, name="wordpress"))["metadata"].get("annotations") or {}
    )
    for pvc in ("wp-content", "data-mysql-0"):
        assert tree(pv_dir(tgt, tns, pvc)) == tree(pv_dir(src, ns, pvc))
    disc = Discovery.load(tgt)
    for kind, group, name in (
        ("Secret", "", "mysql-pass"),
        ("ConfigMap", "", "wp-config"),
        ("Ingress", "networking.k8s.io", "wordpress"),
        ("Service", "", "wordpress"),
        ("CronJob", "batch", "wp-cron"),
        ("Site", "demo.ys1000.io", "blog"),
    ):
        assert tgt.get_or_none(disc.by_kind(kind, group).path(tns, name)) is not None, f"{kind} {name} missing"
    wait_until(
        lambda: len([p for p in tgt.list(PODS, tns) if p.get("status", {}).get("phase") == "Running"]) >= 3,
        timeout=60,
        what="the migrated app running in the target",
    )
    assert src.get(DEPLOY.format(ns=ns, name="wordpress"))["spec"]["replicas"] == 0


def test_undo_restores_source_replicas(source, make_namespace):
    src = Kube.from_kubeconfig(source.kubeconfig)
    ns = make_namespace(source)
    source.apps.create_namespaced_deployment(
        ns,
        {
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "nginx"}]},
                },
            },
        },
    )
    recorded = stop_source(src, [ns])
    assert recorded == {f"{ns}/Deployment/web": 3}
    # a retried stop keeps the first recording (the live value is 0 now)
    assert stop_source(src, [ns]) == recorded
    spec = MigrationSpec(plan="p", source_cluster="source", target_cluster="target", namespaces=[ns])
    undone = undo(src, src, spec, [ns])
    assert undone == [f"source Deployment {ns}/web scaled back to 3"]
    dep = src.get(DEPLOY.format(ns=ns, name="web"))
    assert dep["spec"]["replicas"] == 3 and REPLICAS_ANNOTATION not in (dep["metadata"].get("annotations") or {})


def test_cutover_stops_every_kind_of_workload(source, make_namespace, caplog):
    """A CronJob firing, a Job running, a DaemonSet: a cutover that only scaled Deployments and
    StatefulSets waited forever on their pods (and a cron firing after the final sync would write
    to the source). All are stopped, recorded, and brought back by undo; a bare pod is named."""
    src = Kube.from_kubeconfig(source.kubeconfig)
    ns = make_namespace(source)
    labels = {"app": "agent"}
    pod = {"containers": [{"name": "c", "image": "busybox"}]}
    source.apps.create_namespaced_daemon_set(
        ns,
        {
            "metadata": {"name": "agent"},
            "spec": {
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {**pod, "nodeSelector": {"kubernetes.io/os": "linux"}},
                },
            },
        },
    )
    batch = source.batch
    batch.create_namespaced_job(
        ns,
        {
            "metadata": {"name": "import"},
            "spec": {"parallelism": 2, "template": {"spec": {**pod, "restartPolicy": "Never"}}},
        },
    )
    batch.create_namespaced_cron_job(
        ns,
        {
            "metadata": {"name": "nightly"},
            "spec": {
                "schedule": "0 3 * * *",
                "jobTemplate": {"spec": {"template": {"spec": {**pod, "restartPolicy": "Never"}}}},
            },
        },
    )
    source.core.create_namespaced_pod(ns, {"metadata": {"name": "debug"}, "spec": {**pod, "nodeName": "source-node-1"}})

    def running() -> set[str]:
        return {
            p["metadata"]["name"].rsplit("-", 1)[0]
            for p in src.list(PODS, ns)
            if p.get("status", {}).get("phase") == "Running"
        }

    wait_until(lambda: {"agent", "import", "debug"} <= running(), timeout=60, what="the pods running")

    with caplog.at_level("WARNING", logger="ys1000.migration"):
        recorded = stop_source(src, [ns], timeout=60)
    assert recorded == {
        f"{ns}/DaemonSet/agent": {"kubernetes.io/os": "linux"},
        f"{ns}/Job/import": 2,
        f"{ns}/CronJob/nightly": False,
    }
    assert running() == {"debug"}
    assert "keep running during the cutover: debug" in caplog.text
    assert src.get(CRON.format(ns=ns, name="nightly"))["spec"]["suspend"] is True
    assert src.get(JOB.format(ns=ns, name="import"))["spec"]["parallelism"] == 0
    assert stop_source(src, [ns], timeout=60) == recorded  # a retry keeps the first recording

    spec = MigrationSpec(plan="p", source_cluster="source", target_cluster="target", namespaces=[ns])
    undone = undo(src, src, spec, [ns])
    assert undone == [
        f"source CronJob {ns}/nightly back to scheduling",
        f"source DaemonSet {ns}/agent back to nodeSelector {{'kubernetes.io/os': 'linux'}}",
        f"source Job {ns}/import back to parallelism 2",
    ]
    ds = src.get(DS.format(ns=ns, name="agent"))
    assert ds["spec"]["template"]["spec"]["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert not [k for k in ds["metadata"].get("annotations") or {} if k.startswith("ys1000.io/")]
    assert src.get(CRON.format(ns=ns, name="nightly"))["spec"]["suspend"] is False
    wait_until(lambda: {"agent", "import"} <= running(), timeout=60, what="the workloads running again")
