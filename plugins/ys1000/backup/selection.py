"""What a backup takes: the spec a plan (or the CLI) gives, and resolving it against a cluster."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from ys1000.backup.listing import PAGE_SIZE
from ys1000.kube import Kube
from ys1000.kube.discovery import NAMESPACES

if TYPE_CHECKING:
    from ys1000.config.plans import AnomalyGuard

Scope = Literal["full", "volumes", "resources"]


class SelectionError(ValueError):
    """The selection names something the cluster does not have, or selects nothing."""


@dataclass(frozen=True)
class Limits:
    """F30: per-backup limits, checked before anything is written."""

    max_namespaces: int = 10
    max_pods: int = 100
    max_pvcs: int = 100


@dataclass
class BackupSpec:
    """Everything that decides the content of one backup."""

    backup_id: str
    plan: str
    namespaces: list[str] = field(default_factory=list)  # exact names
    namespace_globs: list[str] = field(default_factory=list)  # shell-style: "shop-*"
    namespace_selector: str | None = None  # label selector on Namespace objects
    include_kinds: list[str] = field(default_factory=list)  # empty: all kinds
    exclude_kinds: list[str] = field(default_factory=list)
    label_selector: str | None = None  # for the objects inside the namespaces
    scope: Scope = "full"
    include_cluster_resources: bool = True  # PVs, CRDs, StorageClasses, ClusterRoleBindings
    limits: Limits = field(default_factory=Limits)
    retention_days: float | None = None
    cluster_name: str = ""
    # the plan's anomaly guard (recorded with the pending backup, applied at commit); None: defaults
    anomaly: "AnomalyGuard | None" = None
    made_by: str = ""  # the Airflow run making it (<dag id>/<run id>), recorded in the manifest

    def selection_summary(self) -> dict:
        return {
            "namespaces": self.namespaces,
            "namespace_globs": self.namespace_globs,
            "namespace_selector": self.namespace_selector,
            "include_kinds": self.include_kinds,
            "exclude_kinds": self.exclude_kinds,
            "label_selector": self.label_selector,
            "include_cluster_resources": self.include_cluster_resources,
        }


def resolve_namespaces(kube: Kube, spec: BackupSpec) -> list[str]:
    """Names, globs and a label selector, united; a named namespace that is absent is an error."""
    if not (spec.namespaces or spec.namespace_globs or spec.namespace_selector):
        raise SelectionError("no namespaces selected: give names, globs or a label selector")
    if not spec.namespace_globs and len(spec.namespaces) <= 4:
        # a few names: a GET each, not a LIST of every namespace (a cluster may have thousands)
        existing = {n for n in spec.namespaces if _namespace_named(kube, n)}
    else:
        existing = {ns["metadata"]["name"] for ns in kube.list(NAMESPACES, page_size=PAGE_SIZE)}
    missing = [n for n in spec.namespaces if n not in existing]
    if missing:
        raise SelectionError(f"namespaces not found in cluster {kube.name or '(current)'}: {', '.join(missing)}")
    chosen = set(spec.namespaces)
    for pattern in spec.namespace_globs:
        chosen |= {n for n in existing if fnmatch.fnmatchcase(n, pattern)}
    if spec.namespace_selector:
        chosen |= {ns["metadata"]["name"] for ns in kube.list(NAMESPACES, label_selector=spec.namespace_selector)}
    if not chosen:
        raise SelectionError("the namespace globs and selector match no namespace")
    return sorted(chosen)


def _namespace_named(kube: Kube, name: str) -> bool:
    # the answer must be that Namespace: "a/pods" would GET a namespace's pod list
    obj = kube.get_or_none(NAMESPACES.path(name=name))
    return obj is not None and obj.get("kind") == "Namespace" and (obj.get("metadata") or {}).get("name") == name


def kind_selected(kind: str, resource: str, spec: BackupSpec) -> bool:
    """Kinds are matched by Kind or by plural resource name, case-insensitively."""
    names = {kind.lower(), resource.lower()}
    if spec.include_kinds and not names & {k.lower() for k in spec.include_kinds}:
        return False
    return not names & {k.lower() for k in spec.exclude_kinds}
