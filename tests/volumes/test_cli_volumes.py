"""Issue 12: the operator's CLI protects volume data exactly as the DAGs do (one pipeline).

Run as a person runs it: the installed ``ys1000`` console script against the sandbox clusters,
the sandbox S3 and real restic movers. Before the pipeline, ``ys1000 backup`` printed
``Completed`` with no volume record and ``ys1000 restore`` brought the PVCs back empty.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from ys1000.kube import Kube
from ys1000.kube.discovery import NAMESPACES, PODS
from ys1000.waiting import wait_until

from volume_helpers import bound_pvc, plant, pv_dir, statefulset, tree_digest

YS1000 = str(Path(sys.executable).parent / "ys1000")


def run(*args, env, check_rc=None):
    out = subprocess.run([YS1000, *args], capture_output=True, text=True, env={**os.environ, **env}, timeout=300)
    if check_rc is not None:
        assert out.returncode == check_rc, f"rc={out.returncode}\nstdout:{out.stdout}\nstderr:{out.stderr}"
    return out


@pytest.fixture
def cli_env(sandbox_s3):
    bucket = sandbox_s3.new_bucket(f"cliv-{uuid.uuid4().hex[:8]}")
    return {**sandbox_s3.env(), "YS1000_REPO_KEY": "cli-volume-key"}, ["--repo", f"s3://{bucket}/cli"]


def test_cli_backup_and_restore_carry_every_byte(source, target, cli_env):
    env, repo = cli_env
    kube = Kube.from_kubeconfig(source.kubeconfig, name="source")
    ns = f"blog-{uuid.uuid4().hex[:6]}"
    kube.create(NAMESPACES, {"metadata": {"name": ns}})
    source.apps.create_namespaced_stateful_set(ns, statefulset())
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
    plant(pv_dir(kube, ns, "data-db-0"), big_mib=4)  # files of several sizes, nested, symlinks, modes
    plant(pv_dir(kube, ns, "logs-db-0"), big_mib=1)
    digests = {pvc: tree_digest(pv_dir(kube, ns, pvc)) for pvc in ("data-db-0", "logs-db-0")}

    b = run(
        "backup",
        "--kubeconfig",
        source.kubeconfig,
        *repo,
        "-n",
        ns,
        "--plan",
        "blog",
        "-o",
        "json",
        env=env,
        check_rc=0,
    )
    out = json.loads(b.stdout)
    assert out["status"] == "Completed"
    bid = out["backup_id"]
    shown = json.loads(run("backups", "show", *repo, bid, "-o", "json", env=env, check_rc=0).stdout)["manifest"]
    vols = {v["pvc"]: v for v in shown["volumes"]}
    assert set(vols) == {"data-db-0", "logs-db-0"}, shown["volumes"]
    assert vols["data-db-0"]["restic"]["snapshot_id"] and vols["data-db-0"]["restic"]["total_bytes"] >= 4 << 20
    assert vols["logs-db-0"]["restic"]["total_files"] == vols["data-db-0"]["restic"]["total_files"]
    assert shown["status"] == "Completed"

    # the text output names each PVC's data too
    text = run("backup", "--kubeconfig", source.kubeconfig, *repo, "-n", ns, "--plan", "blog2", env=env, check_rc=0)
    assert f"PVC {ns}/data-db-0: restic" in text.stdout and f"PVC {ns}/logs-db-0: restic" in text.stdout

    # disaster: the namespace is gone; the CLI restores it, data before the StatefulSet's pod
    kube.delete(NAMESPACES, ns)
    wait_until(lambda: kube.get_or_none(NAMESPACES.path(name=ns)) is None, timeout=90, what="namespace gone")
    r = json.loads(
        run("restore", "--kubeconfig", source.kubeconfig, *repo, bid, "-o", "json", env=env, check_rc=0).stdout
    )
    assert r["status"] == "Completed"
    assert {(v["pvc"], v["status"]) for v in r["volumes"]} == {("data-db-0", "data"), ("logs-db-0", "data")}
    for pvc, digest in digests.items():
        assert tree_digest(pv_dir(kube, ns, pvc)) == digest, f"{pvc} differs after the CLI restore"
    wait_until(
        lambda: [p for p in kube.list(PODS, ns) if p.get("status", {}).get("phase") == "Running"],
        timeout=60,
        what="restored db-0 running",
    )

    # into `target` under a new name and another StorageClass: every byte equal
    new_ns = ns + "-b"
    r = run(
        "restore",
        "--kubeconfig",
        target.kubeconfig,
        *repo,
        "latest",
        "--plan",
        "blog",
        "--namespace-mapping",
        f"{ns}={new_ns}",
        "--storage-class-mapping",
        "ys1000-local=ys1000-local-alt",
        env=env,
        check_rc=0,
    )
    assert f"PVC {new_ns}/data-db-0: data (from restic" in r.stdout, r.stdout
    tkube = Kube.from_kubeconfig(target.kubeconfig, name="target")
    for pvc, digest in digests.items():
        d = pv_dir(tkube, new_ns, pvc)
        assert "volumes-alt" in str(d)
        assert tree_digest(d) == digest, f"{pvc} differs after the CLI restore into target"
    kube.delete(NAMESPACES, ns)
    tkube.delete(NAMESPACES, new_ns)


def test_cli_backup_with_a_failed_pvc_is_partially_failed_and_never_latest(source, target, make_namespace, cli_env):
    env, repo = cli_env
    kube = Kube.from_kubeconfig(source.kubeconfig, name="source")
    ns = make_namespace(source)
    good, bad = bound_pvc(kube, ns, "good"), bound_pvc(kube, ns, "bad")
    plant(good, big_mib=1)
    shutil.rmtree(bad)  # the volume's data cannot be read: its mover fails

    b = run("backup", "--kubeconfig", source.kubeconfig, *repo, "-n", ns, "--plan", "pf", env=env, check_rc=3)
    assert " PartiallyFailed: " in b.stdout.splitlines()[0], b.stdout
    assert f"PVC {ns}/bad: FAILED: mover backup of {ns}/bad failed" in b.stdout, b.stdout
    assert f"PVC {ns}/good: restic" in b.stdout
    assert f"warning: PVC {ns}/bad: " in b.stdout

    listed = json.loads(run("backups", "list", *repo, "-o", "json", env=env, check_rc=0).stdout)
    assert [e["status"] for e in listed] == ["PartiallyFailed"]
    bid = listed[0]["backup_id"]
    # `latest` never restores a backup lacking data in its scope
    latest = run("restore", "--kubeconfig", target.kubeconfig, *repo, "latest", "--plan", "pf", env=env, check_rc=1)
    assert "no completed backup of plan 'pf'" in latest.stderr
    # asked for by id, it restores what it holds and says which PVC comes back empty, and why
    r = json.loads(
        run(
            "restore",
            "--kubeconfig",
            target.kubeconfig,
            *repo,
            bid,
            "-o",
            "json",
            "--namespace-mapping",
            f"{ns}={ns}-r",
            env=env,
            check_rc=0,
        ).stdout
    )
    by_pvc = {v["pvc"]: v for v in r["volumes"]}
    assert by_pvc["good"]["status"] == "data"
    assert by_pvc["bad"]["status"] == "empty" and "could not protect its data" in by_pvc["bad"]["reason"]
    tkube = Kube.from_kubeconfig(target.kubeconfig, name="target")
    assert tree_digest(pv_dir(tkube, f"{ns}-r", "good")) == tree_digest(good)
    tkube.delete(NAMESPACES, f"{ns}-r")


def test_cli_scope_resources_reports_pvcs_restored_empty_by_design(source, target, make_namespace, cli_env):
    env, repo = cli_env
    kube = Kube.from_kubeconfig(source.kubeconfig, name="source")
    ns = make_namespace(source)
    plant(bound_pvc(kube, ns, "data"), big_mib=1)
    b = run(
        "backup",
        "--kubeconfig",
        source.kubeconfig,
        *repo,
        "-n",
        ns,
        "--plan",
        "res",
        "--scope",
        "resources",
        env=env,
        check_rc=0,
    )
    assert "1 PVC(s) without data: scope 'resources'" in b.stdout
    r = json.loads(
        run(
            "restore",
            "--kubeconfig",
            target.kubeconfig,
            *repo,
            "latest",
            "--plan",
            "res",
            "-o",
            "json",
            "--namespace-mapping",
            f"{ns}={ns}-e",
            env=env,
            check_rc=0,
        ).stdout
    )
    assert r["volumes"] == [
        {
            "namespace": f"{ns}-e",
            "pvc": "data",
            "status": "empty",
            "reason": "the backup's scope is 'resources': it holds no volume data",
        }
    ]
    Kube.from_kubeconfig(target.kubeconfig, name="target").delete(NAMESPACES, f"{ns}-e")
