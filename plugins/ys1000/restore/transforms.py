"""Restore transforms: each a small function that turns a backed-up object into one to create.

They run in the order of ``TRANSFORMS``. Each takes the object (a dict it may change in place)
and the ``RestoreOptions``, and returns the object. Kind-specific ones check the kind themselves,
in the way of Velero's restore item actions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

# Annotations the PV controller and provisioners set on a bound claim; a restored PVC must lose
# them to be provisioned anew instead of waiting for the old volume.
PVC_BINDING_ANNOTATIONS = (
    "pv.kubernetes.io/bind-completed",
    "pv.kubernetes.io/bound-by-controller",
    "volume.beta.kubernetes.io/storage-provisioner",
    "volume.kubernetes.io/storage-provisioner",
    "volume.kubernetes.io/selected-node",
)
JOB_CONTROLLER_LABELS = ("controller-uid", "batch.kubernetes.io/controller-uid")
POD_TEMPLATE_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "ReplicationController"}


@dataclass
class RestoreOptions:
    namespace_mapping: dict[str, str] = field(default_factory=dict)
    storage_class_mapping: dict[str, str] = field(default_factory=dict)
    image_registry_mapping: dict[str, str] = field(default_factory=dict)  # old host -> new host
    remove_node_constraints: bool = False  # nodeSelector, nodeName, affinity
    remove_tolerations: bool = False
    preserve_node_ports: bool = True
    target_minor: int = 99  # the target's Kubernetes minor version (F21)
    labels: dict[str, str] = field(default_factory=dict)  # added to every restored object

    def ns(self, name: str | None) -> str | None:
        return self.namespace_mapping.get(name, name) if name else name


Transform = Callable[[dict, RestoreOptions], dict]


def strip_server_fields(obj: dict, opt: RestoreOptions) -> dict:
    """Drop what the API server sets: identity, versions, timestamps, status, owner links.

    Owner references go too: owners get new UIDs on restore, and the garbage collector deletes
    dependents whose owner UID does not exist.
    """
    md = obj.setdefault("metadata", {})
    for key in (
        "uid",
        "resourceVersion",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
        "managedFields",
        "selfLink",
        "ownerReferences",
    ):
        md.pop(key, None)
    ann = md.get("annotations") or {}
    ann.pop("kubectl.kubernetes.io/last-applied-configuration", None)
    ann.pop("deployment.kubernetes.io/revision", None)
    if not ann:
        md.pop("annotations", None)
    obj.pop("status", None)
    return obj


def map_namespace(obj: dict, opt: RestoreOptions) -> dict:
    """The namespace mapping, everywhere a namespace is named: the object's own, a Namespace's name,
    a PV's claim, bound ServiceAccounts (``binding_subjects``), called Services (``service_references``)."""
    md = obj["metadata"]
    if md.get("namespace"):
        md["namespace"] = opt.ns(md["namespace"])
    if obj.get("kind") == "Namespace":
        md["name"] = opt.ns(md["name"])
        obj.pop("spec", None)  # finalizers are the server's
    if obj.get("kind") == "PersistentVolume":
        ref = (obj.get("spec") or {}).get("claimRef")
        if ref and ref.get("namespace"):
            ref["namespace"] = opt.ns(ref["namespace"])
    return service_references(binding_subjects(obj, opt), opt)


def binding_subjects(obj: dict, opt: RestoreOptions) -> dict:
    """ServiceAccounts bound by (Cluster)RoleBindings move with their namespace."""
    if obj.get("kind") not in ("RoleBinding", "ClusterRoleBinding") or not opt.namespace_mapping:
        return obj
    for s in obj.get("subjects") or []:
        if s.get("kind") == "ServiceAccount" and s.get("namespace"):
            s["namespace"] = opt.ns(s["namespace"])
    return obj


