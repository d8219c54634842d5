"""Listing many namespaces cluster-wide (``ys1000.backup.listing``) gives what listing each gives.

A backup of many namespaces lists each type once cluster-wide and keeps the selected namespaces'
objects; an identity that may not list cluster-wide (a Role per namespace) falls back to listing
namespace by namespace. Both must capture exactly the objects a per-namespace backup captures:
the same index entries and the same documents, the pods and PVCs of the preflight included.
"""

from __future__ import annotations

import importlib
import uuid
from pathlib import Path

import pytest

from ys1000.backup import BackupSpec, run_backup
from ys1000.backup.listing import objects_in
from ys1000.kube import Kube, KubeError
from ys1000.kube.discovery import NAMESPACES, core
from ys1000.repository import LocalStore, Repository
from ys1000.waiting import wait_until

from kube_helpers import token_kubeconfig

CONFIGMAPS = core("configmaps", "ConfigMap")
preflight_module = importlib.import_module("ys1000.backup.preflight")  # the package re-exports the function


@pytest.fixture(scope="module")
def world(source):
    """Three namespaces with ConfigMaps, Secrets, a Deployment's pods-to-be and a PVC; the first
    two selected, the third not."""
    admin = Kube.from_kubeconfig(source.kubeconfig, name="source")
    tag = uuid.uuid4().hex[:6]
    names = [f"wide-{tag}-{c}" for c in "abc"]
    for ns in names:
        admin.create(NAMESPACES, {"metadata": {"name": ns, "labels": {"wide-test": tag}}})
        for i in range(7):
            admin.create(CONFIGMAPS, {"metadata": {"name": f"cm-{i}", "labels": {"t": "1"}}, "data": {"i": str(i)}}, ns)
        admin.request(
            "POST",
            f"/api/v1/namespaces/{ns}/persistentvolumeclaims",
            body={
                "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Mi"}}},
            },
        )
    for ns in names:  # the controllers' own objects, before anything compares backups
        wait_until(
            lambda ns=ns: (
                admin.get_or_none(f"/api/v1/namespaces/{ns}/configmaps/kube-root-ca.crt")
                and admin.get_or_none(f"/api/v1/namespaces/{ns}/serviceaccounts/default")
            ),
            timeout=60,
            what=f"kube-root-ca.crt and the default ServiceAccount in {ns}",
        )
    yield admin, names
    for ns in names:
        admin.delete(NAMESPACES, ns)


def _names(objs) -> set[tuple[str, str]]:
    return {(o["metadata"]["namespace"], o["metadata"]["name"]) for o in objs}


def _namespace_bound(admin: Kube, source, namespaces: list[str], tmp: Path) -> Kube:
    """A ServiceAccount that may list ConfigMaps in ``namespaces`` only (a Role in each)."""
    home = namespaces[0]
    admin.request("POST", f"/api/v1/namespaces/{home}/serviceaccounts", body={"metadata": {"name": "lister"}})
    for ns in namespaces:
        admin.request(
            "POST",
            f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
            body={
                "metadata": {"name": "list-configmaps"},
                "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}],
            },
        )
        admin.request(
            "POST",
            f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
            body={
                "metadata": {"name": "list-configmaps"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "list-configmaps"},
                "subjects": [{"kind": "ServiceAccount", "name": "lister", "namespace": home}],
            },
        )
    return Kube.from_kubeconfig(
        token_kubeconfig(admin, source.kubeconfig, home, "lister", tmp / "lister.kubeconfig", 600), name="source"
    )


def test_cluster_wide_listing_keeps_the_selected_namespaces_and_falls_back_when_forbidden(world, source, tmp_path):
    admin, names = world
    chosen = frozenset(names[:2])
    per_namespace = _names(o for ns in sorted(chosen) for o in objects_in(admin, CONFIGMAPS, ns, "t=1"))
    assert len(per_namespace) == 14
    assert _names(objects_in(admin, CONFIGMAPS, None, "t=1", chosen)) == per_namespace

    bound = _namespace_bound(admin, source, names[:2], tmp_path)
    with pytest.raises(KubeError, match="forbidden") as exc:
        list(bound.list(CONFIGMAPS))  # what the fallback is for
    assert exc.value.status == 403
    assert _names(objects_in(bound, CONFIGMAPS, None, "t=1", chosen)) == per_namespace


def test_a_backup_listed_cluster_wide_equals_one_listed_per_namespace(world, tmp_path, monkeypatch):
    admin, names = world
    repo = Repository.init(LocalStore(str(tmp_path / "repo")), "listing-test-passphrase")

    def backup(bid: str) -> tuple[dict, set[tuple[str, str]]]:
        spec = BackupSpec(backup_id=bid, plan="wide", namespaces=names[:2], scope="resources", cluster_name="source")
        result = run_backup(admin, repo, spec)
        docs = {(e.path, data) for e, data in repo.iter_documents(bid)}
        return result.manifest.counts, docs

    seen: list[frozenset[str] | None] = []
    real = preflight_module.cluster_wide

    def spy(kube, namespaces):
        seen.append(real(kube, namespaces))
        return seen[-1]

    monkeypatch.setattr(preflight_module, "cluster_wide", spy)
    counts_each, docs_each = backup("per-namespace")
    assert seen == [None]  # two namespaces: listed one by one
    monkeypatch.setattr(preflight_module, "cluster_wide", lambda kube, namespaces: frozenset(namespaces))
    counts_wide, docs_wide = backup("cluster-wide")

    assert counts_wide == counts_each
    assert counts_each["ConfigMap"] == 2 * (7 + 1)  # theirs and kube-root-ca.crt
    assert counts_each["PersistentVolumeClaim"] == 2 and counts_each["Namespace"] == 2
    assert docs_wide == docs_each  # the same paths and the same bytes
    assert not any(f"/namespaces/{names[2]}/" in path or path.endswith(f"/{names[2]}.json") for path, _ in docs_wide)
