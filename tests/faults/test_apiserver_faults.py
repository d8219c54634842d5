"""Issue 16, fault matrix — the API server unreachable for 30 s in the middle of a restore.

The restore talks to the target's API server only through a toxiproxy proxy (a kubeconfig whose
server is the proxy; the serving certificate is for 127.0.0.1, so TLS verifies as before). When
the first class of objects is in (the restore's own progress event), the proxy goes down —
connections refused, open ones cut — and comes back 30 s later. The restore waits and resumes:
each object's calls retry while the API server is unreachable (up to ``OUTAGE_BUDGET``), and a
create whose answer was lost is recognised by the restore's own label instead of being reported
as "exists". It completes with every object equal to the original; run again, it is a no-op."""

from __future__ import annotations

import dataclasses
import threading
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from ys1000.backup import BackupSpec, run_backup
from ys1000.kube import Discovery, Kube
from ys1000.kube.discovery import NAMESPACES
from ys1000.restore import RestoreOptions, RestoreSpec, run_restore

from engine.engine_helpers import normalize, repo_for

OUTAGE_SECONDS = 30


def _app(kube: Kube, ns: str) -> None:
    kube.create(NAMESPACES, {"metadata": {"name": ns}})
    for i in range(30):
        kube.request(
            "POST",
            f"/api/v1/namespaces/{ns}/configmaps",
            body={"metadata": {"name": f"cm-{i}"}, "data": {"i": str(i)}},
        )
    for i in range(10):
        kube.request(
            "POST", f"/api/v1/namespaces/{ns}/secrets", body={"metadata": {"name": f"s-{i}"}, "stringData": {"k": "v"}}
        )
        kube.request("POST", f"/api/v1/namespaces/{ns}/serviceaccounts", body={"metadata": {"name": f"sa-{i}"}})
    for i in range(3):
        kube.request(
            "POST",
            f"/apis/apps/v1/namespaces/{ns}/deployments",
            body={
                "metadata": {"name": f"web-{i}"},
                "spec": {
                    "replicas": 0,
                    "selector": {"matchLabels": {"app": f"web-{i}"}},
                    "template": {
                        "metadata": {"labels": {"app": f"web-{i}"}},
                        "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
                    },
                },
            },
        )


def _objects(kube: Kube, ns: str) -> dict[tuple[str, str], dict]:
    disc, out = Discovery.load(kube), {}
    for kind, group in (("ConfigMap", ""), ("Secret", ""), ("ServiceAccount", ""), ("Deployment", "apps")):
        for o in kube.list(disc.by_kind(kind, group), ns):
            name = o["metadata"]["name"]
            if name not in ("kube-root-ca.crt", "default"):
                o = normalize(o)
                o["metadata"].pop("namespace", None)
                out[(kind, name)] = o
    return out


@pytest.fixture
def api_proxy(toxiproxy, target, tmp_path: Path):
    """``(kube, proxy)``: the target cluster reached only through a fresh proxy."""
    kubeconfig = yaml.safe_load(Path(target.kubeconfig).read_text())
    server = urlsplit(kubeconfig["clusters"][0]["cluster"]["server"])
    proxy = toxiproxy.proxy(f"api-{uuid.uuid4().hex[:8]}", server.netloc)
    for c in kubeconfig["clusters"]:
        c["cluster"]["server"] = f"https://{proxy.listen}"
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(kubeconfig))
    yield Kube.from_kubeconfig(str(path), name="target"), proxy
    proxy.up()
    toxiproxy.request("DELETE", f"/proxies/{proxy.name}")


def test_api_server_unreachable_30s_mid_restore(source, target, sandbox_s3, api_proxy):
    kube_src, (kube, proxy) = Kube.from_kubeconfig(source.kubeconfig, name="source"), api_proxy
    admin = Kube.from_kubeconfig(target.kubeconfig, name="target")
    ns = f"outage-{uuid.uuid4().hex[:6]}"
    _app(kube_src, ns)
    originals = _objects(kube_src, ns)
    repo = repo_for(sandbox_s3, sandbox_s3.new_bucket(f"outage-{uuid.uuid4().hex[:8]}"))
    backup = run_backup(kube_src, repo, BackupSpec(backup_id=f"{ns}-1", plan="outage", namespaces=[ns])).manifest
    new_ns = f"{ns}-r"
    spec = RestoreSpec(backup_id=backup.backup_id, options=RestoreOptions(namespace_mapping={ns: new_ns}))

    outage: dict[str, threading.Timer] = {}

    def cut_after_first_class(event: dict) -> None:
        if event.get("current") and "timer" not in outage and event["objects_done"] < event["objects_total"]:
            proxy.down()
            outage["timer"] = threading.Timer(OUTAGE_SECONDS, proxy.up)
            outage["timer"].start()

    try:
        first = run_restore(kube, repo, spec, progress=cut_after_first_class)
    finally:
        if "timer" in outage:
            outage["timer"].join()
    assert "timer" in outage, "the outage never started"
    # the restore waited for the API server (each object's calls retry while it is unreachable)
    # and resumed: everything created once, nothing failed, the retries counted
    assert first.status == "Completed", first.failed
    created = {(i.kind, i.name) for i in first.items if i.action == "created"}
    assert set(originals) | {("Namespace", new_ns)} <= created, first.counts
    assert set(first.counts) <= {"created", "skipped"}, first.counts  # skipped: the "default" ServiceAccount
    assert first.api_retries > 0
    restored = _objects(admin, new_ns)
    assert set(restored) == set(originals)
    for key, original in originals.items():
        assert restored[key] == original, key
    # run again (as after a restore that did end PartiallyFailed): idempotent, nothing duplicated
    again = run_restore(kube, repo, dataclasses.replace(spec, restore_id=f"{spec.restore_id}-again"))
    assert again.status == "Completed" and set(again.counts) == {"skipped"}, again.counts
    # the same restore id again (an Airflow retry): its own earlier objects are not "created" now
    # (only a create whose answer was lost counts as its own; the PVCs would be filled again)
    retried = run_restore(kube, repo, spec)
    assert retried.status == "Completed" and set(retried.counts) == {"skipped"}, retried.counts
    assert _objects(admin, new_ns) == restored
    admin.delete(NAMESPACES, new_ns)
    kube_src.delete(NAMESPACES, ns)