def service_references(obj: dict, opt: RestoreOptions) -> dict:
    """Webhooks, APIServices and CRD conversion webhooks call a Service: it moves with its namespace."""
    if not opt.namespace_mapping:
        return obj
    kind = obj.get("kind")
    refs: list[dict] = []
    if kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        refs = [(w.get("clientConfig") or {}).get("service") or {} for w in obj.get("webhooks") or []]
    elif kind == "APIService":
        refs = [(obj.get("spec") or {}).get("service") or {}]
    elif kind == "CustomResourceDefinition":
        conv = ((obj.get("spec") or {}).get("conversion") or {}).get("webhook") or {}
        refs = [(conv.get("clientConfig") or {}).get("service") or {}]
    for ref in refs:
        if ref.get("namespace"):
            ref["namespace"] = opt.ns(ref["namespace"])
    return obj


def add_labels(obj: dict, opt: RestoreOptions) -> dict:
    if opt.labels:
        obj["metadata"].setdefault("labels", {}).update(opt.labels)
    return obj


def service(obj: dict, opt: RestoreOptions) -> dict:
    """ClusterIPs are allocated per cluster; nodePorts are kept unless asked otherwise."""
    if obj.get("kind") != "Service":
        return obj
    spec = obj.get("spec") or {}
    if spec.get("clusterIP") != "None":  # headless Services keep "None"
        spec.pop("clusterIP", None)
        spec.pop("clusterIPs", None)
    spec.pop("healthCheckNodePort", None)
    if not opt.preserve_node_ports:
        for p in spec.get("ports") or []:
            p.pop("nodePort", None)
    return obj


def pvc(obj: dict, opt: RestoreOptions) -> dict:
    """A restored claim is provisioned anew (in the mapped StorageClass), not bound to the old PV."""
    if obj.get("kind") != "PersistentVolumeClaim":
        return obj
    spec = obj.setdefault("spec", {})
    spec.pop("volumeName", None)
    sc = spec.get("storageClassName")
    if sc in opt.storage_class_mapping:
        spec["storageClassName"] = opt.storage_class_mapping[sc]
    ann = obj["metadata"].get("annotations") or {}
    for key in PVC_BINDING_ANNOTATIONS:
        ann.pop(key, None)
    if not ann:
        obj["metadata"].pop("annotations", None)
    return obj


def persistent_volume(obj: dict, opt: RestoreOptions) -> dict:
    """Statically provisioned PVs come back unbound (their claim has a new UID) and in the mapped class."""
    if obj.get("kind") != "PersistentVolume":
        return obj
    spec = obj.setdefault("spec", {})
    ref = spec.get("claimRef")
    if ref:
        for key in ("uid", "resourceVersion"):
            ref.pop(key, None)
    sc = spec.get("storageClassName")
    if sc in opt.storage_class_mapping:
        spec["storageClassName"] = opt.storage_class_mapping[sc]
    return obj


def statefulset_claims(obj: dict, opt: RestoreOptions) -> dict:
    if obj.get("kind") != "StatefulSet":
        return obj
    for tpl in (obj.get("spec") or {}).get("volumeClaimTemplates") or []:
        tspec = tpl.get("spec") or {}
        if tspec.get("storageClassName") in opt.storage_class_mapping:
            tspec["storageClassName"] = opt.storage_class_mapping[tspec["storageClassName"]]
        tpl.pop("status", None)
    return obj


def job(obj: dict, opt: RestoreOptions) -> dict:
    """A Job's selector and labels carry its old controller UID; the API server sets new ones."""
    if obj.get("kind") != "Job":
        return obj
    spec = obj.get("spec") or {}
    if not spec.get("manualSelector"):
        spec.pop("selector", None)
    tpl_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    for key in JOB_CONTROLLER_LABELS:
        tpl_labels.pop(key, None)
        (obj["metadata"].get("labels") or {}).pop(key, None)
    return obj


