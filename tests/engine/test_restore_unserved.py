"""A restore whose custom resources the target does not serve: each is reported failed with the
reason, and the API's discovery is read again once for that type, not once per object."""

from __future__ import annotations

import uuid

from ys1000.backup import BackupSpec, run_backup
from ys1000.kube import Discovery, Kube
from ys1000.kube.discovery import CRDS, NAMESPACES
from ys1000.repository import RepositoryConfig, open_repository
from ys1000.restore import RestoreOptions, RestoreSpec, run_restore
from ys1000.waiting import wait_until

COUNT = 40


def test_unserved_custom_resources_fail_named_and_discovery_is_read_once_more(source, tmp_path, monkeypatch):
    kube = Kube.from_kubeconfig(source.kubeconfig, name="source")
    tag = uuid.uuid4().hex[:6]
    group, plural = f"u{tag}.ys1000.io", "gadgets"
    crd = {
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": "gadget", "kind": "Gadget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                }
            ],
        },
    }
    kube.create(CRDS, crd)
    wait_until(
        lambda: Discovery.load(kube).by_kind("Gadget", group) is not None, timeout=60, what="Gadget to be served"
    )
    ns = f"unserved-{tag}"
    kube.create(NAMESPACES, {"metadata": {"name": ns}})
    gadgets = Discovery.load(kube).by_kind("Gadget", group)
    for i in range(COUNT):
        kube.create(gadgets, {"apiVersion": f"{group}/v1", "kind": "Gadget", "metadata": {"name": f"g{i}"}}, ns)
    repo = open_repository(RepositoryConfig(type="local", path=str(tmp_path / "repo")), "k", create=True)
    bid = run_backup(kube, repo, BackupSpec(backup_id=f"unserved-{tag}", plan="u", namespaces=[ns])).manifest.backup_id
    kube.delete(CRDS, crd["metadata"]["name"])  # the type is gone from this cluster
    wait_until(lambda: Discovery.load(kube).by_kind("Gadget", group) is None, timeout=60, what="Gadget to be gone")

    loads = []
    real_load = Discovery.load.__func__
    monkeypatch.setattr(Discovery, "load", classmethod(lambda cls, k: loads.append(1) or real_load(cls, k)))
    target_ns = f"{ns}-r"
    try:
        report = run_restore(
            kube,
            repo,
            RestoreSpec(
                backup_id=bid,
                exclude_kinds=["CustomResourceDefinition"],
                options=RestoreOptions(namespace_mapping={ns: target_ns}),
            ),
        )
    finally:
        kube.delete(NAMESPACES, target_ns)
        kube.delete(NAMESPACES, ns)
    failed = {i.name: i.reason for i in report.items if i.kind == "Gadget"}
    assert set(failed) == {f"g{i}" for i in range(COUNT)}
    assert {i.action for i in report.items if i.kind == "Gadget"} == {"failed"}
    assert set(failed.values()) == {f"the target cluster does not serve {group}/Gadget"}
    assert report.status == "PartiallyFailed"
    # the first load, and one more for the missing type (16 workers met it at once)
    assert len(loads) == 2
