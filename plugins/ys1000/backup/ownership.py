"""Which captured objects a restore must not create, because something re-creates them.

They stay in the backup (and its index, so the UI shows the whole namespace) with
``restore: false`` and the reason: restoring them would fight their controller, or the
garbage collector would delete them as orphans of owners that now have new UIDs.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet

# Owner kinds whose controllers re-create their dependents from a template.
RECREATING_OWNERS = {"ReplicaSet", "Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"}
ENDPOINTSLICE_MANAGER = "endpointslice-controller.k8s.io"


def not_restored_reason(obj: dict, kind: str, services_with_selector: AbstractSet[tuple[str, str]]) -> str | None:
    """Why ``obj`` is recorded but not restored, or None when it is restored."""
    md = obj.get("metadata") or {}
    for ref in md.get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") in RECREATING_OWNERS:
            return f"re-created by its {ref['kind']} {ref.get('name')}"
    ns, name = md.get("namespace"), md.get("name")
    if kind == "EndpointSlice":
        labels = md.get("labels") or {}
        if labels.get("endpointslice.kubernetes.io/managed-by") == ENDPOINTSLICE_MANAGER:
            return f"maintained by the EndpointSlice controller for Service {labels.get('kubernetes.io/service-name')}"
    if kind == "Endpoints" and (ns, name) in services_with_selector:
        return f"maintained by the endpoints controller for Service {name}"
    if kind == "Pod" and (obj.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return "a finished pod"
    if kind == "ConfigMap" and name == "kube-root-ca.crt":
        return "published in every namespace by the controller-manager"
    return None
