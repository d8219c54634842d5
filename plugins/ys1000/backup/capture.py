"""Capture a backup's Kubernetes resources into the repository.

Every namespaced, listable resource type the cluster serves is listed per selected namespace
(or once cluster-wide, keeping the selected namespaces' objects, when they are many and most of
the cluster's: ``ys1000.backup.listing``), page by page, by a small pool of workers in a forked
child process (``ys1000.backup.forked``), which also prepares each object (its document encoded,
whether a restore creates it); pages cross to the single writer in the parent through a pipe, so
memory stays at a few pages however big the namespaces are, and decoding and writing run on two
cores. Cluster-scoped
objects the namespaces depend on follow: their Namespace objects, the PVs bound to their PVCs,
the StorageClasses those PVCs use, the CRDs of their custom resources, the ClusterRoleBindings
that bind their ServiceAccounts with the ClusterRoles those and the namespaces' RoleBindings refer
to, and the admission webhook configurations and APIServices whose service lives in them.
"""

from __future__ import annotations

import logging
import threading
from contextlib import closing
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import timedelta
from collections.abc import Set as AbstractSet
from typing import Callable, Iterable, cast

from ys1000.backup.listing import PAGE_SIZE, objects_in, scopes
from ys1000.backup.ownership import not_restored_reason
from ys1000.backup.preflight import Inventory, preflight
from ys1000.backup.selection import BackupSpec, kind_selected
from ys1000.kube import Discovery, Kube, KubeError, ResourceType
from ys1000.kube.discovery import (
    APISERVICES,
    CLUSTER_ROLE_BINDINGS,
    CLUSTER_ROLES,
    CRDS,
    MUTATING_WEBHOOKS,
    NAMESPACES,
    PVS,
    SERVICES,
    STORAGE_CLASSES,
    VALIDATING_WEBHOOKS,
)
from ys1000.backup.forked import forked_items
from ys1000.repository import Repository, encode_document
from ys1000.repository.manifest import Manifest

log = logging.getLogger(__name__)

# ClusterRoles every cluster has from its own bootstrap policy (cluster-admin, view, admin, ...):
# a binding to one needs nothing from the backup, and the target's version is the right one.
BOOTSTRAP_LABEL = ("kubernetes.io/bootstrapping", "rbac-defaults")

# Never backed up: history, not state (events), or virtual kinds.
SKIPPED_TYPES = {("", "events"), ("events.k8s.io", "events")}
# ys1000's own working objects in an application namespace (mover and hook Jobs, their pods and
# per-run Secrets with the repository's credentials, export PVCs): never captured, or a restore
# would start another backup's mover; each one skipped is named in the warnings
OWN_COMPONENT_LABEL = "ys1000.io/component"
VOLUME_KINDS = {"PersistentVolumeClaim", "PersistentVolume"}
LIST_WORKERS = 8

Progress = Callable[[dict], None]


@dataclass
class BackupResult:
    manifest: Manifest
    inventory: Inventory
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        m = self.manifest
        return {
            "backup_id": m.backup_id,
            "plan": m.plan,
            "status": m.status,
            "objects": m.total,
            "restorable": m.restorable,
            "namespaces": m.namespaces,
            "archive_bytes": m.archive.size,
            "counts": m.counts,
            "warnings": m.warnings,
            "api_retries": m.api_retries,
        }


def _strip_noise(obj: dict) -> dict:
    # managedFields is server bookkeeping, often the largest part of an object; never restored
    obj.get("metadata", {}).pop("managedFields", None)
    return obj


# one object as the writer takes it: namespace, name, its document (None: one of ys1000's own,
# not captured), restore, reason, ys1000's component label, the ClusterRole a RoleBinding names
Record = tuple[str | None, str, bytes | None, bool, str | None, str | None, str | None]


def _record(rt: ResourceType, obj: dict, services_with_selector: AbstractSet[tuple[str, str]]) -> Record:
    md = obj["metadata"]
    namespace, name = md.get("namespace") or None, md.get("name") or ""
    if component := (md.get("labels") or {}).get(OWN_COMPONENT_LABEL):
        return namespace, name, None, False, None, component, None
    reason = not_restored_reason(obj, rt.kind, services_with_selector)
    role_ref = None
    if rt.kind == "RoleBinding" and (obj.get("roleRef") or {}).get("kind") == "ClusterRole":
        role_ref = obj["roleRef"]["name"]
    return namespace, name, encode_document(_strip_noise(obj)), reason is None, reason, None, role_ref


