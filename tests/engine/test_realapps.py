"""Issue 12, real applications: an operator-style monitoring stack round-trips between clusters.

The stack (tests/engine/realapps.py) has CRDs with schemas of a few hundred KB, custom resources,
a node-exporter DaemonSet with inline hostPath mounts of /, /sys and /proc, RBAC at both scopes
(an aggregated ClusterRole among them), an APIService whose backend is down and admission
webhooks served from the namespace. It is deployed once in `source` and backed up with the
default scope; the tests restore it into `target`, then again under a new namespace name.
"""

from __future__ import annotations

import json
import uuid

import pytest

import realapps
from engine_helpers import normalize, repo_for
from ys1000.backup import BackupSpec
from ys1000.backup.capture import label_selector_matches
from ys1000.kube import Discovery, Kube
from ys1000.kube.discovery import (
    APISERVICES,
    CLUSTER_ROLE_BINDINGS,
    CLUSTER_ROLES,
    CRDS,
    MUTATING_WEBHOOKS,
    NAMESPACES,
    VALIDATING_WEBHOOKS,
)
from ys1000.restore import RestoreOptions, RestoreSpec
from ys1000.restore.priorities import rank
from ys1000.restore.transforms import transform
from ys1000.waiting import wait_until

try:  # the one pipeline (issue 12); before it, the engine functions
    from ys1000.backup.pipeline import run_backup
    from ys1000.restore.pipeline import run_restore
except ImportError:  # pragma: no cover
    from ys1000.backup import run_backup
    from ys1000.restore import run_restore

NS, NS_B = "monitoring", "monitoring-b"
LAST_KINDS = {"APIService", "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"}
WORKLOAD_KINDS = {"Deployment", "DaemonSet", "Prometheus", "Alertmanager", "ServiceMonitor", "PrometheusRule"}


# -- without a cluster ---------------------------------------------------------------------------


def test_webhooks_and_apiservices_rank_after_workloads_and_custom_resources():
    last = [
        rank(gr, False)
        for gr in (
            "apiservices.apiregistration.k8s.io",
            "validatingwebhookconfigurations.admissionregistration.k8s.io",
            "mutatingwebhookconfigurations.admissionregistration.k8s.io",
        )
    ]
    others = [
        rank("deployments.apps", False),
        rank("daemonsets.apps", False),
        rank("pods", False),
        rank(f"prometheuses.{realapps.GROUP}", True),
        rank("leases.coordination.k8s.io", False),
    ]
    assert min(last) > max(others)


def test_namespace_mapping_moves_bound_service_accounts_and_called_services():
    opt = RestoreOptions(namespace_mapping={NS: NS_B})
    crb = transform(
        {
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "b"},
            "roleRef": {"kind": "ClusterRole", "name": "r"},
            "subjects": [
                {"kind": "ServiceAccount", "name": "a", "namespace": NS},
                {"kind": "ServiceAccount", "name": "x", "namespace": "kube-system"},
                {"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"},
            ],
        },
        opt,
    )
    assert [s.get("namespace") for s in crb["subjects"]] == [NS_B, "kube-system", None]
    for obj in realapps.cluster_scoped(NS):
        if obj["kind"] in LAST_KINDS:
            out = transform(json.loads(json.dumps(obj)), opt)
            refs = (
                [w["clientConfig"]["service"] for w in out["webhooks"]]
                if "webhooks" in out
                else [out["spec"]["service"]]
            )
            assert {r["namespace"] for r in refs} == {NS_B}, out
    crd = transform(
        {
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "c"},
            "spec": {
                "conversion": {
                    "strategy": "Webhook",
                    "webhook": {"clientConfig": {"service": {"namespace": NS, "name": "conv"}}},
                }
            },
        },
        opt,
    )
    assert crd["spec"]["conversion"]["webhook"]["clientConfig"]["service"]["namespace"] == NS_B


def test_aggregation_selectors():
    sel = {
        "matchLabels": {"a": "true"},
        "matchExpressions": [
            {"key": "b", "operator": "In", "values": ["1", "2"]},
            {"key": "c", "operator": "DoesNotExist"},
        ],
    }
    assert label_selector_matches(sel, {"a": "true", "b": "2"})
    assert not label_selector_matches(sel, {"a": "true", "b": "3"})
    assert not label_selector_matches(sel, {"a": "true", "b": "1", "c": ""})
    assert label_selector_matches({"matchExpressions": [{"key": "x", "operator": "Exists"}]}, {"x": ""})
    assert not label_selector_matches({}, {"x": ""})  # empty: would be everything, taken as nothing


