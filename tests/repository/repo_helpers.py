"""Helpers shared by the repository tests (a distinct module name: test dirs share sys.path)."""

from __future__ import annotations

from ys1000.repository import Repository

PASSPHRASE = "correct horse battery staple"


def configmap(ns: str, name: str, **data: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": "demo"}},
        "data": data,
    }


def write_backup(repo: Repository, backup_id: str, plan: str = "plan-a", n: int = 3, **begin) -> None:
    with repo.begin_backup(backup_id, plan, **begin) as w:
        for i in range(n):
            w.add(
                configmap("demo", f"cm-{i}", k=str(i)), group="", version="v1", resource="configmaps", kind="ConfigMap"
            )
        w.commit(namespaces=["demo"])