def _list_records(
    kube: Kube,
    work: list[tuple[ResourceType, str | None]],
    label_selector: str | None,
    only: AbstractSet[str],
    emit: Callable[[tuple[int, list[Record]]], None],
) -> int:
    """The producer (in the forked child): list each (type, namespace or None: cluster-wide, of
    the namespaces ``only``) and emit ``(index into work, records)`` a page at a time; returns
    the requests it sent again (the parent adds them to its count)."""
    kube.after_fork()
    retries_before = kube.retries
    # Endpoints a Service with a selector has are its controller's, not restored (ownership.py):
    # they are listed once every Service is, and the Services with a selector are taken from the
    # backup's own listing of Services — or from one of their own when a label selector (or a
    # kind filter) leaves some out.
    endpoints = [i for i, (rt, _) in enumerate(work) if (rt.group, rt.resource) == ("", "endpoints")]
    services = [i for i, (rt, _) in enumerate(work) if (rt.group, rt.resource) == ("", "services")]
    if label_selector is not None:
        services = []
    with_selector: set[tuple[str, str]] = set()
    services_listed: list[Future] = []  # every one done (or failed) before an Endpoints listing starts

    def note_selector(service: dict) -> None:
        if (service.get("spec") or {}).get("selector"):
            with_selector.add((service["metadata"]["namespace"], service["metadata"]["name"]))

    def own_services_listing() -> None:
        for ns in dict.fromkeys(work[i][1] for i in endpoints):
            for service in objects_in(kube, SERVICES, ns, None, only):
                note_selector(service)

    def one(i: int, *, is_service: bool = False, is_endpoints: bool = False) -> None:
        rt, ns = work[i]
        if is_endpoints:
            wait(services_listed)
        page: list[Record] = []
        for obj in objects_in(kube, rt, ns, label_selector, only):
            if is_service:
                note_selector(obj)
            page.append(_record(rt, obj, with_selector))
            if len(page) >= PAGE_SIZE:
                emit((i, page))
                page = []
        if page:
            emit((i, page))

    # the pool starts work in the order it was submitted: the Services first, the Endpoints last,
    # so every Services listing has started (and will end) before an Endpoints listing waits
    first_or_last = {*services, *endpoints}
    rest = [i for i in range(len(work)) if i not in first_or_last]
    with ThreadPoolExecutor(LIST_WORKERS, thread_name_prefix="list") as pool:
        if endpoints and not services:
            services_listed.append(pool.submit(own_services_listing))
        services_listed += [pool.submit(one, i, is_service=True) for i in services]
        futures = services_listed + [pool.submit(one, i) for i in rest]
        futures += [pool.submit(one, i, is_endpoints=True) for i in endpoints]
        try:
            for f in futures:
                f.result()
        except BaseException:
            for f in futures:  # the error goes to the parent now, not after every other type
                f.cancel()
            raise
    return kube.retries - retries_before


