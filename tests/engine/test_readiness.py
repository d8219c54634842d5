"""Readiness of restored workloads (ys1000.drill.readiness) against the sandbox's real controllers
and its simulated kubelet failures (image pull errors, crash loops)."""

from __future__ import annotations

import re
import threading
import time

import pytest

from ys1000.drill.readiness import (
    DAEMONSETS,
    DEPLOYMENTS,
    STATEFULSETS,
    Readiness,
    check_ready,
    wait_ready,
)
from ys1000.kube import Kube, ResourceType
from ys1000.kube.discovery import PODS
from ys1000_dev.sandbox.node import CRASH_MARKERS

BAD_IMAGE = "registry.invalid/app:1"
PULL_ERROR = (
    f'rpc error: code = NotFound desc = failed to pull and unpack image "{BAD_IMAGE}": '
    f'failed to resolve reference "{BAD_IMAGE}": {BAD_IMAGE}: not found'
)
JOBS = ResourceType("batch", "v1", "jobs", "Job", True, frozenset({"list", "create"}))


def template(name: str, image: str = "nginx:1.27", **container) -> dict:
    return {
        "metadata": {"labels": {"app": name}},
        "spec": {"containers": [{"name": "app", "image": image, **container}]},
    }


def deployment(name: str, replicas: int = 1, **kw) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}}, "template": template(name, **kw)},
    }


def statefulset(name: str, replicas: int = 1, **kw) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name},
        "spec": {
            "serviceName": name,
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": template(name, **kw),
        },
    }


def daemonset(name: str) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": {"app": name}}, "template": template(name)},
    }


@pytest.fixture
def kube(source) -> Kube:
    return Kube.from_kubeconfig(source.kubeconfig, name="source")


def pod_name(kube: Kube, ns: str, app: str) -> str:
    [pod] = list(kube.list(PODS, ns, label_selector=f"app={app}"))
    return pod["metadata"]["name"]


def test_deployment_statefulset_daemonset_ready(kube, namespace):
    nodes = len(list(kube.list(ResourceType("", "v1", "nodes", "Node", False, frozenset({"list"})))))
    kube.create(DEPLOYMENTS, deployment("web", replicas=2), namespace)
    kube.create(STATEFULSETS, statefulset("db"), namespace)
    kube.create(DAEMONSETS, daemonset("agent"), namespace)
    # a standalone Job that fails is not the restore's to prove: it does not hold readiness back
    crash_job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "once"},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "c", "image": "busybox", "command": ["sh", "-c", CRASH_MARKERS[0]]}],
                }
            },
        },
    }
    kube.create(JOBS, crash_job, namespace)
    started = time.monotonic()
    r = wait_ready(kube, [namespace], timeout=120)
    assert r.ready is True, r
    assert r.problems == []
    assert r.workloads == [
        f"Deployment {namespace}/web 2/2 available",
        f"StatefulSet {namespace}/db 1/1 ready",
        f"DaemonSet {namespace}/agent {nodes}/{nodes} ready",
    ]
    assert 0 < r.seconds <= time.monotonic() - started + 0.01  # seconds is rounded to 0.01
    again = check_ready(kube, [namespace, namespace])  # a namespace named twice is looked at once
    assert (again.ready, again.workloads, again.problems) == (True, r.workloads, [])
    assert r.to_dict() == {"ready": True, "seconds": r.seconds, "workloads": r.workloads, "problems": []}


def test_unpullable_image_not_ready_early(kube, namespace):
    kube.create(DEPLOYMENTS, deployment("ok"), namespace)
    assert wait_ready(kube, [namespace], timeout=120).ready
    kube.create(DEPLOYMENTS, deployment("web", image=BAD_IMAGE), namespace)
    r = wait_ready(kube, [namespace], timeout=300, settle_failures=3)
    assert r.ready is False
    assert 3 <= r.seconds < 60  # the hard failure settled, long before the timeout
    assert r.workloads == [f"Deployment {namespace}/ok 1/1 available", f"Deployment {namespace}/web 0/1 available"]
    pod = f"pod {namespace}/{pod_name(kube, namespace, 'web')}"
    pulling = f"{pod}: container app ErrImagePull: {PULL_ERROR}"
    backing_off = f'{pod}: container app ImagePullBackOff: Back-off pulling image "{BAD_IMAGE}": {PULL_ERROR}'
    assert r.problems in ([pulling], [backing_off])
    assert check_ready(kube, [namespace]).problems in ([pulling], [backing_off])


def test_crash_loop_named(kube, namespace):
    kube.create(STATEFULSETS, statefulset("db", command=["mysqld", CRASH_MARKERS[0]]), namespace)
    r = wait_ready(kube, [namespace], timeout=300, settle_failures=2)
    assert r.ready is False and r.seconds < 60
    assert r.workloads == [f"StatefulSet {namespace}/db 0/1 ready"]
    [problem] = r.problems
    m = re.fullmatch(rf"pod {namespace}/db-0: container app CrashLoopBackOff \(exit code 1, (\d+) restarts?\)", problem)
    assert m, problem
    assert int(m.group(1)) >= 1


