"""The sandbox's simulated kubelet failures: image pull errors and crash loops, reported through
the real API server as a kubelet reports them (pod status and Warning Events)."""

from __future__ import annotations

import threading
from pathlib import Path

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ys1000.kube import Kube
from ys1000.kube.discovery import NAMESPACES, PODS, core
from ys1000.waiting import wait_until
from ys1000_dev.sandbox.node import CRASH_MARKERS, PULL_FAILURES, NodeAgent

EVENTS = core("events", "Event")
BAD_IMAGE = "registry.invalid/app:1"
PULL_ERROR = (
    f'rpc error: code = NotFound desc = failed to pull and unpack image "{BAD_IMAGE}": '
    f'failed to resolve reference "{BAD_IMAGE}": {BAD_IMAGE}: not found'
)


def deployment(name: str, image: str = "nginx:1.27", command: list[str] | None = None) -> dict:
    container: dict = {"name": "app", "image": image}
    if command:
        container["command"] = command
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [container]}},
        },
    }


def bare_pod(name: str, containers: list[dict], init: list[dict] | None = None, restart: str = "Always") -> dict:
    spec: dict = {"restartPolicy": restart, "containers": containers}
    if init:
        spec["initContainers"] = init
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def kube_of(cluster) -> Kube:
    return Kube.from_kubeconfig(cluster.kubeconfig, name=cluster.name)


def pod_of(kube: Kube, ns: str, app: str) -> dict | None:
    pods = list(kube.list(PODS, ns, label_selector=f"app={app}"))
    return pods[0] if len(pods) == 1 else None


def waiting(pod: dict | None, reason: str, key: str = "containerStatuses") -> dict | None:
    """The pod when its first container (of ``key``) is waiting with ``reason``."""
    for cs in ((pod or {}).get("status") or {}).get(key) or []:
        if (cs.get("state") or {}).get("waiting", {}).get("reason") == reason:
            return pod
    return None


def conditions(pod: dict) -> dict[str, dict]:
    return {c["type"]: c for c in pod["status"]["conditions"]}


def events_of(kube: Kube, pod: dict) -> list[dict]:
    md = pod["metadata"]
    return list(kube.list(EVENTS, md["namespace"], field_selector=f"involvedObject.uid={md['uid']}"))


def event(kube: Kube, pod: dict, type_: str, reason: str) -> dict | None:
    return next((e for e in events_of(kube, pod) if e["type"] == type_ and e["reason"] == reason), None)


def test_unpullable_image_err_image_pull_then_back_off(source, namespace):
    kube = kube_of(source)
    source.apps.create_namespaced_deployment(namespace, deployment("web", image=BAD_IMAGE))
    pod = wait_until(lambda: waiting(pod_of(kube, namespace, "web"), "ErrImagePull"), timeout=60, what="ErrImagePull")
    name, uid = pod["metadata"]["name"], pod["metadata"]["uid"]
    assert pod["status"]["phase"] == "Pending"
    conds = conditions(pod)
    for t in ("Ready", "ContainersReady"):
        assert conds[t]["status"] == "False"
        assert conds[t]["reason"] == "ContainersNotReady"
        assert conds[t]["message"] == "containers with unready status: [app]"
    assert conds["PodScheduled"]["status"] == "True"
    [cs] = pod["status"]["containerStatuses"]
    assert cs["state"] == {"waiting": {"reason": "ErrImagePull", "message": PULL_ERROR}}
    assert (cs["ready"], cs["started"], cs["restartCount"], cs["image"]) == (False, False, 0, BAD_IMAGE)

    failed = wait_until(lambda: event(kube, pod, "Warning", "Failed"), timeout=30, what="the Failed event")
    assert failed["message"] == f'Failed to pull image "{BAD_IMAGE}": {PULL_ERROR}'
    assert failed["involvedObject"]["kind"] == "Pod"
    assert (failed["involvedObject"]["name"], failed["involvedObject"]["uid"]) == (name, uid)
    assert failed["involvedObject"]["fieldPath"] == "spec.containers{app}"
    assert failed["source"]["component"] == "kubelet"
    assert failed["count"] >= 1  # a repeat raises the count (seen below)

    # the kubelet's next sync: back-off, with the pull error in the message
    pod = wait_until(
        lambda: waiting(pod_of(kube, namespace, "web"), "ImagePullBackOff"), timeout=30, what="ImagePullBackOff"
    )
    assert pod["metadata"]["uid"] == uid and pod["status"]["phase"] == "Pending"
    assert pod["status"]["containerStatuses"][0]["state"]["waiting"]["message"] == (
        f'Back-off pulling image "{BAD_IMAGE}": {PULL_ERROR}'
    )
    # Events are posted after the status, as a kubelet does: wait for it rather than race the agent
    backoff = wait_until(lambda: event(kube, pod, "Normal", "BackOff"), timeout=30, what="the BackOff event")
    assert backoff["message"] == f'Back-off pulling image "{BAD_IMAGE}"'
    # after the 10 s back-off the pull is tried again: the same Event, counted
    again = wait_until(
        lambda: (e := event(kube, pod, "Warning", "Failed")) and e["count"] >= 2 and e,
        timeout=60,
        what="a second pull attempt",
    )
    assert again["message"] == failed["message"]
    dep = source.apps.read_namespaced_deployment_status("web", namespace).status
    assert not dep.available_replicas and dep.unavailable_replicas == 1