def _pod_specs(obj: dict) -> list[dict]:
    kind = obj.get("kind")
    spec = obj.get("spec") or {}
    if kind == "Pod":
        return [spec]
    if kind in POD_TEMPLATE_KINDS:
        return [((spec.get("template") or {}).get("spec")) or {}]
    if kind == "CronJob":
        return [(((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}).get("spec") or {}]
    return []


def node_constraints(obj: dict, opt: RestoreOptions) -> dict:
    """nodeName always goes from Pods (other nodes); selectors and affinity when asked."""
    for ps in _pod_specs(obj):
        if obj.get("kind") == "Pod":
            ps.pop("nodeName", None)
        if opt.remove_node_constraints:
            ps.pop("nodeName", None)
            ps.pop("nodeSelector", None)
            ps.pop("affinity", None)
        if opt.remove_tolerations:
            ps.pop("tolerations", None)
    return obj


_REGISTRY = re.compile(r"^([^/]+)/(.+)$")


def rewrite_image(image: str, mapping: dict[str, str]) -> str:
    """Replace the registry host, keep path and tag; images without a registry host stay as they are.

    The first path component is a registry host when it has a dot or a port, or is localhost
    (Docker's rule), so ``nginx:1`` and ``library/nginx`` are left alone.
    """
    m = _REGISTRY.match(image)
    if not m:
        return image
    host, rest = m.groups()
    if not ("." in host or ":" in host or host == "localhost"):
        return image
    return f"{mapping[host]}/{rest}" if host in mapping else image


def images(obj: dict, opt: RestoreOptions) -> dict:
    if not opt.image_registry_mapping:
        return obj
    for ps in _pod_specs(obj):
        for key in ("containers", "initContainers", "ephemeralContainers"):
            for c in ps.get(key) or []:
                if c.get("image"):
                    c["image"] = rewrite_image(c["image"], opt.image_registry_mapping)
    return obj


def older_api_servers(obj: dict, opt: RestoreOptions) -> dict:
    """F21: make objects from newer clusters acceptable to ≤1.20 API servers.

    Projected service-account token volumes (``kube-api-access-*``, 1.21+) are injected by the
    target's admission anyway; on old servers they must go. Services lose the dual-stack and
    traffic-policy fields that older servers reject.
    """
    for ps in _pod_specs(obj):
        vols = ps.get("volumes") or []
        token_vols = {v["name"] for v in vols if v.get("name", "").startswith("kube-api-access-") and "projected" in v}
        if token_vols:
            ps["volumes"] = [v for v in vols if v["name"] not in token_vols]
            for key in ("containers", "initContainers"):
                for c in ps.get(key) or []:
                    c["volumeMounts"] = [m for m in c.get("volumeMounts") or [] if m["name"] not in token_vols]
    if opt.target_minor < 21 and obj.get("kind") == "Service":
        spec = obj.get("spec") or {}
        for key in ("ipFamilies", "ipFamilyPolicy", "internalTrafficPolicy", "allocateLoadBalancerNodePorts"):
            spec.pop(key, None)
    if opt.target_minor < 21:
        for ps in _pod_specs(obj):
            ps.pop("setHostnameAsFQDN", None)
            ps.pop("os", None)
    return obj


def service_account(obj: dict, opt: RestoreOptions) -> dict:
    """Token secrets listed on a ServiceAccount belong to the old cluster's token controller."""
    if obj.get("kind") == "ServiceAccount":
        obj.pop("secrets", None)
    return obj


def token_secret(obj: dict, opt: RestoreOptions) -> dict:
    """A legacy token Secret is re-filled by the target's token controller for its own keys."""
    if obj.get("kind") == "Secret" and obj.get("type") == "kubernetes.io/service-account-token":
        obj.pop("data", None)
        (obj["metadata"].get("annotations") or {}).pop("kubernetes.io/service-account.uid", None)
    return obj


TRANSFORMS: list[Transform] = [
    strip_server_fields,
    map_namespace,  # with binding_subjects and service_references
    service,
    pvc,
    persistent_volume,
    statefulset_claims,
    job,
    node_constraints,
    images,
    older_api_servers,
    service_account,
    token_secret,
    add_labels,
]


def transform(obj: dict, opt: RestoreOptions) -> dict:
    for t in TRANSFORMS:
        obj = t(obj, opt)
    return obj