# -- against the sandbox -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(source, target, sandbox_s3):
    """The stack deployed in `source` and one default-scope backup of it; removed from both
    clusters afterwards (APIService first: while it is unavailable no namespace can be deleted)."""
    src = Kube.from_kubeconfig(source.kubeconfig, name="source")
    dst = Kube.from_kubeconfig(target.kubeconfig, name="target")
    try:
        realapps.deploy(src, NS)
        bucket = sandbox_s3.new_bucket(f"realapps-{uuid.uuid4().hex[:8]}")
        repo = repo_for(sandbox_s3, bucket)
        result = run_backup(
            src, repo, BackupSpec(backup_id="monitoring-1", plan="monitoring", namespaces=[NS], cluster_name="source")
        )
        yield {
            "src": src,
            "dst": dst,
            "repo": repo,
            "result": result,
            "backup": result.manifest.backup_id,
            "index": list(repo.read_index(result.manifest.backup_id)),
        }
    finally:
        realapps.teardown(src, [NS])
        realapps.teardown(dst, [NS, NS_B])


def test_default_backup_skips_hostpath_mounts_and_warns_about_the_unavailable_group(stack):
    m, src = stack["result"].manifest, stack["src"]
    assert m.status == "Completed" and m.scope == "full"
    pods = [
        p["metadata"]["name"]
        for p in src.list(Discovery.load(src).by_kind("Pod"), NS, label_selector="app.kubernetes.io/name=node-exporter")
    ]
    assert pods
    for pod in pods:
        for vol, path in realapps.HOST_PATHS.items():
            assert any(f"pod {NS}/{pod} volume {vol} (hostPath {path})" in w for w in m.warnings), (
                pod,
                vol,
                m.warnings,
            )
    assert any(realapps.METRICS_GROUP in w and "unavailable" in w for w in m.warnings), m.warnings
    # the cluster-scoped closure: CRDs, ClusterRoles (aggregated + components, not the bootstrap
    # `view`), bindings, the APIService and the webhooks served from the namespace
    taken = {(e.kind, e.name) for e in stack["index"] if e.namespace is None}
    for kind, names in realapps.cluster_names(NS).items():
        for name in names:
            assert (kind, name) in taken, f"{kind} {name} not in the backup"
    assert ("ClusterRole", "view") not in taken
    sizes = {e.name: e.size for e in stack["index"] if e.kind == "CustomResourceDefinition"}
    for plural, at_least in realapps.LARGE_CRDS.items():
        assert sizes[f"{plural}.{realapps.GROUP}"] >= at_least


def _restored_in_order(report) -> None:
    """Webhooks and APIServices after every workload and custom resource; CRs after their CRDs."""
    pos = {(i.kind, i.namespace, i.name): n for n, i in enumerate(report.items)}
    last = [n for (kind, _, _), n in pos.items() if kind in LAST_KINDS]
    work = [n for (kind, _, _), n in pos.items() if kind in WORKLOAD_KINDS]
    crds = [n for (kind, _, _), n in pos.items() if kind == "CustomResourceDefinition"]
    crs = [
        n
        for (kind, _, _), n in pos.items()
        if kind in ("Prometheus", "Alertmanager", "ServiceMonitor", "PrometheusRule")
    ]
    assert last and work and min(last) > max(work)
    assert crds and crs and min(crs) > max(crds)


def _same_rules(a: list, b: list) -> bool:
    key = lambda r: json.dumps(r, sort_keys=True)  # noqa: E731
    return sorted(map(key, a or [])) == sorted(map(key, b or []))


