"""Helpers for volume-data tests: planting file trees in PV directories and comparing them.

A module of its own (not conftest): test files import it by a name no other test directory uses."""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path

from ys1000.kube import Kube
from ys1000.kube.discovery import PVCS
from ys1000.waiting import wait_until

PLANTED = b"ys1000-planted-plaintext-4b1d9e"  # must never appear in the bucket


def tree_digest(root: Path) -> dict[str, tuple]:
    """Every entry under ``root``: regular files by content hash and mode, symlinks by target."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            st = p.lstat()
            if p.is_symlink():
                out[rel] = ("link", os.readlink(p))
            elif p.is_dir():
                out[rel] = ("dir", oct(st.st_mode & 0o7777))
            else:
                out[rel] = ("file", oct(st.st_mode & 0o7777), hashlib.sha256(p.read_bytes()).hexdigest())
    return out


def plant(root: Path, big_mib: int = 50) -> None:
    """A mix: empty, small, big, nested, symlinks, permissions."""
    (root / "nested/deeper/deepest").mkdir(parents=True, exist_ok=True)
    (root / "empty").write_bytes(b"")
    (root / "small.txt").write_bytes(b"hello\n" + PLANTED)
    (root / "nested/deeper/deepest/note.md").write_text("deep\n")
    rnd = random.Random(big_mib)  # incompressible, like real data (and chunked like it by restic)
    with open(root / "big.bin", "wb") as f:
        for _ in range(big_mib):
            f.write(rnd.randbytes(1 << 20))
    (root / "many").mkdir(exist_ok=True)
    for i in range(100):
        (root / "many" / f"f{i:03d}").write_bytes(rnd.randbytes(5 << 10))
    (root / "secret.key").write_text("k")
    os.chmod(root / "secret.key", 0o600)
    os.chmod(root / "nested/deeper", 0o750)
    os.symlink("small.txt", root / "link-to-small")
    os.symlink("nested/deeper", root / "link-to-dir")


def bound_pvc(kube: Kube, ns: str, name: str = "data") -> Path:
    """A 1Gi ReadWriteOnce PVC in ``ns``, once Bound; returns the directory behind its volume."""
    kube.create(
        PVCS,
        {
            "metadata": {"name": name},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        },
        ns,
    )
    wait_until(
        lambda: (kube.get(PVCS.path(ns, name)).get("status") or {}).get("phase") == "Bound",
        timeout=30,
        what=f"PVC {ns}/{name} bound",
    )
    return pv_dir(kube, ns, name)


def pv_dir(kube: Kube, ns: str, pvc: str) -> Path:
    c = kube.get(f"/api/v1/namespaces/{ns}/persistentvolumeclaims/{pvc}")
    pv = kube.get(f"/api/v1/persistentvolumes/{c['spec']['volumeName']}")
    return Path(pv["spec"]["csi"]["volumeAttributes"]["path"])


def statefulset(name: str = "db") -> dict:
    """A StatefulSet with two volume claim templates (data, logs): two PVCs per replica."""

    def claim(n: str) -> dict:
        return {
            "metadata": {"name": n},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        }

    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name},
        "spec": {
            "serviceName": name,
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {
                            "name": "db",
                            "image": "mariadb:11",
                            "volumeMounts": [
                                {"name": "data", "mountPath": "/var/lib/mysql"},
                                {"name": "logs", "mountPath": "/var/log/mysql"},
                            ],
                        }
                    ]
                },
            },
            "volumeClaimTemplates": [claim("data"), claim("logs")],
        },
    }
