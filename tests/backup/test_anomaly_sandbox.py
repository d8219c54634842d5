"""Issue 15 acceptance, the anomaly guard with real parts: a sandbox cluster, restic movers, the
loopback S3, and the installed ``ys1000`` command.

Ten ordinary backups, each changing about 1% (one file of sixty, one ConfigMap), raise no alarm.
Then 80% of the PVC's files are overwritten with random bytes and a third of the ConfigMaps are
deleted: the next backup is committed but suspicious, naming both; retention keeps the last clean
backup; ``ys1000 restore latest`` restores the clean one (its bytes and its ConfigMaps); once a
human confirms the change (an anomaly approval record), ``latest`` is the new backup.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

from ys1000.backup import BackupSpec, run_backup
from ys1000.config.specs import resolve_backup
from ys1000.kube import Kube
from ys1000.kube.discovery import NAMESPACES
from ys1000.repository import open_repository
from ys1000.volumes import VolumeOptions
from ys1000.volumes.retention import expire_backups
from ys1000.waiting import wait_until

from volumes.volume_helpers import bound_pvc, pv_dir, tree_digest

YS1000 = str(Path(sys.executable).parent / "ys1000")
PLAN = "shop-guard"
FILES, CONFIGMAPS = 60, 30
WORDS = "order invoice customer shipped paid refund cart item price total street city".split()


def run(*args, env, rc=None):
    out = subprocess.run([YS1000, *args], capture_output=True, text=True, env={**os.environ, **env}, timeout=600)
    if rc is not None:
        assert out.returncode == rc, f"rc={out.returncode}\nstdout:{out.stdout}\nstderr:{out.stderr}"
    return out


def _text(rnd: random.Random, size: int = 16 << 10) -> bytes:
    """Compressible like a database's or an app's files (words, numbers, newlines)."""
    out = []
    n = 0
    while n < size:
        line = f"{rnd.randrange(10**6)} {' '.join(rnd.choice(WORDS) for _ in range(8))}\n"
        out.append(line)
        n += len(line)
    return "".join(out).encode()[:size]


def _configmap(name: str, version: int) -> dict:
    return {"metadata": {"name": name, "labels": {"app": "shop"}}, "data": {"settings": f"version={version}"}}


def test_mass_rewrite_and_deletes_are_suspicious_and_latest_keeps_to_the_clean_backup(
    source, sandbox_s3, make_namespace
):
    bucket = sandbox_s3.new_bucket(f"guard-{uuid.uuid4().hex[:8]}")
    cfg = sandbox_s3.repository_config(bucket, "g")
    env = {**sandbox_s3.env(), "YS1000_REPO_KEY": "guard-key"}
    repo_args = ["--repo", f"s3://{bucket}/g"]
    repo = open_repository(cfg, "guard-key", create=True)
    kube = Kube.from_kubeconfig(source.kubeconfig, name="source")
    ns = make_namespace(source, "shop")
    restored_ns = f"{ns}-r"
    data = bound_pvc(kube, ns, "data")
    rnd = random.Random(15)
    for i in range(FILES):
        (data / f"table-{i:02d}.dat").write_bytes(_text(rnd))
    for i in range(CONFIGMAPS):
        source.core.create_namespaced_config_map(ns, _configmap(f"cm-{i:02d}", 0))

    def backup(bid: str):
        spec = BackupSpec(backup_id=bid, plan=PLAN, namespaces=[ns], cluster_name="source")
        return run_backup(kube, repo, spec, volume_opts=VolumeOptions(run_id=bid)).manifest

    try:
        first = backup("guard-00")
        assert first.anomaly is not None and first.anomaly["suspicious"] is False
        assert first.anomaly["profile"]["previous"] is None  # a plan's first backup is never judged
        for n in range(1, 11):  # ordinary days: one file of sixty rewritten (text), one ConfigMap edited
            (data / f"table-{n:02d}.dat").write_bytes(_text(rnd))
            source.core.replace_namespaced_config_map(f"cm-{n:02d}", ns, _configmap(f"cm-{n:02d}", n))
            m = backup(f"guard-{n:02d}")
            assert m.status == "Completed" and m.anomaly is not None
            assert m.anomaly["suspicious"] is False, f"false alarm on ordinary backup {n}: {m.anomaly}"
            pvc = m.anomaly["profile"]["pvcs"][f"{ns}/data"]
            assert (pvc["before"], pvc["changed"], pvc["removed"]) == (FILES, 1, 0), pvc
            assert m.anomaly["profile"]["objects"]["gone"] == 0
        clean_id = "guard-10"
        clean_digest = tree_digest(data)

        # the attack: 80% of the files overwritten with random bytes, a third of the ConfigMaps deleted
        for i in range(FILES * 8 // 10):
            path = data / f"table-{i:02d}.dat"
            path.write_bytes(os.urandom(path.stat().st_size))
        for i in range(0, CONFIGMAPS, 3):
            source.core.delete_namespaced_config_map(f"cm-{i:02d}", ns)
        out = run(
            "backup",
            "--kubeconfig",
            source.kubeconfig,
            *repo_args,
            "-n",
            ns,
            "--plan",
            PLAN,
            "--id",
            "guard-attack",
            "--cluster-name",
            "source",
            "--no-progress",
            env=env,
            rc=4,  # committed, but neither a plain success nor a failure
        )
        assert "backup guard-attack Completed" in out.stdout
        assert "SUSPICIOUS" in out.stdout
        manifest = repo.manifest("guard-attack")
        assert manifest.status == "Completed" and manifest.anomaly is not None
        assert manifest.anomaly["suspicious"] is True
        reasons = manifest.anomaly["reasons"]
        assert len(reasons) == 2, reasons
        assert reasons[0].startswith(f"PVC {ns}/data: 80% of its {FILES} files rewritten (plan's normal ≤ 2%)")
        assert "new data does not compress (packed/added" in reasons[0]
        assert reasons[1] == f"configmaps in {ns}: 10 of {CONFIGMAPS} gone (33%)"
        for r in reasons:
            assert f"    - {r}" in out.stdout
        pvc = manifest.anomaly["profile"]["pvcs"][f"{ns}/data"]
        print(f"suspicious backup: {reasons}; PVC profile {pvc}")
        assert pvc["changed"] == FILES * 8 // 10 and pvc["ratio"] >= 0.9, pvc
        listed = run("backups", "list", *repo_args, "--plan", PLAN, env=env, rc=0).stdout
        assert [line for line in listed.splitlines() if line.startswith("guard-attack")][0].split()[5] == "suspicious"

        # retention with a cutoff that would delete every clean backup keeps the newest clean one
        attack_created = repo.manifest("guard-attack").created
        report, _volumes = expire_backups(
            repo, cfg, PLAN, timedelta(minutes=1), kube=kube, now=attack_created + timedelta(minutes=1)
        )
        assert sorted(report.deleted) == [f"guard-{n:02d}" for n in range(10)]
        assert list(report.protected) == [clean_id] and "suspicious (guard-attack)" in report.protected[clean_id]
        assert [e.backup_id for e in repo.list_backups(PLAN)] == ["guard-attack", clean_id]

        # `ys1000 restore latest` restores the clean backup: its bytes and its thirty ConfigMaps
        out = run(
            "restore",
            "latest",
            "--plan",
            PLAN,
            "--kubeconfig",
            source.kubeconfig,
            *repo_args,
            "--namespace-mapping",
            f"{ns}={restored_ns}",
            "--cluster-name",
            "source",
            "--no-progress",
            "-o",
            "json",
            env=env,
            rc=0,
        )
        assert json.loads(out.stdout)["backup_id"] == clean_id
        assert "skipped backup guard-attack, marked suspicious" in out.stderr
        assert f"configmaps in {ns}: 10 of {CONFIGMAPS} gone" in out.stderr
        restored = bound_pvc_dir(kube, restored_ns)
        assert tree_digest(restored) == clean_digest
        names = {c.metadata.name for c in source.core.list_namespaced_config_map(restored_ns).items}
        assert {f"cm-{i:02d}" for i in range(CONFIGMAPS)} <= names

        # a human confirms the change was expected: no longer suspicious, and `latest` picks it
        repo.save_approval(
            {
                "approval_id": f"{datetime.now(timezone.utc):%Y%m%d%H%M%S}-anomaly-guard-attack",
                "kind": "anomaly",
                "plan": PLAN,
                "subject": "guard-attack",
                "decision": "approved",
                "by": "alice",
                "at": datetime.now(timezone.utc).isoformat(),
                "comment": "re-encrypted on purpose",
            }
        )
        entry = repo.list_backups(PLAN)[0]
        assert entry.backup_id == "guard-attack" and not entry.suspicious and entry.review["decision"] == "approved"
        assert resolve_backup(repo, "latest", PLAN) == "guard-attack"
        listed = run("backups", "list", *repo_args, "--plan", PLAN, env=env, rc=0).stdout
        assert [line for line in listed.splitlines() if line.startswith("guard-attack")][0].split()[5] == "confirmed"
        decisions = run("approvals", "list", *repo_args, "--kind", "anomaly", "--plan", PLAN, env=env, rc=0).stdout
        [row] = [line for line in decisions.splitlines() if "guard-attack" in line]
        assert row.split()[2:6] == ["anomaly", PLAN, "approved", "alice"] and row.endswith("re-encrypted on purpose")
        dry = run(
            "restore",
            "latest",
            "--plan",
            PLAN,
            "--kubeconfig",
            source.kubeconfig,
            *repo_args,
            "--dry-run",
            "-o",
            "json",
            env=env,
            rc=0,
        )
        assert json.loads(dry.stdout)["backup_id"] == "guard-attack" and "skipped" not in dry.stderr
    finally:
        if kube.get_or_none(NAMESPACES.path(name=restored_ns)) is not None:
            kube.delete(NAMESPACES, restored_ns)


def bound_pvc_dir(kube: Kube, ns: str) -> Path:
    wait_until(
        lambda: (
            (kube.get_or_none(f"/api/v1/namespaces/{ns}/persistentvolumeclaims/data") or {})
            .get("status", {})
            .get("phase")
            == "Bound"
        ),
        timeout=60,
        what=f"PVC {ns}/data bound",
    )
    return pv_dir(kube, ns, "data")
