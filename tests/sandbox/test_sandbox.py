"""Acceptance of the sandbox: real API servers, real controllers, the Python node and storage side."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from kubernetes.client.exceptions import ApiException

from ys1000_dev.sandbox import supervisor
from ys1000.waiting import wait_until

SNAP = ("snapshot.storage.k8s.io", "v1")


def deployment(name: str, replicas: int = 2, volumes=None, mounts=None) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [{"name": "web", "image": "nginx:1.27", "volumeMounts": mounts or []}],
                    "volumes": volumes or [],
                },
            },
        },
    }


def pvc(name: str, storage_class: str = "ys1000-local", source: dict | None = None) -> dict:
    spec = {
        "accessModes": ["ReadWriteOnce"],
        "storageClassName": storage_class,
        "resources": {"requests": {"storage": "1Gi"}},
    }
    if source:
        spec["dataSource"] = source
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name}, "spec": spec}


def run_job(cluster, ns: str, name: str, script: str, claim: str) -> dict:
    """An executable Job mounting ``claim`` at /data; returns its finished pod (as a dict)."""
    cluster.batch.create_namespaced_job(
        ns,
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name},
            "spec": {
                "backoffLimit": 0,
                "template": {
                    "metadata": {"labels": {"ys1000.io/executable": "true"}},
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [
                            {
                                "name": "main",
                                "image": "busybox",
                                "command": ["sh", "-c", script],
                                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                            }
                        ],
                        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}],
                    },
                },
            },
        },
    )

    def finished():
        st = cluster.batch.read_namespaced_job_status(name, ns).status
        return st if (st.succeeded or st.failed) else None

    status = wait_until(finished, timeout=60, what=f"job {ns}/{name} to finish")
    assert status.succeeded == 1, f"job {name} failed: {status}"
    pods = cluster.core.list_namespaced_pod(ns, label_selector=f"job-name={name}").items
    assert len(pods) == 1
    return pods[0]


def pod_log(cluster, ns: str, pod: str) -> str:
    # the client's own str decoding of this endpoint returns repr(bytes); read raw bytes instead
    return cluster.core.read_namespaced_pod_log(pod, ns, _preload_content=False).data.decode()


def pv_dir(cluster, ns: str, claim: str) -> Path:
    c = cluster.core.read_namespaced_persistent_volume_claim(claim, ns)
    pv = cluster.core.read_persistent_volume(c.spec.volume_name)
    return Path(pv.spec.csi.volume_attributes["path"])


def bound(cluster, ns, name):
    return cluster.core.read_namespaced_persistent_volume_claim(name, ns).status.phase == "Bound"


def test_deployment_pods_scheduled_running_ready(source, namespace):
    source.apps.create_namespaced_deployment(namespace, deployment("web", replicas=2))

    def ready_pods():
        pods = source.core.list_namespaced_pod(namespace, label_selector="app=web").items
        ok = [
            p
            for p in pods
            if p.status.phase == "Running"
            and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
        ]
        return ok if len(ok) == 2 else None

    pods = wait_until(ready_pods, timeout=60, what="2 Running/Ready pods")
    nodes = {n.metadata.name for n in source.core.list_node().items}
    assert {p.spec.node_name for p in pods} <= nodes
    assert all(p.status.pod_ip for p in pods)
    rs = source.apps.list_namespaced_replica_set(namespace).items
    assert len(rs) == 1 and rs[0].metadata.owner_references[0].kind == "Deployment"
    assert pods[0].metadata.owner_references[0].name == rs[0].metadata.name
    wait_until(
        lambda: source.apps.read_namespaced_deployment_status("web", namespace).status.ready_replicas == 2,
        timeout=30,
        what="deployment status readyReplicas=2",
    )


def test_namespace_deletion_finishes(source, make_namespace):
    ns = make_namespace(source)
    source.apps.create_namespaced_deployment(
        ns,
        deployment(
            "app",
            replicas=1,
            volumes=[{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}],
            mounts=[{"name": "d", "mountPath": "/data"}],
        ),
    )
    source.core.create_namespaced_config_map(ns, {"metadata": {"name": "cfg"}, "data": {"a": "b"}})
    source.core.create_namespaced_persistent_volume_claim(ns, pvc("data"))
    wait_until(lambda: bound(source, ns, "data"), timeout=30, what="PVC bound")
    wait_until(
        lambda: [p for p in source.core.list_namespaced_pod(ns).items if p.status.phase == "Running"],
        timeout=60,
        what="the app pod running",
    )
    volume = pv_dir(source, ns, "data")
    assert volume.is_dir()
    source.core.delete_namespace(ns)

    def gone():
        try:
            source.core.read_namespace(ns)
            return False
        except ApiException as exc:
            return exc.status == 404

    wait_until(gone, timeout=60, what=f"namespace {ns} to be deleted")
    # reclaim policy Delete: the PV and its directory go too
    wait_until(lambda: not volume.exists(), timeout=30, what="the PV directory to be removed")


def test_statefulset_gets_bound_pvcs_backed_by_directories(source, namespace):
    source.apps.create_namespaced_stateful_set(
        namespace,
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": "db"},
            "spec": {
                "serviceName": "db",
                "replicas": 2,
                "selector": {"matchLabels": {"app": "db"}},
                "template": {
                    "metadata": {"labels": {"app": "db"}},
                    "spec": {
                        "containers": [
                            {
                                "name": "db",
                                "image": "mariadb:11",
                                "volumeMounts": [{"name": "data", "mountPath": "/var/lib/mysql"}],
                            }
                        ]
                    },
                },
                "volumeClaimTemplates": [
                    {
                        "metadata": {"name": "data"},
                        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
                    }
                ],
            },
        },
    )
    names = ["data-db-0", "data-db-1"]
    for n in names:  # the StatefulSet controller creates db-1 only when db-0 is Running and Ready
        wait_until(lambda n=n: _exists_and_bound(source, namespace, n), timeout=60, what=f"PVC {n} bound")
    for n in names:
        c = source.core.read_namespaced_persistent_volume_claim(n, namespace)
        assert c.spec.storage_class_name == "ys1000-local"  # the default class was applied
        d = pv_dir(source, namespace, n)
        assert d.is_dir() and source.root in d.parents
    wait_until(
        lambda: source.apps.read_namespaced_stateful_set_status("db", namespace).status.ready_replicas == 2,
        timeout=60,
        what="statefulset ready",
    )


def _exists_and_bound(cluster, ns, name):
    try:
        return bound(cluster, ns, name)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise


def test_executable_job_writes_to_pvc_and_snapshot_restores_it(source, namespace):
    source.core.create_namespaced_persistent_volume_claim(namespace, pvc("data"))
    wait_until(lambda: bound(source, namespace, "data"), timeout=30, what="PVC bound")
    pod = run_job(source, namespace, "writer", "echo hi > /data/f && echo wrote-it", "data")
    assert (pv_dir(source, namespace, "data") / "f").read_text() == "hi\n"
    # the output is readable through the API server, as `kubectl logs` reads it
    assert pod_log(source, namespace, pod.metadata.name) == "wrote-it\n"

    source.custom.create_namespaced_custom_object(
        *SNAP,
        namespace,
        "volumesnapshots",
        {
            "apiVersion": "snapshot.storage.k8s.io/v1",
            "kind": "VolumeSnapshot",
            "metadata": {"name": "snap"},
            "spec": {"source": {"persistentVolumeClaimName": "data"}},
        },
    )
    vs = wait_until(
        lambda: (lambda o: o if (o.get("status") or {}).get("readyToUse") else None)(
            source.custom.get_namespaced_custom_object(*SNAP, namespace, "volumesnapshots", "snap")
        ),
        timeout=30,
        what="snapshot readyToUse",
    )
    content = source.custom.get_cluster_custom_object(
        *SNAP, "volumesnapshotcontents", vs["status"]["boundVolumeSnapshotContentName"]
    )
    assert content["status"]["readyToUse"] and content["spec"]["deletionPolicy"] == "Delete"

    # the snapshot is a point in time: later writes do not reach it
    (pv_dir(source, namespace, "data") / "f").write_text("changed\n")
    source.core.create_namespaced_persistent_volume_claim(
        namespace,
        pvc(
            "from-snap",
            storage_class="ys1000-local-alt",
            source={"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": "snap"},
        ),
    )
    wait_until(lambda: bound(source, namespace, "from-snap"), timeout=30, what="PVC from snapshot bound")
    assert (pv_dir(source, namespace, "from-snap") / "f").read_text() == "hi\n"
    reader = run_job(source, namespace, "reader", "cat /data/f", "from-snap")
    assert pod_log(source, namespace, reader.metadata.name) == "hi\n"


def test_failing_executable_pod_fails_the_job(source, namespace):
    """A hook pod, recognised by the product's own label (no sandbox label), runs and fails."""
    source.batch.create_namespaced_job(
        namespace,
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "bad"},
            "spec": {
                "backoffLimit": 0,
                "template": {
                    "metadata": {"labels": {"ys1000.io/component": "hook"}},
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [
                            {"name": "main", "image": "busybox", "command": ["sh", "-c", "echo oops >&2; exit 3"]}
                        ],
                    },
                },
            },
        },
    )
    wait_until(
        lambda: source.batch.read_namespaced_job_status("bad", namespace).status.failed, timeout=60, what="job to fail"
    )
    pod = source.core.list_namespaced_pod(namespace, label_selector="job-name=bad").items[0]
    assert pod.status.phase == "Failed"
    assert pod.status.container_statuses[0].state.terminated.exit_code == 3
    assert pod_log(source, namespace, pod.metadata.name) == "oops\n"


