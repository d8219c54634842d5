"""Shared plumbing of hook Jobs: labels, names, finding the pod, reading its log, cleanup.

Every object a hook creates carries ``ys1000.io/component=hook``, ``ys1000.io/hook-kind``
(``quiesce`` | ``custom``) and ``ys1000.io/run=<run id>``, so a retry or a cancel finds the
leftovers of its run by label (``cleanup_run``). Pods carry ``ys1000.io/executable=true`` (the
sandbox executes them; a real cluster ignores the label).
"""

from __future__ import annotations

import hashlib
import logging

from ys1000.kube import Kube, KubeError, ResourceType
from ys1000.kube.discovery import PODS, core
from ys1000.volumes.jobs import EXECUTABLE, JOBS, _label_value, last_line

log = logging.getLogger(__name__)

CONFIGMAPS = core("configmaps", "ConfigMap")
COMPONENT_LABEL = "ys1000.io/component"
KIND_LABEL = "ys1000.io/hook-kind"
RUN_LABEL = "ys1000.io/run"
HOOK_LABEL = "ys1000.io/hook"
RESULT_FINALIZER = "ys1000.io/hook-result"
"""Added to a hook pod only while it is being stopped, so its log stays readable until read."""

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
SA_DIR_ENV = "YS1000_SERVICEACCOUNT_DIR"
DEFAULT_HOOK_IMAGE = "ys1000/hook-runner:0.1.0"
"""Image of the quiesce Job (Python + ys1000 + PyMySQL/psycopg/pymongo)."""

__all__ = ["CONFIGMAPS", "JOBS", "PODS", "EXECUTABLE", "label_value", "hook_labels", "job_name",
           "find_pod", "pod_log", "last_line", "exit_code", "cleanup_run", "strip_finalizer",
           "service_account_volume", "ResourceType"]

label_value = _label_value


def hook_labels(kind: str, run_id: str, name: str) -> dict[str, str]:
    return {COMPONENT_LABEL: "hook", KIND_LABEL: kind, RUN_LABEL: label_value(run_id),
            HOOK_LABEL: label_value(name)}


def job_name(prefix: str, name: str, *salt: str) -> str:
    digest = hashlib.sha1("/".join((prefix, name, *salt)).encode()).hexdigest()[:8]
    return f"ys1000-{prefix}-{name}"[:52].rstrip("-") + f"-{digest}"


def find_pod(kube: Kube, namespace: str, job: str) -> dict | None:
    pods = list(kube.list(PODS, namespace, label_selector=f"job-name={job}"))
    pods.sort(key=lambda p: p["metadata"].get("creationTimestamp") or "")
    return pods[-1] if pods else None


def pod_log(kube: Kube, namespace: str, pod: dict | None) -> str:
    if pod is None:
        return ""
    if ((pod.get("status") or {}).get("phase") or "Pending") == "Pending":
        return ""
    try:
        return kube.pod_log(namespace, pod["metadata"]["name"])
    except KubeError as exc:
        log.debug("cannot read the log of %s/%s: %s", namespace, pod["metadata"]["name"], exc)
        return ""


def exit_code(pod: dict | None) -> int | None:
    for cs in ((pod or {}).get("status") or {}).get("containerStatuses") or []:
        term = (cs.get("state") or {}).get("terminated")
        if term is not None:
            return term.get("exitCode")
    return None


def job_failure(job: dict | None) -> str:
    for c in ((job or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == "Failed" and c.get("status") == "True":
            return f"{c.get('reason')}: {c.get('message')}"
    return ""


def strip_finalizer(kube: Kube, namespace: str, pod: str) -> None:
    try:
        kube.patch(PODS, pod, {"metadata": {"$deleteFromPrimitiveList/finalizers": [RESULT_FINALIZER]}},
                   namespace, kind="strategic")
    except KubeError as exc:
        if exc.status != 404:
            raise


def service_account_volume(expiration: int = 3600) -> dict:
    """What the ServiceAccount admission plugin mounts, spelled out (token, CA, namespace): the
    hook gets its ServiceAccount's credentials at ``SA_DIR`` in any cluster (and in the sandbox,
    which supports projected token volumes through TokenRequest)."""
    return {"name": "ys1000-sa", "projected": {"defaultMode": 0o444, "sources": [
        {"serviceAccountToken": {"path": "token", "expirationSeconds": expiration}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}},
    ]}}


def cleanup_run(kube: Kube, namespaces: list[str], run_id: str, kind: str | None = None) -> list[str]:
    """Delete every hook Job (and ConfigMap) of ``run_id`` (a killed task's leftovers)."""
    selector = f"{COMPONENT_LABEL}=hook,{RUN_LABEL}={label_value(run_id)}"
    if kind:
        selector += f",{KIND_LABEL}={kind}"
    gone = []
    for ns in dict.fromkeys(namespaces):
        for pod in kube.list(PODS, ns, label_selector=selector):
            if RESULT_FINALIZER in (pod["metadata"].get("finalizers") or []):
                strip_finalizer(kube, ns, pod["metadata"]["name"])
        for rt in (JOBS, CONFIGMAPS):
            for obj in kube.list(rt, ns, label_selector=selector):
                kube.delete(rt, obj["metadata"]["name"], ns, propagation="Background")
                gone.append(f"{ns}/{obj['metadata']['name']}")
    return gone