def capture_resources(
    kube: Kube,
    repo: Repository,
    spec: BackupSpec,
    *,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> BackupResult:
    """Preflight, then capture the resources into a *pending* backup (no manifest yet): the
    first step of ``ys1000.backup.pipeline``, which alone turns it into a complete backup."""
    retries_before = kube.retries
    with ThreadPoolExecutor(2, thread_name_prefix="capture-prep") as prep:
        # the API's types and groups do not depend on the preflight: fetched beside it
        discovery_loaded, groups_listed = prep.submit(Discovery.load, kube), prep.submit(_builtin_groups, kube)
        inventory = preflight(kube, spec)  # raises before anything is written
        discovery, builtin_groups = discovery_loaded.result(), groups_listed.result()
    cancel = cancel or threading.Event()
    report = progress or (lambda _: None)
    wide = inventory.wide
    where = scopes(wide, inventory.namespaces)
    types = [
        rt
        for rt in discovery.namespaced()
        if (rt.group, rt.resource) not in SKIPPED_TYPES
        and "list" in rt.verbs
        and kind_selected(rt.kind, rt.resource, spec)
        and (spec.scope != "volumes" or rt.kind in VOLUME_KINDS)
    ]
    work = [(rt, ns) for rt in types for ns in where]
    retention = timedelta(days=spec.retention_days) if spec.retention_days else None
    warnings = list(f"skipped {s}" for s in inventory.skipped)
    warnings += discovery.warnings()  # an aggregated API that is down: the backup goes on without it
    crd_types: set[tuple[str, str]] = set()
    cluster_role_refs: set[str] = set()  # ClusterRoles the captured RoleBindings refer to
    own: list[str] = []  # ys1000's own working objects met in the namespaces

    with repo.begin_backup(spec.backup_id, spec.plan, retention=retention) as writer:
        # listed in a forked child (ys1000.backup.forked): its decoding and the writer's
        # compressing run on two cores
        listing = forked_items(
            lambda emit: _list_records(kube, work, spec.label_selector, wide or frozenset(), emit),
            cancel=cancel,
            what=f"backup {spec.backup_id}: listing",
        )
        with closing(listing):
            done = 0
            while True:
                try:
                    i, page = next(listing)
                except StopIteration as end:
                    child_retries = end.value
                    break
                if cancel.is_set():
                    raise InterruptedError(f"backup {spec.backup_id} cancelled")
                rt = work[i][0]
                if rt.group not in builtin_groups:
                    crd_types.add((rt.group, rt.resource))
                for namespace, name, data, restore, reason, component, role_ref in page:
                    if data is None:
                        own.append(f"{rt.kind} {namespace}/{name} ({component})")
                        continue
                    if role_ref:
                        cluster_role_refs.add(role_ref)
                    writer.add_document(
                        data,
                        namespace=namespace,
                        name=name,
                        group=rt.group,
                        version=rt.version,
                        resource=rt.resource,
                        kind=rt.kind,
                        restore=restore,
                        reason=reason,
                    )
                done += len(page)
                report({"phase": "resources", "objects_done": done, "types_total": len(types)})
        kube.count_retry(child_retries)
        if own:
            warnings.append(f"skipped {len(own)} object(s) of ys1000's own movers and hooks: {', '.join(sorted(own))}")
        for rt, obj in _cluster_dependencies(kube, spec, inventory, crd_types, cluster_role_refs):
            writer.add(_strip_noise(obj), group=rt.group, version=rt.version, resource=rt.resource, kind=rt.kind)
        manifest = writer.commit(
            cluster_name=spec.cluster_name or kube.name or None,
            kubernetes_version=kube.version().get("gitVersion"),
            namespaces=inventory.namespaces,
            scope=spec.scope,
            selection=spec.selection_summary(),
            warnings=warnings,
            pvcs=[f"{c['metadata']['namespace']}/{c['metadata']['name']}" for c in inventory.pvcs],
            limits={
                "max_namespaces": spec.limits.max_namespaces,
                "max_pods": spec.limits.max_pods,
                "max_pvcs": spec.limits.max_pvcs,
            },
            # the plan's anomaly guard settings: the commit step judges the backup with them
            anomaly_guard=spec.anomaly.model_dump() if spec.anomaly is not None else None,
            made_by=spec.made_by or None,
            api_retries=kube.retries - retries_before,
            final=False,
        )
    report({"phase": "captured", "objects_done": manifest.total})
    return BackupResult(manifest, inventory, warnings)


def _builtin_groups(kube: Kube) -> set[str]:
    """API groups not served by CRDs (so their types need no CRD in the backup)."""
    crd_groups = {c["spec"]["group"] for c in kube.list(CRDS)}
    all_groups = {g["name"] for g in kube.get("/apis").get("groups", [])}
    return ({""} | all_groups) - crd_groups


def _cluster_dependencies(
    kube: Kube,
    spec: BackupSpec,
    inv: Inventory,
    crd_types: set[tuple[str, str]],
    cluster_role_refs: AbstractSet[str] = frozenset(),
):
    """Cluster-scoped objects the selected namespaces need, each yielded once.

    ``cluster_role_refs`` are the ClusterRoles the captured RoleBindings refer to.
    """
    found: Iterable[dict | None]
    if inv.wide is not None:  # many: one paginated LIST (the preflight's listing was allowed)
        found = (n for n in kube.list(NAMESPACES, page_size=PAGE_SIZE) if n["metadata"]["name"] in inv.wide)
    else:
        found = (kube.get_or_none(NAMESPACES.path(name=ns)) for ns in inv.namespaces)
    for obj in found:
        if obj:  # a LIST's items have no kind and apiVersion: put them where a GET has them
            yield NAMESPACES, {"kind": "Namespace", "apiVersion": "v1", **obj}
    if not spec.include_cluster_resources:
        return

    def wanted(rt: ResourceType) -> bool:
        # a dependency follows what depends on it (include_kinds does not drop it); only an
        # explicit exclude or include_cluster_resources=False leaves it out
        names = {rt.kind.lower(), rt.resource.lower()}
        return not names & {k.lower() for k in spec.exclude_kinds}

    selected_pvcs = [c for c in inv.pvcs if kind_selected("PersistentVolumeClaim", "persistentvolumeclaims", spec)]
    if wanted(PVS):
        for name in sorted(
            cast("set[str]", {(c.get("spec") or {}).get("volumeName") for c in selected_pvcs} - {None, ""})
        ):
            pv = kube.get_or_none(PVS.path(name=name))
            if pv:
                yield PVS, _typed(pv, PVS)
    if spec.scope == "volumes":
        return
    if wanted(STORAGE_CLASSES):
        # "" is "no class" (a statically bound claim), not a StorageClass's name
        for name in sorted(
            cast("set[str]", {(c.get("spec") or {}).get("storageClassName") for c in selected_pvcs} - {None, ""})
        ):
            sc = kube.get_or_none(STORAGE_CLASSES.path(name=name))
            if sc:
                yield STORAGE_CLASSES, _typed(sc, STORAGE_CLASSES)
    if crd_types and wanted(CRDS):
        for crd in kube.list(CRDS):
            if (crd["spec"]["group"], crd["spec"]["names"]["plural"]) in crd_types:
                yield CRDS, _typed(crd, CRDS)
    namespaces = set(inv.namespaces)
    role_names = set(cluster_role_refs)
    if wanted(CLUSTER_ROLE_BINDINGS) and kind_selected("ServiceAccount", "serviceaccounts", spec):
        for crb in kube.list(CLUSTER_ROLE_BINDINGS):
            if any(
                s.get("kind") == "ServiceAccount" and s.get("namespace") in namespaces
                for s in crb.get("subjects") or []
            ):
                yield CLUSTER_ROLE_BINDINGS, _typed(crb, CLUSTER_ROLE_BINDINGS)
                if (crb.get("roleRef") or {}).get("kind") == "ClusterRole":
                    role_names.add(crb["roleRef"]["name"])
    if role_names and wanted(CLUSTER_ROLES):
        for role in _cluster_role_closure(kube, role_names):
            yield CLUSTER_ROLES, _typed(role, CLUSTER_ROLES)
    # webhooks and aggregated APIs served from the namespaces: restored last (restore.priorities)
    for rt in (VALIDATING_WEBHOOKS, MUTATING_WEBHOOKS):
        if wanted(rt):
            for conf in _list_or_empty(kube, rt):
                if any(
                    ((w.get("clientConfig") or {}).get("service") or {}).get("namespace") in namespaces
                    for w in conf.get("webhooks") or []
                ):
                    yield rt, _typed(conf, rt)
    if wanted(APISERVICES):
        for svc in _list_or_empty(kube, APISERVICES):
            if ((svc.get("spec") or {}).get("service") or {}).get("namespace") in namespaces:
                yield APISERVICES, _typed(svc, APISERVICES)


def _list_or_empty(kube: Kube, rt: ResourceType) -> list[dict]:
    """Every object of a cluster-scoped type, or none when the cluster does not serve it."""
    try:
        return list(kube.list(rt))
    except KubeError as exc:
        if exc.status == 404:
            return []
        raise


def _cluster_role_closure(kube: Kube, names: set[str]) -> list[dict]:
    """The named ClusterRoles and, for aggregated ones, the ClusterRoles their selectors pick.

    An aggregated ClusterRole is taken with its rules as they are; its components come too,
    because the target's aggregation controller recomputes the rules from the ClusterRoles it
    finds there. Bootstrap roles (cluster-admin, view, ...) are left out: every cluster has them.
    """
    by_name = {r["metadata"]["name"]: r for r in _list_or_empty(kube, CLUSTER_ROLES)}
    todo, seen, out = sorted(names), set(), []
    while todo:
        name = todo.pop(0)
        role = by_name.get(name)
        if name in seen or role is None:
            continue  # a binding to a missing role stays as it was: nothing to take
        seen.add(name)
        labels = role["metadata"].get("labels") or {}
        if labels.get(BOOTSTRAP_LABEL[0]) == BOOTSTRAP_LABEL[1]:
            continue
        out.append(role)
        for sel in (role.get("aggregationRule") or {}).get("clusterRoleSelectors") or []:
            todo += sorted(
                n
                for n, r in by_name.items()
                if n not in seen and label_selector_matches(sel, r["metadata"].get("labels") or {})
            )
    return out


def label_selector_matches(selector: dict, labels: dict[str, str]) -> bool:
    """A metav1.LabelSelector (matchLabels, matchExpressions) against an object's labels."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    # an empty selector would pick every ClusterRole in the cluster: taken as picking none here
    return bool(selector.get("matchLabels") or selector.get("matchExpressions"))


def _typed(obj: dict, rt: ResourceType) -> dict:
    obj.setdefault("apiVersion", rt.api_version)
    obj.setdefault("kind", rt.kind)
    return obj
