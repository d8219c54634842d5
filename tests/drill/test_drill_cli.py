"""Restore drills from the CLI (``ys1000 drill``), as an operator runs them: the backup restored
into scratch namespaces with its PVC data read back against the snapshot, workloads ready,
checks run, evidence in the repository, scratch namespaces gone — and the catalog says so."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from ys1000.kube import Kube
from ys1000.kube.discovery import NAMESPACES
from ys1000.repository import open_repository
from ys1000.waiting import wait_until

from volumes.volume_helpers import plant, pv_dir, statefulset

YS1000 = str(Path(sys.executable).parent / "ys1000")


def run(*args, env, rc=None):
    out = subprocess.run([YS1000, *args], capture_output=True, text=True, env={**os.environ, **env}, timeout=600)
    if rc is not None:
        assert out.returncode == rc, f"rc={out.returncode}\nstdout:{out.stdout}\nstderr:{out.stderr}"
    return out


@pytest.fixture
def drill_env(sandbox_s3):
    bucket = sandbox_s3.new_bucket(f"drill-{uuid.uuid4().hex[:8]}")
    env = {**sandbox_s3.env(), "YS1000_REPO_KEY": "drill-key"}
    cfg = sandbox_s3.repository_config(bucket, "d")
    return env, ["--repo", f"s3://{bucket}/d"], cfg


def _app(source, kube: Kube, ns: str, image: str = "nginx:1.27") -> None:
    kube.create(NAMESPACES, {"metadata": {"name": ns}})
    source.apps.create_namespaced_stateful_set(ns, statefulset())
    labels = {"app": "web"}
    source.apps.create_namespaced_deployment(
        ns,
        {
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "web", "image": image}]}},
            },
        },
    )
    for pvc in ("data-db-0", "logs-db-0"):
        wait_until(
            lambda pvc=pvc: (
                (kube.get_or_none(f"/api/v1/namespaces/{ns}/persistentvolumeclaims/{pvc}") or {})
                .get("status", {})
                .get("phase")
                == "Bound"
            ),
            timeout=60,
            what=f"{pvc} bound",
        )


def _scratch_gone(kube: Kube, ns: str) -> bool:
    return not [n for n in kube.list(NAMESPACES) if n["metadata"]["name"].startswith(f"{ns}-drill")]


def test_drill_proves_a_backup_and_the_catalog_says_so(source, drill_env):
    env, repo, cfg = drill_env
    kube = Kube.from_kubeconfig(source.kubeconfig, name="source")
    ns = f"shop-{uuid.uuid4().hex[:6]}"
    _app(source, kube, ns)
    plant(pv_dir(kube, ns, "data-db-0"), big_mib=3)
    plant(pv_dir(kube, ns, "logs-db-0"), big_mib=1)
    kc = ["--kubeconfig", source.kubeconfig]
    bid = json.loads(run("backup", *kc, *repo, "-n", ns, "--plan", "shop", "-o", "json", env=env, rc=0).stdout)[
        "backup_id"
    ]
    manifest = json.loads(run("backups", "show", *repo, bid, "-o", "json", env=env, rc=0).stdout)["manifest"]
    backed_up = {v["pvc"]: v["restic"]["total_bytes"] for v in manifest["volumes"]}
    assert backed_up["data-db-0"] >= 3 << 20

    out = run(
        "drill",
        *kc,
        *repo,
        "latest",
        "--plan",
        "shop",
        "--check-object",
        "Deployment/web",
        "--check-object",
        "Service/none",
        "-o",
        "json",
        env=env,
        rc=1,
    )
    failed = json.loads(out.stdout)
    assert failed["status"] == "failed"
    assert failed["reason"] == f"checks failed: object-cli-2: Service {failed['namespaces'][ns]}/none is missing"
    assert [c["ok"] for c in failed["checks"]] == [True, False]
    assert _scratch_gone(kube, ns)

    out = run("drill", *kc, *repo, bid, "--check-object", "StatefulSet/db", "-o", "json", env=env, rc=0)
    ev = json.loads(out.stdout)
    assert ev["status"] == "verified" and ev["rto_seconds"] > 0
    assert set(ev["steps"]) == {"restore", "volumes", "ready", "checks"}
    assert ev["rto_seconds"] >= sum(ev["steps"].values()) - 1
    scratch = ev["namespaces"][ns]
    assert scratch.startswith(f"{ns}-drill-")
    # every PVC came back with the bytes the backup recorded, each file read back against the snapshot
    assert {v["pvc"]: (v["restored_bytes"], v["content_verified"], v["ok"]) for v in ev["volumes"]} == {
        pvc: (n, True, True) for pvc, n in backed_up.items()
    }
    assert ev["readiness"]["ready"] is True
    assert f"Deployment {scratch}/web 2/2 available" in ev["readiness"]["workloads"]
    assert ev["cleanup"] == [scratch] and _scratch_gone(kube, ns)
    assert kube.get_or_none(NAMESPACES.path(name=ns)) is not None  # production untouched

    # the evidence is in the repository, and the catalog shows the newest drill's outcome
    repository = open_repository(cfg, "drill-key")
    [newest, older] = repository.drills(bid)
    assert newest["drill_id"] == ev["drill_id"] and newest["rto_seconds"] == ev["rto_seconds"]
    assert older["status"] == "failed"
    listed = json.loads(run("backups", "list", *repo, "-o", "json", env=env, rc=0).stdout)
    assert listed[0]["drill"]["state"] == "verified" and listed[0]["drill"]["rto_seconds"] == ev["rto_seconds"]
    text = run("backups", "list", *repo, env=env, rc=0).stdout
    assert f"verified (RTO {ev['rto_seconds']:.0f}s)" in text
    kube.delete(NAMESPACES, ns)


def test_drill_of_an_app_whose_image_no_longer_pulls_fails_naming_the_pod(source, drill_env):
    env, repo, _ = drill_env
    kube = Kube.from_kubeconfig(source.kubeconfig, name="source")
    ns = f"gone-{uuid.uuid4().hex[:6]}"
    _app(source, kube, ns, image="registry.invalid/shop/web:1")  # the sandbox node fails its pull
    kc = ["--kubeconfig", source.kubeconfig]
    bid = json.loads(run("backup", *kc, *repo, "-n", ns, "--plan", "gone", "-o", "json", env=env, rc=0).stdout)[
        "backup_id"
    ]
    out = run("drill", *kc, *repo, bid, "--timeout", "240", "-o", "json", env=env, rc=1)
    ev = json.loads(out.stdout)
    assert ev["status"] == "failed"
    assert ev["reason"].startswith("workloads not ready: pod "), ev["reason"]
    reason = ev["reason"]
    assert f"{ev['namespaces'][ns]}/web-" in reason and ("ErrImagePull" in reason or "ImagePullBackOff" in reason)
    assert "rto_seconds" not in ev
    # its PVCs were empty at backup time and came back empty: that is not what failed
    assert sorted((v["pvc"], v["ok"]) for v in ev["volumes"]) == [("data-db-0", True), ("logs-db-0", True)]
    assert _scratch_gone(kube, ns)
    listed = json.loads(run("backups", "list", *repo, "-o", "json", env=env, rc=0).stdout)
    assert listed[0]["drill"] == {
        "state": "failed",
        "drill_id": ev["drill_id"],
        "rto_seconds": None,
        "reason": reason,
        "finished": ev["finished"],
    }
    kube.delete(NAMESPACES, ns)
