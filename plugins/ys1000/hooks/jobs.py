"""What hook Jobs share beyond ``ys1000.kube.jobs`` (which runs them): labels, names, the
result finalizer of quiesce pods, the service-account volume, cleanup of a run's leftovers.

Every object a hook creates carries ``ys1000.io/component=hook``, ``ys1000.io/hook-kind``
(``quiesce`` | ``custom``) and ``ys1000.io/run=<run id>``, so a retry or a cancel finds the
leftovers of its run by label (``cleanup_run``).
"""

from __future__ import annotations

import logging

from ys1000.kube import Kube, KubeError, ResourceType
from ys1000.kube.discovery import PODS
from ys1000.kube.jobs import (
    COMPONENT_LABEL,
    CONFIGMAPS,
    JOBS,
    RUN_LABEL,
    delete_run,
    exit_code,
    find_pod,
    job_failure,
    job_name as _job_name,
    label_value,
    last_line,
    pod_log,
)

log = logging.getLogger(__name__)

KIND_LABEL = "ys1000.io/hook-kind"
HOOK_LABEL = "ys1000.io/hook"
RESULT_FINALIZER = "ys1000.io/hook-result"
"""Added to a hook pod only while it is being stopped, so its log stays readable until read."""

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
SA_DIR_ENV = "YS1000_SERVICEACCOUNT_DIR"
DEFAULT_HOOK_IMAGE = "ys1000/hook-runner:0.1.0"
"""Image of the quiesce Job (Python + ys1000 + PyMySQL/psycopg/pymongo)."""

__all__ = [
    "CONFIGMAPS",
    "JOBS",
    "PODS",
    "COMPONENT_LABEL",
    "RUN_LABEL",
    "label_value",
    "hook_labels",
    "job_name",
    "find_pod",
    "pod_log",
    "last_line",
    "exit_code",
    "job_failure",
    "cleanup_run",
    "strip_finalizer",
    "service_account_volume",
    "ResourceType",
]


def hook_labels(kind: str, run_id: str, name: str) -> dict[str, str]:
    return {COMPONENT_LABEL: "hook", KIND_LABEL: kind, RUN_LABEL: label_value(run_id), HOOK_LABEL: label_value(name)}


def job_name(prefix: str, name: str, *salt: str) -> str:
    return _job_name(prefix, name, *salt)


def strip_finalizer(kube: Kube, namespace: str, pod: str) -> None:
    try:
        kube.patch(
            PODS,
            pod,
            {"metadata": {"$deleteFromPrimitiveList/finalizers": [RESULT_FINALIZER]}},
            namespace,
            kind="strategic",
        )
    except KubeError as exc:
        if exc.status != 404:
            raise


def service_account_volume(expiration: int = 3600) -> dict:
    """What the ServiceAccount admission plugin mounts, spelled out (token, CA, namespace): the
    hook gets its ServiceAccount's credentials at ``SA_DIR`` in any cluster (and in the sandbox,
    which supports projected token volumes through TokenRequest)."""
    return {
        "name": "ys1000-sa",
        "projected": {
            "defaultMode": 0o444,
            "sources": [
                {"serviceAccountToken": {"path": "token", "expirationSeconds": expiration}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}},
            ],
        },
    }


def cleanup_run(kube: Kube, namespaces: list[str], run_id: str, kind: str | None = None) -> list[str]:
    """Delete every hook Job (and ConfigMap) of ``run_id`` (a killed task's leftovers); a quiesce
    pod's result finalizer is stripped first, so its pod can go."""
    selector = f"{COMPONENT_LABEL}=hook,{RUN_LABEL}={label_value(run_id)}" + (f",{KIND_LABEL}={kind}" if kind else "")
    for ns in dict.fromkeys(namespaces):
        for pod in kube.list(PODS, ns, label_selector=selector):
            if RESULT_FINALIZER in (pod["metadata"].get("finalizers") or []):
                strip_finalizer(kube, ns, pod["metadata"]["name"])
    return delete_run(kube, namespaces, run_id, component="hook", extra_selector=f"{KIND_LABEL}={kind}" if kind else "")