def test_crash_marker_crash_loop_back_off(source, namespace):
    kube = kube_of(source)
    command = ["sh", "-c", f"echo {CRASH_MARKERS[0]}; exit 1"]
    source.apps.create_namespaced_deployment(namespace, deployment("db", command=command))
    pod = wait_until(
        lambda: waiting(pod_of(kube, namespace, "db"), "CrashLoopBackOff"), timeout=60, what="CrashLoopBackOff"
    )
    md = pod["metadata"]
    assert pod["status"]["phase"] == "Running"
    assert conditions(pod)["Ready"]["status"] == "False"
    [cs] = pod["status"]["containerStatuses"]
    restarts = cs["restartCount"]
    assert restarts >= 1 and cs["ready"] is False
    assert cs["state"]["waiting"]["message"] == (  # 10 s, doubling per restart
        f"back-off {10 * 2 ** (restarts - 1)}s restarting failed container=app pod={md['name']}_{namespace}({md['uid']})"
    )
    last = cs["lastState"]["terminated"]
    assert (last["exitCode"], last["reason"]) == (1, "Error")
    ev = wait_until(lambda: event(kube, pod, "Warning", "BackOff"), timeout=30, what="the BackOff event")
    assert ev["message"] == f"Back-off restarting failed container app in pod {md['name']}_{namespace}({md['uid']})"
    assert ev["involvedObject"]["name"] == md["name"]
    # it keeps restarting, with a longer back-off each time
    pod = wait_until(
        lambda: (
            (p := pod_of(kube, namespace, "db"))
            and p["status"]["containerStatuses"][0]["restartCount"] > restarts
            and p
        ),
        timeout=90,
        what="one more restart",
    )
    assert pod["metadata"]["uid"] == md["uid"]
    cs = pod["status"]["containerStatuses"][0]
    assert cs["state"]["waiting"]["message"].startswith(f"back-off {10 * 2 ** (cs['restartCount'] - 1)}s ")


