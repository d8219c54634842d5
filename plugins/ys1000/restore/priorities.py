"""The order in which a restore creates objects (after Velero's ``defaultRestorePriorities``).

Objects are created class by class; each class starts only when the previous one is in. The
custom resources follow everything else, after their CRDs are Established, and the admission
webhook configurations and APIServices come last of all: their backends are workloads of the
restored namespaces, and a webhook (``failurePolicy: Fail``) or an aggregated API whose backend
is not up yet would otherwise refuse or stall the writes that come after it.
"""

from __future__ import annotations

# (group-resource, why it comes here)
PRIORITIES: list[tuple[str, str]] = [
    ("customresourcedefinitions.apiextensions.k8s.io", "custom resources need their types first"),
    ("namespaces", "everything namespaced lives in one"),
    ("storageclasses.storage.k8s.io", "PVs and PVCs name their class"),
    ("volumesnapshotclasses.snapshot.storage.k8s.io", "snapshots name their class"),
    ("serviceaccounts", "pods are refused without their ServiceAccount"),
    ("clusterroles.rbac.authorization.k8s.io", "bindings refer to roles"),
    ("roles.rbac.authorization.k8s.io", "bindings refer to roles"),
    ("clusterrolebindings.rbac.authorization.k8s.io", "workloads need their permissions"),
    ("rolebindings.rbac.authorization.k8s.io", "workloads need their permissions"),
    ("limitranges", "admission applies them to pods created later"),
    ("resourcequotas", "admission applies them to objects created later"),
    ("secrets", "pods mount and read them at start"),
    ("configmaps", "pods mount and read them at start"),
    ("persistentvolumes", "claims bind to volumes"),
    ("persistentvolumeclaims", "pods wait for their claims; data is restored into them first"),
    ("services", "workloads expect their Services (and DNS names)"),
    ("endpoints", "selector-less Services need theirs"),
    ("networkpolicies.networking.k8s.io", "protect pods from their first moment"),
    ("poddisruptionbudgets.policy", "before the pods they protect"),
    ("deployments.apps", "workloads"),
    ("statefulsets.apps", "workloads"),
    ("daemonsets.apps", "workloads"),
    ("replicasets.apps", "workloads without a Deployment"),
    ("replicationcontrollers", "workloads"),
    ("cronjobs.batch", "workloads"),
    ("jobs.batch", "workloads"),
    ("pods", "bare pods, after everything they may use"),
    ("horizontalpodautoscalers.autoscaling", "scale targets exist now"),
]
# after everything, custom resources included
LAST: list[tuple[str, str]] = [
    ("apiservices.apiregistration.k8s.io", "served by a workload restored above; discovery fails until it is up"),
    ("mutatingwebhookconfigurations.admissionregistration.k8s.io", "would intercept the writes above"),
    ("validatingwebhookconfigurations.admissionregistration.k8s.io", "would intercept the writes above"),
]
_RANK = {gr: i for i, (gr, _) in enumerate(PRIORITIES)}
_REST = len(PRIORITIES)  # everything else, alphabetically
_CUSTOM = _REST + 1  # custom resources: after their CRDs are Established
_LAST = {gr: _CUSTOM + 1 + i for i, (gr, _) in enumerate(LAST)}


def rank(group_resource: str, is_custom: bool) -> tuple[int, str]:
    if group_resource in _RANK:
        return (_RANK[group_resource], group_resource)
    if group_resource in _LAST:
        return (_LAST[group_resource], group_resource)
    return (_CUSTOM if is_custom else _REST, group_resource)