def test_zero_replicas_ready(kube, namespace):
    kube.create(DEPLOYMENTS, deployment("web", replicas=0), namespace)
    kube.create(STATEFULSETS, statefulset("db", replicas=0), namespace)
    r = wait_ready(kube, [namespace], timeout=60)
    assert (r.ready, r.problems) == (True, [])
    assert r.workloads == [f"Deployment {namespace}/web 0/0 available", f"StatefulSet {namespace}/db 0/0 ready"]


def test_empty_namespace_ready(kube, namespace):
    r = wait_ready(kube, [namespace], timeout=60)
    assert (r.ready, r.workloads, r.problems) == (True, [], [])


def test_unschedulable_waits_to_timeout_and_cancel(kube, namespace):
    nodes = len(list(kube.list(ResourceType("", "v1", "nodes", "Node", False, frozenset({"list"})))))
    dep = deployment("web")
    dep["spec"]["template"]["spec"]["nodeSelector"] = {"ys1000.io/no-such-node": "x"}
    kube.create(DEPLOYMENTS, dep, namespace)
    r = wait_ready(kube, [namespace], timeout=8, settle_failures=1)  # not a hard failure: a node may come
    assert r.ready is False and 8 <= r.seconds < 60
    assert r.workloads == [f"Deployment {namespace}/web 0/1 available"]
    [problem] = r.problems
    prefix = (
        f"pod {namespace}/{pod_name(kube, namespace, 'web')}: Unschedulable: 0/{nodes} nodes are available: "
        f"{nodes} node(s) didn't match Pod's node affinity/selector."
    )
    assert problem.startswith(prefix), problem

    cancel = threading.Event()
    threading.Timer(1.0, cancel.set).start()
    started = time.monotonic()
    with pytest.raises(InterruptedError):
        wait_ready(kube, [namespace], timeout=120, cancel=cancel)
    assert time.monotonic() - started < 30


# -- without a cluster: reasons from Events when the pod status has no message ----------------------
class FakeKube:
    def __init__(self, objects: dict[str, list[dict]]):
        self.objects = objects
        self.listed: list[tuple[str, str | None]] = []

    def list(self, rt, namespace=None, *, label_selector=None, field_selector=None, page_size=500):
        self.listed.append((rt.resource, field_selector))
        return iter(self.objects.get(rt.resource, []))


def owned(kind: str, uid: str) -> list[dict]:
    return [{"kind": kind, "uid": uid, "controller": True}]


def ev(uid: str, reason: str, message: str, when: str, field_path: str = "") -> dict:
    return {
        "metadata": {"name": f"e-{when}"},
        "involvedObject": {"kind": "Pod", "uid": uid, "fieldPath": field_path},
        "type": "Warning",
        "reason": reason,
        "message": message,
        "lastTimestamp": when,
    }


def test_messages_from_events():
    dep = {
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "ns", "uid": "d1", "generation": 1},
        "spec": {"replicas": 2},
        "status": {"observedGeneration": 1, "availableReplicas": 0},
    }
    rs = {"metadata": {"name": "web-1", "namespace": "ns", "uid": "r1", "ownerReferences": owned("Deployment", "d1")}}

    def pod(name: str, uid: str, status: dict) -> dict:
        md = {"name": name, "namespace": "ns", "uid": uid, "ownerReferences": owned("ReplicaSet", "r1")}
        return {"metadata": md, "status": status}

    pulling = pod(
        "web-1-a",
        "p1",
        {
            "phase": "Pending",
            "initContainerStatuses": [
                {"name": "init", "state": {"waiting": {"reason": "CreateContainerConfigError"}}, "restartCount": 0}
            ],
            "containerStatuses": [{"name": "app", "state": {"waiting": {"reason": "ErrImagePull"}}}],
        },
    )
    mounting = pod("web-1-b", "p2", {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}]})
    kube = FakeKube(
        {
            "deployments": [dep],
            "replicasets": [rs],
            "pods": [pulling, mounting],
            "events": [
                ev("p1", "Failed", "Error: ErrImagePull", "2025-01-01T00:00:09Z", "spec.containers{app}"),
                ev(
                    "p1",
                    "Failed",
                    'Failed to pull image "x": not found',
                    "2025-01-01T00:00:08Z",
                    "spec.containers{app}",
                ),
                ev("p1", "Failed", 'Error: secret "s" not found', "2025-01-01T00:00:07Z", "spec.initContainers{init}"),
                ev("p2", "FailedScheduling", "0/1 nodes are available", "2025-01-01T00:00:01Z"),
                ev("p2", "FailedMount", 'MountVolume.SetUp failed for volume "cfg"', "2025-01-01T00:00:05Z"),
            ],
        }
    )
    r = check_ready(kube, ["ns"])  # type: ignore[arg-type]
    assert r.ready is False
    assert r.workloads == ["Deployment ns/web 0/2 available"]
    assert r.problems == [
        'pod ns/web-1-a: init container init CreateContainerConfigError: Error: secret "s" not found',
        'pod ns/web-1-a: container app ErrImagePull: Failed to pull image "x": not found',
        'pod ns/web-1-b: FailedMount: MountVolume.SetUp failed for volume "cfg"',
    ]
    assert ("events", "type=Warning") in kube.listed