def test_init_container_pull_error_and_crash_without_restart(source, namespace):
    kube = kube_of(source)
    source.core.create_namespaced_pod(
        namespace,
        bare_pod(
            "init-fails",
            [{"name": "main", "image": "nginx:1.27"}],
            init=[{"name": "setup", "image": "busybox:unpullable"}],
        ),
    )
    crash = ["sh", "-c", f"{CRASH_MARKERS[0]}"]
    source.core.create_namespaced_pod(
        namespace, bare_pod("once", [{"name": "main", "image": "busybox", "command": crash}], restart="Never")
    )

    def pod(name):
        return kube.get_or_none(PODS.path(namespace, name))

    p = wait_until(lambda: waiting(pod("init-fails"), "ErrImagePull", "initContainerStatuses"), timeout=60, what="x")
    assert p["status"]["phase"] == "Pending"
    init = conditions(p)["Initialized"]
    assert (init["status"], init["reason"], init["message"]) == (
        "False",
        "ContainersNotInitialized",
        "containers with incomplete status: [setup]",
    )
    assert p["status"]["containerStatuses"][0]["state"] == {"waiting": {"reason": "PodInitializing"}}

    p = wait_until(lambda: (q := pod("once")) and q["status"].get("phase") == "Failed" and q, timeout=60, what="Failed")
    term = p["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (term["exitCode"], term["reason"]) == (1, "Error")
    assert p["status"]["containerStatuses"][0]["restartCount"] == 0


def test_ordinary_pod_still_running_ready(source, namespace):
    kube = kube_of(source)
    source.apps.create_namespaced_deployment(namespace, deployment("bad", image=BAD_IMAGE))
    source.apps.create_namespaced_deployment(namespace, deployment("ok", command=["nginx", "-g", "daemon off;"]))

    def ready():
        p = pod_of(kube, namespace, "ok")
        return p if p and p["status"].get("phase") == "Running" and conditions(p)["Ready"]["status"] == "True" else None

    p = wait_until(ready, timeout=60, what="the ordinary pod Running/Ready")
    [cs] = p["status"]["containerStatuses"]
    assert "running" in cs["state"] and cs["ready"] is True and cs["restartCount"] == 0
    # the scheduler's (posted asynchronously, so waited for); nothing from the node
    wait_until(lambda: events_of(kube, p), timeout=30, what="the Scheduled event")
    assert [e["reason"] for e in events_of(kube, p)] == ["Scheduled"]
    wait_until(
        lambda: source.apps.read_namespaced_deployment_status("ok", namespace).status.available_replicas == 1,
        timeout=30,
        what="deployment ok available",
    )


def test_namespace_with_failing_pods_deletes(source, make_namespace):
    kube = kube_of(source)
    ns = make_namespace(source)
    source.apps.create_namespaced_deployment(ns, deployment("web", image=BAD_IMAGE))
    source.apps.create_namespaced_deployment(ns, deployment("db", command=["run", CRASH_MARKERS[0]]))
    wait_until(
        lambda: (
            waiting(pod_of(kube, ns, "web"), "ErrImagePull") or waiting(pod_of(kube, ns, "web"), "ImagePullBackOff")
        ),
        timeout=60,
        what="web failing",
    )
    wait_until(lambda: waiting(pod_of(kube, ns, "db"), "CrashLoopBackOff"), timeout=60, what="db failing")
    source.core.delete_namespace(ns)

    def gone():
        try:
            source.core.read_namespace(ns)
            return False
        except ApiException as exc:
            return exc.status == 404

    wait_until(gone, timeout=90, what=f"namespace {ns} to be deleted")
    assert kube.get_or_none(NAMESPACES.path(name=ns)) is None


# -- without a cluster: which pods fail, by the agent's own parameters ------------------------------
def agent(**kw) -> NodeAgent:
    api = client.ApiClient(client.Configuration(host="https://127.0.0.1:6443"))
    return NodeAgent(
        api, ["n1"], Path("/nonexistent"), Path("/nonexistent"), 0, lambda pv: None, threading.Event(), **kw
    )


def spec_pod(*containers: dict, init: tuple[dict, ...] = ()) -> dict:
    return {
        "metadata": {"name": "p", "namespace": "ns", "uid": "u"},
        "spec": {"containers": list(containers), "initContainers": list(init)},
    }


def test_failure_rules_defaults_and_parameters():
    default = agent()
    assert (default.pull_failures, default.crash_markers) == (PULL_FAILURES, CRASH_MARKERS)
    pod = spec_pod(
        {"name": "a", "image": "registry.invalid/x:1"},
        {"name": "b", "image": "busybox:unpullable"},
        {"name": "c", "image": "busybox", "args": ["--flag=ys1000-sandbox-crash"]},
        {"name": "d", "image": "nginx:1.27", "command": ["nginx"]},
        init=({"name": "i", "image": "quay.invalid/i"},),
    )
    assert default._failures_of(pod) == {"i": "pull", "a": "pull", "b": "pull", "c": "crash"}
    custom = agent(pull_failures=("nginx:*",), crash_markers=("boom",))
    assert custom._failures_of(pod) == {"d": "pull"}
    assert custom._failures_of(spec_pod({"name": "x", "image": "busybox", "command": ["sh", "-c", "boom"]})) == {
        "x": "crash"
    }
    assert agent(pull_failures=(), crash_markers=())._failures_of(pod) == {}
