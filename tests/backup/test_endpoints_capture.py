"""Endpoints that a Service with a selector has are captured but not restored (the endpoints
controller makes them again for the restored Service); Endpoints of a Service without a selector
are the application's own, and restored.

The capture learns which Services have a selector from its own listing of Services, or — when a
label selector or a kind filter leaves Services out of the backup — from a listing of their own.
Each way is checked, listed namespace by namespace and cluster-wide (``ys1000.backup.listing``).
"""

from __future__ import annotations

import importlib
import uuid

import pytest

from ys1000.backup import BackupSpec, run_backup
from ys1000.kube import Kube
from ys1000.kube.discovery import NAMESPACES
from ys1000.repository import LocalStore, Repository
from ys1000.waiting import wait_until

preflight_module = importlib.import_module("ys1000.backup.preflight")  # the package re-exports the function
CONTROLLER_LABEL = "endpoints.kubernetes.io/managed-by=endpoint-controller"


@pytest.fixture(scope="module")
def app(source):
    """Two namespaces, each with Service ``web`` (a selector: the controller makes its Endpoints)
    and Service ``external`` (no selector) with Endpoints made by hand, as for a database outside
    the cluster."""
    admin = Kube.from_kubeconfig(source.kubeconfig, name="source")
    tag = uuid.uuid4().hex[:6]
    names = [f"ep-{tag}-{c}" for c in "ab"]
    port = [{"port": 80, "targetPort": 8080}]
    for ns in names:
        admin.create(NAMESPACES, {"metadata": {"name": ns}})
        admin.request(
            "POST",
            f"/api/v1/namespaces/{ns}/services",
            body={"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": port}},
        )
        admin.request(
            "POST",
            f"/api/v1/namespaces/{ns}/services",
            body={"metadata": {"name": "external"}, "spec": {"ports": port}},
        )
        admin.request(
            "POST",
            f"/api/v1/namespaces/{ns}/endpoints",
            body={
                "metadata": {"name": "external"},
                "subsets": [{"addresses": [{"ip": "10.20.30.40"}], "ports": [{"port": 80}]}],
            },
        )
    for ns in names:
        wait_until(
            lambda ns=ns: admin.get_or_none(f"/api/v1/namespaces/{ns}/endpoints/web"),
            timeout=60,
            what=f"the endpoints controller's Endpoints web in {ns}",
        )
    yield admin, names
    for ns in names:
        admin.delete(NAMESPACES, ns)


@pytest.mark.parametrize("wide", [False, True], ids=["per-namespace", "cluster-wide"])
@pytest.mark.parametrize(
    "selection",
    [{}, {"label_selector": CONTROLLER_LABEL}, {"include_kinds": ["Endpoints"]}],
    ids=["everything", "label-selector-without-services", "only-endpoints"],
)
def test_endpoints_of_a_service_with_a_selector_are_kept_but_not_restored(app, tmp_path, monkeypatch, wide, selection):
    admin, names = app
    if wide:
        monkeypatch.setattr(preflight_module, "cluster_wide", lambda kube, namespaces: frozenset(namespaces))
    repo = Repository.init(LocalStore(str(tmp_path / "repo")), "endpoints-test-passphrase")
    spec = BackupSpec(backup_id="ep", plan="ep", namespaces=names, scope="resources", **selection)
    run_backup(admin, repo, spec)

    endpoints = {(e.namespace, e.name): (e.restore, e.reason) for e in repo.read_index("ep") if e.kind == "Endpoints"}
    services = {(e.namespace, e.name) for e in repo.read_index("ep") if e.kind == "Service"}
    expected = {(ns, "web"): (False, "maintained by the endpoints controller for Service web") for ns in names}
    if "label_selector" not in selection:  # made by hand: the controller's label is not on it
        expected |= {(ns, "external"): (True, None) for ns in names}
    assert endpoints == expected
    assert services == (set() if selection else {(ns, s) for ns in names for s in ("web", "external")})
