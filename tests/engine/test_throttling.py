"""Issue 16 fault matrix — API server throttling: real 429s from the API server's own Priority and
Fairness. A FlowSchema sends every request of the product's identity (a ServiceAccount) to a
PriorityLevelConfiguration with the smallest concurrency and ``Reject`` as its limit response; a
few threads of the same identity keep that level full. The backup and the restore run under it:
they retry with backoff, complete, count the retries; with the retries turned off the same load
fails naming the 429 (so the load is real and the handling is what makes the difference)."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from ys1000.backup import BackupSpec, run_backup
from ys1000.kube import Discovery, Kube, KubeError
from ys1000.kube.discovery import NAMESPACES
from ys1000.repository import layout
from ys1000.restore import RestoreOptions, RestoreSpec, run_restore
from ys1000.waiting import wait_until

from kube_helpers import token_kubeconfig

from engine_helpers import normalize, repo_for

FLOWCONTROL = "/apis/flowcontrol.apiserver.k8s.io/v1"


def _apf_objects(name: str, sa_ns: str) -> tuple[dict, dict]:
    level = {
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
        "kind": "PriorityLevelConfiguration",
        "metadata": {"name": name},
        "spec": {
            "type": "Limited",
            "limited": {
                "nominalConcurrencyShares": 1,  # the smallest share: a few seats
                "lendablePercent": 0,
                "borrowingLimitPercent": 0,
                "limitResponse": {"type": "Reject"},  # over the limit: 429 at once, no queueing
            },
        },
    }
    schema = {
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
        "kind": "FlowSchema",
        "metadata": {"name": name},
        "spec": {
            "priorityLevelConfiguration": {"name": name},
            "matchingPrecedence": 300,  # before the built-in service-accounts schema (9000)
            "distinguisherMethod": {"type": "ByUser"},
            "rules": [
                {
                    "subjects": [{"kind": "ServiceAccount", "serviceAccount": {"name": "product", "namespace": sa_ns}}],
                    "resourceRules": [
                        {
                            "verbs": ["*"],
                            "apiGroups": ["*"],
                            "resources": ["*"],
                            "clusterScope": True,
                            "namespaces": ["*"],
                        }
                    ],
                    "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
                }
            ],
        },
    }
    return level, schema


def _flow_schema_of(kube: Kube) -> str:
    """The FlowSchema the API server classified a request of ``kube``'s identity into (header)."""
    resp = kube.api.call_api(
        "/api/v1/namespaces/default",
        "GET",
        header_params={"Accept": "application/json"},
        auth_settings=["BearerToken"],
        _preload_content=False,
    )
    resp = resp[0] if isinstance(resp, tuple) else resp
    return resp.headers.get("X-Kubernetes-PF-FlowSchema-UID", "")


class Hogs:
    """Fill every seat of the tiny priority level for about ``hold`` seconds: each hog is a request
    of the throttled identity that holds its seat for 3 s without using the CPU (a LIST at a
    resourceVersion the server does not have yet: the watch cache waits for it, then answers 504),
    re-sent until ``hold`` has passed since a probe of the same identity was rejected: the first
    request after entering meets a 429 for certain; a few seconds later the level frees up."""

    def __init__(self, kube: Kube, seats: int, hold: float = 1.0):
        self.kube, self.hold = Kube(kube.api, name=kube.name, throttle_budget=0), hold
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(seats)]
        self.until = 0.0

    def _future_rv(self) -> str:
        rv = self.kube.get("/api/v1/namespaces/default")["metadata"]["resourceVersion"]
        return str(int(rv) + 10**9)

    def _run(self) -> None:
        query = {"resourceVersion": self.future_rv, "resourceVersionMatch": "NotOlderThan", "limit": 1}
        while True:  # at least once, however late the thread starts
            try:
                self.kube._raw("GET", "/api/v1/configmaps", query=query)
            except KubeError:
                pass  # 504 after 3 s, or a 429 while another hog took the seat: send it again
            if time.monotonic() >= self.until:
                return

    def _rejected(self) -> bool:
        try:
            self.kube.get("/api/v1/namespaces/default")
        except KubeError as exc:
            return exc.status == 429
        return False

    def __enter__(self) -> "Hogs":
        self.future_rv = self._future_rv()
        self.until = float("inf")  # the hogs hold on until the level is seen full, then ``hold`` more
        for t in self.threads:
            t.start()
        wait_until(self._rejected, timeout=30, what="the tiny priority level full (a probe rejected)")
        self.until = time.monotonic() + self.hold
        return self

    def __exit__(self, *exc) -> None:
        for t in self.threads:
            t.join()


def _seats(admin: Kube, level: str) -> int:
    """The level's concurrency limit, as the API server computed it (its metrics)."""
    prefix = f'apiserver_flowcontrol_nominal_limit_seats{{priority_level="{level}"}} '
    for line in admin._raw("GET", "/metrics", accept="*/*").decode().splitlines():
        if line.startswith(prefix):
            return int(float(line[len(prefix) :]))
    return 0