def test_clusters_are_independent(source, target, make_namespace):
    ns = make_namespace(source)
    source.core.create_namespaced_config_map(ns, {"metadata": {"name": "only-here"}})
    with pytest.raises(ApiException) as exc:
        target.core.read_namespace(ns)
    assert exc.value.status == 404
    assert source.api().configuration.host != target.api().configuration.host
    assert {n.metadata.name for n in source.core.list_node().items}.isdisjoint(
        {n.metadata.name for n in target.core.list_node().items}
    )


def test_sandbox_up_down_leaves_no_process(tmp_path, sandbox):
    """The CLI round trip on a separate one-cluster sandbox (the session's keeps running)."""
    d = tmp_path / "sb"
    ys1000_dev = [str(Path(sys.executable).parent / "ys1000-dev")]  # the dev package's console script
    out = subprocess.run(
        [*ys1000_dev, "sandbox", "up", "--dir", str(d), "--clusters", "1"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    info = supervisor.status(d)
    assert info and (d / "source.kubeconfig").exists() and (d / "s3.env").exists()
    pids = [info["supervisor_pid"], info["s3"]["pid"], *(c["pid"] for c in info["clusters"].values())]
    print(f"sandbox with 1 cluster started in {info['started_in_seconds']} s")
    assert all(_alive(p) for p in pids)
    out = subprocess.run([*ys1000_dev, "sandbox", "down", "--dir", str(d)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert [p for p in pids if _alive(p)] == []
    assert supervisor.status(d) is None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(")")[-1].split()[0] != "Z"