def test_workload_without_pods_explained_by_its_replicaset():
    dep = {
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "ns", "uid": "d1", "generation": 2},
        "spec": {"replicas": 1},
        "status": {"observedGeneration": 2},
    }
    rs = {
        "metadata": {"name": "web-1", "namespace": "ns", "uid": "r1", "ownerReferences": owned("Deployment", "d1")},
        "status": {
            "conditions": [
                {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": "exceeded quota"}
            ]
        },
    }
    stale = dict(dep, metadata=dict(dep["metadata"], name="old", uid="d2"), status={"observedGeneration": 1})
    r = check_ready(FakeKube({"deployments": [dep, stale], "replicasets": [rs]}), ["ns"])  # type: ignore[arg-type]
    assert r.workloads == ["Deployment ns/old 0/1 available", "Deployment ns/web 0/1 available"]
    assert r.problems == [
        "Deployment ns/old: generation 2 not observed yet (0/1 available)",
        "ReplicaSet ns/web-1: FailedCreate: exceeded quota",
    ]


def test_readiness_to_dict():
    r = Readiness(False, 1.5, ["Deployment a/b 0/1 available"], ["pod a/b-1: Unschedulable: no nodes"])
    assert r.to_dict() == {
        "ready": False,
        "seconds": 1.5,
        "workloads": ["Deployment a/b 0/1 available"],
        "problems": ["pod a/b-1: Unschedulable: no nodes"],
    }


def crash_looping_statefulset(states: list[dict]) -> FakeKube:
    """A StatefulSet whose pod's container shows ``states`` in turn, one per look."""
    sts = {
        "kind": "StatefulSet",
        "metadata": {"name": "db", "namespace": "ns", "uid": "s1", "generation": 1},
        "spec": {"replicas": 1},
        "status": {"observedGeneration": 1, "readyReplicas": 0},
    }
    crashed = {"terminated": {"exitCode": 1, "reason": "Error"}}

    class Looks(FakeKube):
        def list(self, rt, namespace=None, **kw):
            if rt.resource == "pods":
                state = states[sum(1 for r, _ in self.listed if r == "pods") % len(states)]
                cs = {"name": "db", "ready": False, "restartCount": 3, "state": state, "lastState": crashed}
                md = {"name": "db-0", "namespace": "ns", "uid": "p1", "ownerReferences": owned("StatefulSet", "s1")}
                self.objects["pods"] = [{"metadata": md, "status": {"phase": "Running", "containerStatuses": [cs]}}]
            return super().list(rt, namespace, **kw)

    return Looks({"statefulsets": [sts]})


def test_pod_problems_exit_codes_and_restarts():
    back_off = {"waiting": {"reason": "CrashLoopBackOff"}}
    running = {"running": {"startedAt": "2025-01-01T00:00:00Z"}}
    oom = {"terminated": {"exitCode": 137, "reason": "OOMKilled", "message": "out of memory"}}
    problems = [check_ready(crash_looping_statefulset([s]), ["ns"]).problems for s in (back_off, running, oom)]  # type: ignore[arg-type]
    assert problems == [
        ["pod ns/db-0: container db CrashLoopBackOff (exit code 1, 3 restarts)"],
        ["pod ns/db-0: container db restarted 3 times, last exit code 1 (Error)"],
        ["pod ns/db-0: container db terminated with exit code 137 (OOMKilled): out of memory"],
    ]


def test_settle_clock_survives_running_between_crashes():
    back_off = {"waiting": {"reason": "CrashLoopBackOff"}}
    running = {"running": {"startedAt": "2025-01-01T00:00:00Z"}}
    kube = crash_looping_statefulset([back_off, running])
    # looks 2 s apart at most: the failure shows every other look, at most 4 s apart
    r = wait_ready(kube, ["ns"], timeout=30, settle_failures=5.0)  # type: ignore[arg-type]
    assert r.ready is False and 5.0 <= r.seconds < 15
    assert r.problems == ["pod ns/db-0: container db CrashLoopBackOff (exit code 1, 3 restarts)"]
    assert r.workloads == ["StatefulSet ns/db 0/1 ready"]