@pytest.fixture(scope="module")
def throttled(source, sandbox_s3, tmp_path_factory):
    """An identity whose every request goes to a tiny, rejecting priority level; an app to back up."""
    admin = Kube.from_kubeconfig(source.kubeconfig, name="source")
    tag = uuid.uuid4().hex[:6]
    sa_ns, app_ns, name = f"apf-{tag}", f"apf-app-{tag}", f"ys1000-tiny-{tag}"
    for ns in (sa_ns, app_ns):
        admin.create(NAMESPACES, {"metadata": {"name": ns}})
    admin.request("POST", f"/api/v1/namespaces/{sa_ns}/serviceaccounts", body={"metadata": {"name": "product"}})
    binding = f"apf-product-{tag}"
    admin.request(
        "POST",
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        body={
            "metadata": {"name": binding},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [{"kind": "ServiceAccount", "name": "product", "namespace": sa_ns}],
        },
    )
    level, schema = _apf_objects(name, sa_ns)
    admin.request("POST", f"{FLOWCONTROL}/prioritylevelconfigurations", body=level)
    schema_uid = admin.request("POST", f"{FLOWCONTROL}/flowschemas", body=schema)["metadata"]["uid"]
    path = token_kubeconfig(
        admin, source.kubeconfig, sa_ns, "product", tmp_path_factory.mktemp("apf") / "kubeconfig", 3600
    )
    probe = Kube.from_kubeconfig(path, name="source")
    wait_until(lambda: _flow_schema_of(probe) == schema_uid, timeout=60, what="the FlowSchema in effect")
    seats = wait_until(lambda: _seats(admin, name), timeout=60, what=f"the seats of priority level {name}")

    # an application: enough objects that the capture and the restore send many requests
    for i in range(40):
        admin.request(
            "POST",
            f"/api/v1/namespaces/{app_ns}/configmaps",
            body={"metadata": {"name": f"cm-{i}", "labels": {"app": "web"}}, "data": {"k": f"value {i}" * 20}},
        )
    for i in range(10):
        admin.request(
            "POST",
            f"/api/v1/namespaces/{app_ns}/secrets",
            body={"metadata": {"name": f"s-{i}"}, "stringData": {"password": f"pw-{i}"}},
        )
    admin.request(
        "POST",
        f"/apis/apps/v1/namespaces/{app_ns}/deployments",
        body={
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
                },
            },
        },
    )
    bucket = sandbox_s3.new_bucket(f"apf-{tag}")
    yield {
        "kubeconfig": str(path),
        "app_ns": app_ns,
        "repo": repo_for(sandbox_s3, bucket),
        "admin": admin,
        "seats": seats,
    }
    admin.request("DELETE", f"{FLOWCONTROL}/flowschemas/{name}")
    admin.request("DELETE", f"{FLOWCONTROL}/prioritylevelconfigurations/{name}")
    admin.request("DELETE", f"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{binding}")
    for ns in (sa_ns, app_ns):
        admin.delete(NAMESPACES, ns)


def test_without_retries_the_throttled_backup_fails_naming_the_429(throttled):
    kube = Kube(Kube.from_kubeconfig(throttled["kubeconfig"]).api, name="source", throttle_budget=0)
    repo, backup_id = throttled["repo"], f"apf-{uuid.uuid4().hex[:6]}"
    with Hogs(kube, throttled["seats"]), pytest.raises(KubeError) as err:
        run_backup(kube, repo, BackupSpec(backup_id=backup_id, plan="apf", namespaces=[throttled["app_ns"]]))
    assert (err.value.status, err.value.reason) == (429, "Too Many Requests"), err.value
    assert list(repo.store.list(layout.backup_prefix(backup_id))) == []  # nothing half-made is left


def test_throttled_backup_and_restore_retry_complete_and_count(throttled):
    kube = Kube.from_kubeconfig(throttled["kubeconfig"], name="source")
    admin, ns, repo = throttled["admin"], throttled["app_ns"], throttled["repo"]
    with Hogs(kube, throttled["seats"]):
        result = run_backup(
            kube, repo, BackupSpec(backup_id=f"apf-ok-{uuid.uuid4().hex[:6]}", plan="apf-ok", namespaces=[ns])
        )
    new_ns = f"{ns}-r"
    with Hogs(kube, throttled["seats"]):
        report = run_restore(
            kube,
            repo,
            RestoreSpec(backup_id=result.manifest.backup_id, options=RestoreOptions(namespace_mapping={ns: new_ns})),
        )
    m = result.manifest
    assert m.status == "Completed" and m.api_retries > 0, m
    assert m.counts["ConfigMap"] >= 40 and m.counts["Secret"] >= 10
    assert repo.manifest(m.backup_id).api_retries == m.api_retries  # recorded in the repository
    assert report.status == "Completed", report.failed
    assert report.api_retries > 0
    assert repo.load_restore_report(report.restore_id)["api_retries"] == report.api_retries
    disc = Discovery.load(admin)
    for kind, group in (("ConfigMap", ""), ("Secret", ""), ("Deployment", "apps")):
        rt = disc.by_kind(kind, group)
        before = {o["metadata"]["name"]: o for o in admin.list(rt, ns) if not o["metadata"]["name"].startswith("kube-")}
        after = {
            o["metadata"]["name"]: o for o in admin.list(rt, new_ns) if not o["metadata"]["name"].startswith("kube-")
        }
        assert set(after) == set(before), kind
        for name, obj in before.items():
            want = normalize(obj)
            want["metadata"]["namespace"] = new_ns
            assert normalize(after[name]) == want, f"{kind}/{name}"
    admin.delete(NAMESPACES, new_ns)
