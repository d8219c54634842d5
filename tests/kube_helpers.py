"""Helpers for tests that act as a ServiceAccount (a distinct module name: test dirs share sys.path)."""

from __future__ import annotations

from pathlib import Path

import yaml

from ys1000.kube import Kube


def token_kubeconfig(admin: Kube, admin_kubeconfig: str, namespace: str, account: str, path: Path, seconds: int) -> str:
    """A kubeconfig at ``path`` for the sandbox's server holding only a TokenRequest token of the
    ServiceAccount ``namespace/account``; returns its path."""
    token = admin.request(
        "POST",
        f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token",
        body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": seconds}},
    )["status"]["token"]
    kubeconfig = yaml.safe_load(Path(admin_kubeconfig).read_text())
    for user in kubeconfig["users"]:
        user["user"] = {"token": token}
    path.write_text(yaml.safe_dump(kubeconfig))
    return str(path)