def test_restore_into_fresh_target_every_object_equal(stack):
    src, dst, repo = stack["src"], stack["dst"], stack["repo"]
    report = run_restore(dst, repo, RestoreSpec(backup_id=stack["backup"]))
    assert report.status == "Completed", report.failed
    _restored_in_order(report)
    disc_src, disc_dst = Discovery.load(src), Discovery.load(dst)
    compared = 0
    for e in stack["index"]:
        if not e.restore or (e.namespace != NS and not (e.kind == "Namespace" and e.name == NS)):
            continue
        rt_src, rt_dst = disc_src.by_kind(e.kind, e.group), disc_dst.by_kind(e.kind, e.group)
        original = src.get(rt_src.path(e.namespace, e.name))
        restored = dst.get_or_none(rt_dst.path(e.namespace, e.name))
        assert restored is not None, f"{e.kind} {e.namespace}/{e.name} not restored"
        assert normalize(restored) == normalize(original), (
            f"{e.kind} {e.namespace}/{e.name} differs after the round trip"
        )
        compared += 1
    assert compared > len(realapps.namespaced(NS)), compared  # and the Namespace, ServiceAccount default
    names = realapps.cluster_names(NS)
    for name in names["CustomResourceDefinition"]:
        assert dst.get(CRDS.path(name=name))["spec"] == src.get(CRDS.path(name=name))["spec"]
        assert realapps.crd_established(dst, name)
    for name in names["ClusterRole"]:
        # the aggregated one is recomputed in the target from its restored components: same rules
        wait_until(
            lambda name=name: _same_rules(
                dst.get(CLUSTER_ROLES.path(name=name)).get("rules"), src.get(CLUSTER_ROLES.path(name=name)).get("rules")
            ),
            timeout=30,
            what=f"ClusterRole {name} to have the source's rules",
        )
    assert dst.get(CLUSTER_ROLES.path(name="realapps-monitoring-view"))["rules"]
    for name in names["ClusterRoleBinding"]:
        a, b = dst.get(CLUSTER_ROLE_BINDINGS.path(name=name)), src.get(CLUSTER_ROLE_BINDINGS.path(name=name))
        assert (a["roleRef"], a["subjects"]) == (b["roleRef"], b["subjects"])
    for rt in (VALIDATING_WEBHOOKS, MUTATING_WEBHOOKS):
        for name in names[rt.kind]:
            assert dst.get(rt.path(name=name))["webhooks"] == src.get(rt.path(name=name))["webhooks"]
    assert (
        dst.get(APISERVICES.path(name=realapps.APISERVICE_NAME))["spec"]
        == src.get(APISERVICES.path(name=realapps.APISERVICE_NAME))["spec"]
    )


def test_restore_under_new_namespace_name_bindings_and_services_follow(stack):
    dst, repo = stack["dst"], stack["repo"]
    if dst.get_or_none(NAMESPACES.path(name=NS)) is None:
        pytest.skip("needs the restore into the fresh target first")
    opts = RestoreOptions(namespace_mapping={NS: NS_B})
    report = run_restore(dst, repo, RestoreSpec(backup_id=stack["backup"], options=opts))
    assert report.status == "Completed", report.failed
    _restored_in_order(report)
    disc = Discovery.load(dst)
    rbs = disc.by_kind("RoleBinding", "rbac.authorization.k8s.io")
    for name in ("prometheus-operator-config", "prometheus-scrape"):
        subjects = dst.get(rbs.path(NS_B, name))["subjects"]
        assert {s["namespace"] for s in subjects} == {NS_B}, subjects
    assert dst.get(disc.by_kind("Prometheus", realapps.GROUP).path(NS_B, "k8s"))["spec"]["replicas"] == 2
    # the cluster-scoped objects are there already (the first restore): reported, not reused silently
    by_name = {(i.kind, i.name): i for i in report.items if i.namespace is None}
    for kind, names in realapps.cluster_names(NS).items():
        for name in names:
            item = by_name[(kind, name)]
            assert (item.action, item.reason) == ("skipped", "exists"), item
    # with the update policy the mapped ones replace them: subjects and services follow the mapping
    update = run_restore(
        dst,
        repo,
        RestoreSpec(
            backup_id=stack["backup"],
            options=RestoreOptions(namespace_mapping={NS: NS_B}),
            existing_policy="update",
            include_kinds=[
                "ClusterRoleBinding",
                "ValidatingWebhookConfiguration",
                "MutatingWebhookConfiguration",
                "APIService",
            ],
        ),
    )
    assert update.status == "Completed", update.failed
    assert {i.action for i in update.items} == {"updated"}, update.counts
    names = realapps.cluster_names(NS)
    for name in names["ClusterRoleBinding"]:
        subjects = dst.get(CLUSTER_ROLE_BINDINGS.path(name=name))["subjects"]
        assert {s["namespace"] for s in subjects if s["kind"] == "ServiceAccount"} == {NS_B}, subjects
    for rt in (VALIDATING_WEBHOOKS, MUTATING_WEBHOOKS):
        for name in names[rt.kind]:
            assert {w["clientConfig"]["service"]["namespace"] for w in dst.get(rt.path(name=name))["webhooks"]} == {
                NS_B
            }
    assert dst.get(APISERVICES.path(name=realapps.APISERVICE_NAME))["spec"]["service"]["namespace"] == NS_B
